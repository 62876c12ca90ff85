/**
 * The one reader of guarantors' contacts (src/store/guarantor-contacts.ts): a guarantor named apart from the
 * patient and a patient who is their own guarantor, read together in one query, each with only the fields the
 * caller asked for decrypted (planning never decrypts a birth date); the letter's, the pay page's and the
 * dashboard's one-guarantor read (`LedgerRepository.getGuarantorContact`) is the same reader with every field.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { before, it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import type { Queryable } from '../../src/store/database.ts';
import { readGuarantorContacts } from '../../src/store/guarantor-contacts.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { OutreachPlanningReader } from '../../src/store/outreach-planning.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { describeOnEachDatabase } from '../support/databases.ts';

/** A cipher that notes what it was asked to decrypt (the associated data: `table.field`). */
class WatchedCipher extends PhiCipher {
  decrypted: string[] = [];

  override decrypt(token: string, aad = ''): string {
    this.decrypted.push(aad);
    return super.decrypt(token, aad);
  }
}

/** A connection that counts the statements sent through it. */
function counted(db: Queryable): Queryable & { statements: number } {
  const spy = {
    statements: 0,
    query: ((text: string, values?: unknown[]) => {
      spy.statements += 1;
      return db.query(text, values);
    }) as Queryable['query'],
  };
  return spy;
}

const UNKNOWN = '00000000-0000-4000-8000-000000000000';

describeOnEachDatabase('guarantor contacts', (db) => {
  const clock = new ManualClock(new Date('2026-05-04T15:00:00Z'));
  const cipher = new WatchedCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
  let practiceId = '';
  let patientId = '';
  /** Maria Gonzalez, a patient who is her own guarantor. */
  let self = '';
  /** Luis Gonzalez, who pays for his son's visits. */
  let named = '';
  let son = '';

  before(async () => {
    practiceId = (await new PracticeRepository(db().pool).create({ slug: 'contacts-test', name: 'Contacts Clinic', timeZone: 'America/Chicago' })).id;
    const ledger = new LedgerRepository(db().pool, cipher, clock);
    patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: 'M-100' }, {
      name: { family: 'Gonzalez', given: ['Maria'] }, phones: ['617-555-0134'], email: 'maria@example.com', language: 'es', birthDate: '1980-02-03',
      address: { lines: ['12 Elm St'], city: 'Boston', state: 'MA', postalCode: '02118', country: 'US' },
    });
    self = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
    son = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: 'M-200' }, { name: { given: ['Mateo'] }, language: 'es', birthDate: '2015-06-01' });
    named = await ledger.ensureGuarantor(practiceId, {
      identifier: { system: 'urn:guarantor', value: 'G-7' },
      contact: { name: { family: 'Gonzalez', given: ['Luis'] }, phones: ['617-555-0188'], email: 'luis@example.com', birthDate: '1978-11-20' },
    });
  });

  it('reads a named guarantor and a patient who is their own guarantor in one query, every field by default', async () => {
    const spy = counted(db().pool);
    const contacts = await readGuarantorContacts(spy, cipher, [self, named, self]);
    assert.equal(spy.statements, 1);
    assert.deepEqual(contacts.get(self), {
      contact: {
        name: { family: 'Gonzalez', given: ['Maria'] }, phones: ['617-555-0134'], email: 'maria@example.com',
        address: { lines: ['12 Elm St'], city: 'Boston', state: 'MA', postalCode: '02118', country: 'US' }, language: 'es', birthDate: '1980-02-03',
      },
      selfPatientId: patientId,
      identifier: { system: 'urn:mrn', value: 'M-100' },
    });
    assert.deepEqual(contacts.get(named), {
      contact: { name: { family: 'Gonzalez', given: ['Luis'] }, phones: ['617-555-0188'], email: 'luis@example.com', birthDate: '1978-11-20' },
      selfPatientId: null,
      identifier: { system: 'urn:guarantor', value: 'G-7' },
    });
  });

  it('decrypts only the fields asked for', async () => {
    cipher.decrypted = [];
    const contacts = await readGuarantorContacts(db().pool, cipher, [self, named], ['phones', 'email']);
    assert.deepEqual(contacts.get(self)?.contact, { phones: ['617-555-0134'], email: 'maria@example.com' });
    assert.deepEqual(contacts.get(named)?.contact, { phones: ['617-555-0188'], email: 'luis@example.com' });
    assert.deepEqual(cipher.decrypted.sort(), ['guarantors.email', 'guarantors.phones', 'patients.email', 'patients.phones']);
  });

  it('leaves an unknown guarantor out, and reads none for none asked', async () => {
    const spy = counted(db().pool);
    assert.deepEqual([...(await readGuarantorContacts(spy, cipher, [UNKNOWN, named])).keys()], [named]);
    assert.equal((await readGuarantorContacts(spy, cipher, [])).size, 0);
    assert.equal(spy.statements, 1, 'nothing asked, nothing queried');
    assert.equal(await new LedgerRepository(db().pool, cipher, clock).getGuarantorContact(UNKNOWN), undefined);
  });

  it('planning reads where to send and in which language, never a birth date', async () => {
    cipher.decrypted = [];
    const planned = await new OutreachPlanningReader(db().pool, cipher).contacts([
      { id: 'maria-balance', guarantorId: self, patientId },
      { id: 'mateo-balance', guarantorId: named, patientId: son },
    ]);
    assert.equal(planned.get('maria-balance')?.contact?.language, 'es');
    assert.equal(planned.get('maria-balance')?.contact?.birthDate, undefined);
    assert.deepEqual(planned.get('mateo-balance')?.contact?.name, { family: 'Gonzalez', given: ['Luis'] });
    assert.equal(planned.get('mateo-balance')?.contact?.birthDate, undefined);
    assert.equal(planned.get('mateo-balance')?.patientLanguage, 'es', "Luis's contact names no language: his son's is used");
    assert.deepEqual(cipher.decrypted.filter((aad) => aad.endsWith('.birthDate')), []);
  });

  it("gives a letter or the pay page a guarantor's whole contact in one query", async () => {
    const spy = counted(db().pool);
    const ledger = new LedgerRepository(spy, cipher, clock);
    const maria = await ledger.getGuarantorContact(self);
    assert.equal(spy.statements, 1, 'the patient who is their own guarantor is read in the same query');
    assert.deepEqual(maria, {
      name: { family: 'Gonzalez', given: ['Maria'] }, phones: ['617-555-0134'], email: 'maria@example.com',
      address: { lines: ['12 Elm St'], city: 'Boston', state: 'MA', postalCode: '02118', country: 'US' }, language: 'es', birthDate: '1980-02-03',
      selfPatientId: patientId, identifier: { system: 'urn:mrn', value: 'M-100' },
    });
    assert.deepEqual(await ledger.getGuarantorContact(named), {
      name: { family: 'Gonzalez', given: ['Luis'] }, phones: ['617-555-0188'], email: 'luis@example.com', birthDate: '1978-11-20',
      selfPatientId: null, identifier: { system: 'urn:guarantor', value: 'G-7' },
    });
  });
});
