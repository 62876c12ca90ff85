import assert from 'node:assert/strict';
import { it } from 'node:test';
import { backfillDemographics } from '../../src/analytics/backfill.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { cipher } from './dataset.ts';

describeOnEachDatabase('Analytics backfill of birth year and ZIP3', (db) => {
  it('fills what patients stored before 0017 lack from their encrypted contact, in batches, and changes nothing the second time', async () => {
    const clock = new ManualClock(new Date('2026-01-05T15:00:00Z'));
    const practiceId = (await new PracticeRepository(db().pool).create({ slug: 'backfill', name: 'Backfill Clinic', timeZone: 'UTC' })).id;
    const ledger = new LedgerRepository(db().pool, cipher, clock);
    const contacts = [
      { mrn: 'B1', birthDate: '1980-05-05', postalCode: '02134', year: 1980, zip3: '021' },
      { mrn: 'B2', birthDate: '2010-03-03', postalCode: '03601', year: 2010, zip3: '000' },
      { mrn: 'B3', birthDate: undefined, postalCode: '60614-1234', year: null, zip3: '606' },
      { mrn: 'B4', birthDate: '1950-01-01', postalCode: undefined, year: 1950, zip3: null },
      { mrn: 'B5', birthDate: undefined, postalCode: undefined, year: null, zip3: null },
    ];
    for (const c of contacts) {
      await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: c.mrn }, {
        name: { family: 'Testperson', given: [c.mrn] },
        ...(c.birthDate ? { birthDate: c.birthDate } : {}),
        ...(c.postalCode ? { address: { lines: ['1 Main St'], city: 'Town', state: 'MA', postalCode: c.postalCode } } : {}),
      });
    }
    // As stored before migration 0017: the encrypted fields only. B2's ZIP3 was written since (kept as it is).
    await db().pool.query('UPDATE patients SET birth_year = NULL, zip3 = NULL WHERE practice_id = $1', [practiceId]);
    await db().pool.query(`UPDATE patients SET zip3 = '999' WHERE practice_id = $1 AND identifier_value = 'B2'`, [practiceId]);
    // A field no configured key can decrypt is counted and left alone.
    const { rows: [b5] } = await db().pool.query<{ id: string }>(
      `UPDATE patients SET birth_date_enc = 'v1.gone.AAAA.AAAA.AAAA' WHERE practice_id = $1 AND identifier_value = 'B5' RETURNING id`, [practiceId]);

    const undecryptable: string[] = [];
    const first = await backfillDemographics(db(), cipher, { batchSize: 2, onUndecryptable: (id) => undecryptable.push(id) });
    assert.deepEqual(first, { scanned: 5, birthYears: 3, zip3s: 2, undecryptable: 1 });
    assert.deepEqual(undecryptable, [b5!.id]);
    const { rows } = await db().pool.query<{ identifier_value: string; birth_year: number | null; zip3: string | null }>(
      'SELECT identifier_value, birth_year, zip3 FROM patients WHERE practice_id = $1 ORDER BY identifier_value', [practiceId]);
    assert.deepEqual(rows, [
      { identifier_value: 'B1', birth_year: 1980, zip3: '021' },
      { identifier_value: 'B2', birth_year: 2010, zip3: '999' },
      { identifier_value: 'B3', birth_year: null, zip3: '606' },
      { identifier_value: 'B4', birth_year: 1950, zip3: null },
      { identifier_value: 'B5', birth_year: null, zip3: null },
    ]);

    const second = await backfillDemographics(db(), cipher, { batchSize: 2 });
    assert.equal(second.birthYears + second.zip3s, 0, 'nothing changes the second time');
  });
});
