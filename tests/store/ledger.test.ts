import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { before, it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import type { LedgerLine, SourceVersion } from '../../src/domain/ledger.ts';
import { parseMoney } from '../../src/domain/money.ts';
import { withTransaction } from '../../src/store/database.ts';
import { LedgerError, LedgerRepository } from '../../src/store/ledger.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { describeOnEachDatabase } from '../support/databases.ts';

export const testCipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });

const line = (lineKey: string, kind: LedgerLine['kind'], amount: string, serviceDate: string, extra: Partial<LedgerLine> = {}): LedgerLine => ({
  lineKey, kind, amount: parseMoney(amount, 'USD'), serviceDate, payer: 'patient', serviceCode: null, description: null, ...extra,
});
const v = (sourceId: string, versionId: string, lastUpdated: string | null = null): SourceVersion => ({
  connector: 'ehr', resourceType: 'Invoice', sourceId, versionId, lastUpdated: lastUpdated ? new Date(lastUpdated) : null,
});

describeOnEachDatabase('LedgerRepository', (db) => {
  const clock = new ManualClock(new Date('2026-03-01T15:00:00Z'));
  let practiceId = '';
  let ledger: LedgerRepository;
  let target: { accountId: string; guarantorId: string; patientId: string };

  before(async () => {
    practiceId = (await new PracticeRepository(db().pool).create({ slug: 'ledger-test', name: 'Ledger Test', timeZone: 'America/Chicago' })).id;
    ledger = new LedgerRepository(db().pool, testCipher, clock);
    const patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: 'P1' }, {
      name: { family: 'Gonzalez', given: ['Maria'] }, phones: ['(617) 555-0134'], email: 'Maria@Example.com', birthDate: '1980-02-03', language: 'es',
    });
    const guarantorId = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
    const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: 'A1' }, patientId });
    target = { accountId, guarantorId, patientId };
  });

  const post = (version: SourceVersion, lines: LedgerLine[], to = target) =>
    withTransaction(db(), (tx) => ledger.on(tx).postSource(practiceId, version, to, lines));

  it('stores contact encrypted, finds people by blind index, and resolves one patient per identifier', async () => {
    const again = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: 'P1' }, { phones: ['617-555-0199'] });
    assert.equal(again, target.patientId);
    const { rows } = await db().pool.query('SELECT name_enc, email_enc FROM patients WHERE id = $1', [target.patientId]);
    assert.match(rows[0].name_enc, /^v1\.k1\./);
    assert.doesNotMatch(JSON.stringify(rows), /Gonzalez|Example/i);
    const patient = await ledger.getPatient(target.patientId);
    assert.deepEqual(patient?.name, { family: 'Gonzalez', given: ['Maria'] });
    assert.deepEqual(patient?.phones, ['617-555-0199']);
    assert.equal(patient?.birthDate, '1980-02-03');
    assert.deepEqual(await ledger.findByContact(practiceId, 'email', ' maria@example.COM'), [{ ownerType: 'patient', id: target.patientId }]);
    assert.deepEqual(await ledger.findByContact(practiceId, 'phone', '+1 617 555 0199'), [{ ownerType: 'patient', id: target.patientId }]);
    assert.deepEqual(await ledger.findByContact(practiceId, 'phone', '617 555 0134'), [], 'the replaced phone is no longer indexed');
    const self = await ledger.getGuarantorContact(target.guarantorId);
    assert.equal(self?.selfPatientId, target.patientId);
    assert.equal(self?.language, 'es');
    assert.equal(await ledger.ensureGuarantor(practiceId, { selfPatientId: target.patientId }), target.guarantorId);
  });

  it('posts a record once: the same version again changes nothing', async () => {
    const lines = [line('lineItem/0', 'charge', '150.00', '2026-01-10'), line('lineItem/1', 'payment', '20.00', '2026-01-11')];
    const first = await post(v('inv-1', '1'), lines);
    assert.equal(first.outcome, 'posted');
    assert.equal(first.posted, 2);
    const again = await post(v('inv-1', '1'), lines);
    assert.deepEqual(again, { outcome: 'duplicate', posted: 0, reversed: 0, balanceIds: [] });
    const balance = await ledger.getBalance(first.balanceIds[0]!);
    assert.deepEqual(balance?.patientAmount, { amount: 13000, currency: 'USD' });
    assert.equal(balance?.status, 'open');
    assert.equal(balance?.oldestOpenDate, '2026-01-10');
    assert.equal(balance?.agingBucket, '31-60', '2026-01-10 to 2026-03-01 is 50 days');
    assert.equal((await ledger.entries(balance!.id)).length, 2);
  });

  it('a new version reverses only the changed lines and posts the new ones; an older one arriving late is ignored', async () => {
    const v2 = await post(v('inv-1', '2'), [line('lineItem/0', 'charge', '150.00', '2026-01-10'), line('lineItem/1', 'payment', '50.00', '2026-01-11')]);
    assert.deepEqual([v2.outcome, v2.posted, v2.reversed], ['posted', 1, 1]);
    const balanceId = v2.balanceIds[0]!;
    assert.equal((await ledger.getBalance(balanceId))?.patientAmount.amount, 10000);
    const stale = await post(v('inv-1', '1b', null), [line('lineItem/0', 'charge', '999.00', '2026-01-10')]);
    assert.equal(stale.outcome, 'posted', 'opaque version ids count as newer by arrival');
    const back = await post(v('inv-1', '3'), [line('lineItem/0', 'charge', '150.00', '2026-01-10'), line('lineItem/1', 'payment', '50.00', '2026-01-11')]);
    assert.equal(back.outcome, 'posted');
    const older = await post(v('inv-1', '2'), [line('lineItem/0', 'charge', '1.00', '2026-01-10')]);
    assert.equal(older.outcome, 'duplicate');
    const late = await post(v('inv-1', '0'), [line('lineItem/0', 'charge', '1.00', '2026-01-10')]);
    assert.equal(late.outcome, 'stale');
    assert.equal((await ledger.getBalance(balanceId))?.patientAmount.amount, 10000);
    const entries = await ledger.entriesOfSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 'inv-1' });
    assert.equal(entries.reduce((sum, e) => sum + e.effect, 0), 10000);
    assert.ok(entries.every((e) => e.reversesEntryId === null || entries.some((o) => o.id === e.reversesEntryId && o.amount.amount === -e.amount.amount)));
    assert.deepEqual(await ledger.verifyBalance(balanceId), { stored: 10000, fromEntries: 10000 });
  });

  it('orders versions by lastUpdated when the source gives it', async () => {
    await post(v('inv-2', 'b', '2026-02-02T00:00:00Z'), [line('x', 'charge', '10.00', '2026-02-01')]);
    const late = await post(v('inv-2', 'a', '2026-02-01T00:00:00Z'), [line('x', 'charge', '99.00', '2026-02-01')]);
    assert.equal(late.outcome, 'stale');
    const same = await post(v('inv-2', 'c', '2026-02-03T00:00:00Z'), [line('x', 'charge', '10.00', '2026-02-01')]);
    assert.equal(same.outcome, 'unchanged');
  });

  it('refuses mixed currencies on one balance and leaves nothing behind', async () => {
    const euro: LedgerLine = { ...line('e', 'charge', '1.00', '2026-02-01'), amount: parseMoney('1.00', 'EUR') };
    await assert.rejects(post(v('inv-3', '1'), [euro]), (error: unknown) => error instanceof LedgerError && error.code === 'currency-mismatch');
    const entries = await ledger.entriesOfSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 'inv-3' });
    assert.equal(entries.length, 0);
    await assert.rejects(post(v('inv-3', '1'), [line('u', 'charge', '1.00', '2026-02-01'), euro]), /mixed currencies/);
  });

  it('one batch posting to balances in different currencies stores each entry in its own balance currency', async () => {
    const account = (value: string) => ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value }, patientId: target.patientId });
    const inDollars = { ...target, accountId: await account('A-usd-batch') };
    const inEuros = { ...target, accountId: await account('A-eur-batch') };
    const eur = (lineKey: string, kind: LedgerLine['kind'], amount: string): LedgerLine => ({ ...line(lineKey, kind, amount, '2026-02-01'), amount: parseMoney(amount, 'EUR') });
    const [usd1, eur1, usd2, eur2] = await withTransaction(db(), (tx) =>
      ledger.on(tx).postSources(practiceId, [
        { version: v('cur-usd-1', '1'), target: inDollars, lines: [line('c', 'charge', '10.00', '2026-02-01'), line('p', 'payment', '1.00', '2026-02-02')] },
        { version: v('cur-eur-1', '1'), target: inEuros, lines: [eur('c', 'charge', '20.00'), eur('a', 'adjustment', '2.00')] },
        { version: v('cur-usd-2', '1'), target: inDollars, lines: [line('c', 'charge', '3.00', '2026-02-03')] },
        { version: v('cur-eur-2', '1'), target: inEuros, lines: [eur('c', 'charge', '4.00')] },
      ]),
    );
    const currencies = async (sourceId: string) =>
      (await ledger.entriesOfSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId })).map((e) => [e.lineKey, e.amount.amount, e.amount.currency, e.effect]);
    assert.deepEqual(await currencies('cur-usd-1'), [['c', 1000, 'USD', 1000], ['p', 100, 'USD', -100]]);
    assert.deepEqual(await currencies('cur-eur-1'), [['c', 2000, 'EUR', 2000], ['a', 200, 'EUR', -200]]);
    assert.deepEqual(await currencies('cur-usd-2'), [['c', 300, 'USD', 300]]);
    assert.deepEqual(await currencies('cur-eur-2'), [['c', 400, 'EUR', 400]]);
    assert.deepEqual((await ledger.getBalance(usd1!.balanceIds[0]!))?.patientAmount, { amount: 1200, currency: 'USD' });
    assert.deepEqual((await ledger.getBalance(eur1!.balanceIds[0]!))?.patientAmount, { amount: 2200, currency: 'EUR' });
    assert.deepEqual([usd2!.balanceIds, eur2!.balanceIds], [usd1!.balanceIds, eur1!.balanceIds]);
  });

  it('moves to paid when paid off and back to open on a new charge, recording each change', async () => {
    const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: 'A2' }, patientId: target.patientId });
    const to = { ...target, accountId };
    const r = await post(v('inv-4', '1'), [line('c', 'charge', '40.00', '2025-10-01')], to);
    const id = r.balanceIds[0]!;
    assert.equal((await ledger.getBalance(id))?.agingBucket, '120+');
    await post(v('pay-4', '1'), [line('p', 'payment', '40.00', '2026-02-01')], to);
    assert.equal((await ledger.getBalance(id))?.status, 'paid');
    assert.equal((await ledger.getBalance(id))?.agingBucket, null);
    await post(v('inv-5', '1'), [line('c', 'charge', '5.00', '2026-02-20')], to);
    const balance = await ledger.getBalance(id);
    assert.equal(balance?.status, 'open');
    assert.equal(balance?.agingBucket, '0-30');
    const history = await ledger.statusHistory(id);
    assert.deepEqual(history.map((h) => [h.fromStatus, h.toStatus, h.actor]), [[null, 'open', 'system:ingest'], ['open', 'paid', 'system:ingest'], ['paid', 'open', 'system:ingest']]);
  });

  it('a balance a batch creates is what posting its records one by one makes it: amounts, oldest open date, status and history', async () => {
    const account = (value: string) => ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value }, patientId: target.patientId });
    const records = (prefix: string): [SourceVersion, LedgerLine[]][] => [
      [v(`${prefix}-1`, '1'), [line('c1', 'charge', '30.00', '2026-01-05'), line('c2', 'charge', '12.50', '2026-01-20'), line('i', 'charge', '80.00', '2026-01-05', { payer: 'insurance' })]],
      [v(`${prefix}-2`, '1'), [line('p', 'payment', '30.00', '2026-02-01'), line('a', 'adjustment', '2.50', '2026-01-20')]],
      [v(`${prefix}-3`, '1'), [line('p', 'payment', '10.00', '2026-02-03')]],
    ];
    const paidOff = { ...target, accountId: await account('A-paid-batch') };
    const owing = { ...target, accountId: await account('A-owing-batch') };
    const [paidResult, , , owingResult] = await withTransaction(db(), (tx) =>
      ledger.on(tx).postSources(practiceId, [
        ...records('bp').map(([version, lines]) => ({ version, target: paidOff, lines })),
        ...records('bo').slice(0, 2).map(([version, lines]) => ({ version, target: owing, lines })),
      ]),
    );
    const oneByOne = { ...target, accountId: await account('A-paid-single') };
    let single = '';
    for (const [version, lines] of records('sp')) single = (await post(version, lines, oneByOne)).balanceIds[0]!;
    const state = async (id: string) => {
      const { id: _id, accountId: _a, statusChangedAt: _s, updatedAt: _u, ...balance } = (await ledger.getBalance(id))!;
      return { balance, history: (await ledger.statusHistory(id)).map((h) => [h.fromStatus, h.toStatus, h.note?.replace(/\/(bp|sp)-/, '/x-') ?? null]) };
    };
    const batched = await state(paidResult!.balanceIds[0]!);
    assert.deepEqual(batched, await state(single));
    assert.equal(batched.balance.status, 'paid');
    assert.deepEqual(batched.history, [[null, 'open', 'balance created'], ['open', 'paid', 'ehr/Invoice/x-3 version 1']]);
    assert.deepEqual(batched.balance.insuranceAmount, { amount: 8000, currency: 'USD' });
    const owingBalance = (await ledger.getBalance(owingResult!.balanceIds[0]!))!;
    assert.deepEqual([owingBalance.patientAmount.amount, owingBalance.oldestOpenDate, owingBalance.status], [1000, '2026-01-20', 'open']);
    assert.deepEqual(await ledger.verifyBalance(owingBalance.id), { stored: 1000, fromEntries: 1000 });
  });

  it('stores line texts exactly as given: quotes, backslashes, commas, braces, NULL-like text and empty strings', async () => {
    const texts = ['say "hi"', 'C:\\temp\\x', 'a, b {c}', 'NULL', '', ' padded ', 'ünïcode ✓'];
    const lines = texts.map((text, i) => line(`k${i}-${text}`, 'charge', '1.00', '2026-02-01', { description: text, serviceCode: i % 2 ? null : text }));
    await post(v('inv-texts', '1'), lines);
    const entries = await ledger.entriesOfSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 'inv-texts' });
    assert.deepEqual(entries.map((e) => [e.lineKey, e.description, e.serviceCode]), texts.map((text, i) => [`k${i}-${text}`, text, i % 2 ? null : text]));
  });

  it('holds need a reason; status changes record who and why; the small-balance threshold stops outreach', async () => {
    const [balance] = (await ledger.listBalances(practiceId, { minAmount: 10000 })).balances;
    assert.ok(balance);
    await assert.rejects(ledger.setStatus(balance.id, { status: 'on_hold', actor: 'user:1' }), /needs a reason/);
    await ledger.setStatus(balance.id, { status: 'on_hold', holdReason: 'nsa_dispute', actor: 'user:1', note: 'called in' });
    assert.equal((await ledger.getBalance(balance.id))?.holdReason, 'nsa_dispute');
    assert.equal((await ledger.getBalance(balance.id))?.outreachEligible, false);
    await ledger.setStatus(balance.id, { status: 'open', actor: 'user:1' });
    assert.deepEqual((await ledger.statusHistory(balance.id)).slice(-2).map((h) => [h.toStatus, h.holdReason, h.actor, h.note]), [
      ['on_hold', 'nsa_dispute', 'user:1', 'called in'],
      ['open', null, 'user:1', null],
    ]);
    assert.equal((await ledger.getBalance(balance.id))?.outreachEligible, true);
    await ledger.setSmallBalanceThreshold(practiceId, balance.patientAmount.amount + 1);
    assert.equal((await ledger.getBalance(balance.id))?.outreachEligible, false);
    await ledger.setSmallBalanceThreshold(practiceId, 500);
  });

  it('lists balances filtered by status, aging bucket, amount and guarantor, paged', async () => {
    const all = await ledger.listBalances(practiceId);
    assert.ok(all.balances.length >= 2);
    const bucket = await ledger.listBalances(practiceId, { agingBucket: '31-60' });
    assert.ok(bucket.balances.length >= 1 && bucket.balances.every((b) => b.agingBucket === '31-60'));
    assert.equal((await ledger.listBalances(practiceId, { agingBucket: '91-120' })).balances.length, 0);
    assert.ok((await ledger.listBalances(practiceId, { status: 'open', guarantorId: target.guarantorId })).balances.length >= 1);
    const page1 = await ledger.listBalances(practiceId, { limit: 1 });
    assert.equal(page1.balances.length, 1);
    const page2 = await ledger.listBalances(practiceId, { limit: 1, cursor: page1.nextCursor! });
    assert.notEqual(page2.balances[0]?.id, page1.balances[0]?.id);
  });

  it('keeps entries append-only', async () => {
    await assert.rejects(db().pool.query("UPDATE ledger_entries SET amount_minor = 0"), /append-only/);
    await assert.rejects(db().pool.query('DELETE FROM ledger_entries'), /append-only/);
  });

  it('refuses an entry whose practice, guarantor or account is not its balance’s, or a reversal of no entry of its balance, or a second reversal (0022, 0027)', async () => {
    const [entry] = await ledger.entriesOfSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 'inv-1' });
    const other = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: 'A-other' } });
    const copy = (column: 'account_id' | 'guarantor_id' | 'practice_id', value: string) =>
      db().pool.query(
        `INSERT INTO ledger_entries (practice_id, balance_id, account_id, guarantor_id, patient_id, kind, amount_minor, effect_minor, currency, service_date, payer,
           line_key, source_connector, source_resource_type, source_id, source_version, posted_at)
         SELECT ${column === 'practice_id' ? '$2' : 'practice_id'}, balance_id, ${column === 'account_id' ? '$2' : 'account_id'}, ${column === 'guarantor_id' ? '$2' : 'guarantor_id'},
           patient_id, kind, 1, 1, currency, service_date, payer, 'x', 'test', 'Invoice', 'x', '1', now() FROM ledger_entries WHERE id = $1`,
        [entry!.id, value],
      );
    const otherPractice = (await new PracticeRepository(db().pool).create({ slug: 'ledger-other', name: 'Other', timeZone: 'UTC' })).id;
    await assert.rejects(copy('account_id', other), /ledger_entries_balance_fkey/);
    await assert.rejects(copy('guarantor_id', randomUUID()), /ledger_entries_balance_fkey/);
    await assert.rejects(copy('practice_id', otherPractice), /ledger_entries_balance_fkey/);
    const { rows: [reversal] } = await db().pool.query<{ id: string }>('SELECT id FROM ledger_entries WHERE reverses_entry_id IS NOT NULL LIMIT 1');
    await assert.rejects(
      db().pool.query(
        `INSERT INTO ledger_entries (practice_id, balance_id, account_id, guarantor_id, patient_id, kind, amount_minor, effect_minor, currency, service_date, payer,
           line_key, source_connector, source_resource_type, source_id, source_version, reverses_entry_id, posted_at)
         SELECT practice_id, balance_id, account_id, guarantor_id, patient_id, kind, 1, 1, currency, service_date, payer, 'x', 'test', 'Invoice', 'x', '1', reverses_entry_id, now()
         FROM ledger_entries WHERE id = $1`,
        [reversal!.id],
      ),
      /ledger_entries_reverses_key/,
      'an entry is reversed at most once',
    );
    const reverse = (reverses: string, balanceOf: string) =>
      db().pool.query(
        `INSERT INTO ledger_entries (practice_id, balance_id, account_id, guarantor_id, patient_id, kind, amount_minor, effect_minor, currency, service_date, payer,
           line_key, source_connector, source_resource_type, source_id, source_version, reverses_entry_id, posted_at)
         SELECT practice_id, balance_id, account_id, guarantor_id, patient_id, kind, 1, 1, currency, service_date, payer, 'x', 'test', 'Invoice', 'x', '1', $1, now()
         FROM ledger_entries WHERE id = $2`,
        [reverses, balanceOf],
      );
    await assert.rejects(reverse(randomUUID(), entry!.id), (e: { code?: string; message: string }) => e.code === '23503' && /ledger_entries_reverses_entry_id_fkey/.test(e.message), 'a reversal of no entry');
    const { rows: [elsewhere] } = await db().pool.query<{ id: string }>('SELECT id FROM ledger_entries WHERE balance_id <> $1 LIMIT 1', [entry!.balanceId]);
    await assert.rejects(reverse(elsewhere!.id, entry!.id), /ledger_entries_reverses_entry_id_fkey/, 'a reversal of another balance’s entry');
  });

  it('never deletes a balance or moves it to another practice, guarantor or account (0027)', async () => {
    const [entry] = await ledger.entriesOfSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 'inv-1' });
    const other = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: 'A-moved' } });
    await assert.rejects(db().pool.query('DELETE FROM balances WHERE id = $1', [entry!.balanceId]), /never deleted/);
    await assert.rejects(db().pool.query('UPDATE balances SET account_id = $2 WHERE id = $1', [entry!.balanceId, other]), /keep their practice, guarantor and account/);
    await db().pool.query('UPDATE balances SET account_id = account_id, updated_at = updated_at WHERE id = $1', [entry!.balanceId]);
    assert.equal((await db().pool.query('SELECT 1 FROM balances WHERE id = $1', [entry!.balanceId])).rowCount, 1);
  });

  it('keeps party, balance, source and history rows tied to what they reference, checked once per statement (0032)', async () => {
    const unknown = '00000000-0000-4000-8000-00000000abcd';
    const refused = (table: string, column: string) => (error: { code?: string; constraint?: string }) => {
      assert.deepEqual([error.code, error.constraint], ['23503', `${table}_${column}_fkey`], `${table}.${column}`);
      return true;
    };
    const run = (sql: string, ...values: unknown[]) => db().pool.query(sql, values);
    // A statement naming an existing and a missing practice is refused whole.
    await assert.rejects(
      run(`INSERT INTO patients (practice_id, identifier_system, identifier_value, created_at, updated_at)
           SELECT p, 'urn:mrn', 'FK-' || p, now(), now() FROM unnest($1::uuid[]) AS p`, [practiceId, unknown]),
      refused('patients', 'practice_id'),
    );
    assert.equal((await run("SELECT 1 FROM patients WHERE identifier_value LIKE 'FK-%'")).rowCount, 0, 'the whole statement is refused');
    const guarantor = (practice: string, selfPatient: string) =>
      run('INSERT INTO guarantors (practice_id, self_patient_id, created_at, updated_at) VALUES ($1, $2, now(), now())', practice, selfPatient);
    await assert.rejects(guarantor(unknown, target.patientId), refused('guarantors', 'practice_id'));
    await assert.rejects(guarantor(practiceId, unknown), refused('guarantors', 'self_patient_id'));
    const account = (practice: string, patient: string | null, payer: string | null) =>
      run(`INSERT INTO ledger_accounts (practice_id, identifier_system, identifier_value, patient_id, guarantor_id, created_at, updated_at)
           VALUES ($1, 'urn:acct', 'FK', $2, $3, now(), now())`, practice, patient, payer);
    await assert.rejects(account(unknown, null, null), refused('ledger_accounts', 'practice_id'));
    await assert.rejects(account(practiceId, unknown, null), refused('ledger_accounts', 'patient_id'));
    await assert.rejects(account(practiceId, target.patientId, unknown), refused('ledger_accounts', 'guarantor_id'));
    const fresh = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: 'A-fk' } });
    const balance = (practice: string, payer: string, acct: string, patient: string | null) =>
      run(`INSERT INTO balances (practice_id, guarantor_id, account_id, patient_id, currency, status_changed_at, created_at, updated_at)
           VALUES ($1, $2, $3, $4, 'USD', now(), now(), now())`, practice, payer, acct, patient);
    await assert.rejects(balance(unknown, target.guarantorId, fresh, null), refused('balances', 'practice_id'));
    await assert.rejects(balance(practiceId, unknown, fresh, null), refused('balances', 'guarantor_id'));
    await assert.rejects(balance(practiceId, target.guarantorId, unknown, null), refused('balances', 'account_id'));
    await assert.rejects(balance(practiceId, target.guarantorId, fresh, unknown), refused('balances', 'patient_id'));
    await assert.rejects(run(`INSERT INTO ledger_sources (practice_id, connector, resource_type, source_id, version_id, updated_at) VALUES ($1, 'fk', 'Invoice', 'x', '1', now())`, unknown), refused('ledger_sources', 'practice_id'));
    await assert.rejects(
      run(`INSERT INTO ledger_source_versions (practice_id, connector, resource_type, source_id, version_id, outcome, received_at) VALUES ($1, 'fk', 'Invoice', 'x', '1', 'posted', now())`, unknown),
      refused('ledger_source_versions', 'practice_id'),
    );
    await assert.rejects(run(`INSERT INTO balance_status_history (balance_id, to_status, actor, occurred_at) VALUES ($1, 'open', 'test', now())`, randomUUID()), refused('balance_status_history', 'balance_id'));
    // An update that changes a reference is checked; one to an existing row goes through.
    await assert.rejects(run('UPDATE ledger_accounts SET patient_id = $1 WHERE id = $2', unknown, fresh), refused('ledger_accounts', 'patient_id'));
    await assert.rejects(run('UPDATE ledger_accounts SET guarantor_id = $1 WHERE id = $2', unknown, fresh), refused('ledger_accounts', 'guarantor_id'));
    await run('UPDATE ledger_accounts SET patient_id = $1, guarantor_id = $2 WHERE id = $3', target.patientId, target.guarantorId, fresh);
    await assert.rejects(run('UPDATE balances SET patient_id = $1 WHERE account_id = $2', unknown, target.accountId), refused('balances', 'patient_id'));
    await assert.rejects(run('UPDATE guarantors SET self_patient_id = $1 WHERE id = $2', unknown, target.guarantorId), refused('guarantors', 'self_patient_id'));
    // Rows keep their practice (history entries their balance); parties are kept; a practice with ledger rows stays.
    const other = (await new PracticeRepository(db().pool).create({ slug: 'ledger-fk-other', name: 'Other', timeZone: 'UTC' })).id;
    await assert.rejects(run('UPDATE patients SET practice_id = $1 WHERE id = $2', other, target.patientId), /keeps its practice_id/);
    await assert.rejects(run('UPDATE ledger_sources SET practice_id = $1 WHERE practice_id = $2', other, practiceId), /keeps its practice_id/);
    await assert.rejects(run('UPDATE balance_status_history SET balance_id = $1 WHERE id = (SELECT min(id) FROM balance_status_history)', randomUUID()), /keeps its balance_id/);
    await assert.rejects(run('DELETE FROM patients WHERE id = $1', target.patientId), /never deleted/);
    await assert.rejects(run('DELETE FROM guarantors WHERE id = $1', target.guarantorId), /never deleted/);
    await assert.rejects(run('DELETE FROM ledger_accounts WHERE id = $1', fresh), /never deleted/);
    await assert.rejects(run('UPDATE ledger_accounts SET id = $1 WHERE id = $2', randomUUID(), fresh), /keep their id/);
    await assert.rejects(run('DELETE FROM practices WHERE id = $1', practiceId), (error: { code?: string; message: string }) => error.code === '23503' && /still has patients rows/.test(error.message));
    await assert.rejects(run('UPDATE practices SET id = $1 WHERE id = $2', unknown, practiceId), /still has patients rows/);
    await run("UPDATE practices SET name = 'Ledger Test' WHERE id = $1", practiceId);
    assert.equal((await run('DELETE FROM practices WHERE id = $1', other)).rowCount, 1, 'a practice without ledger rows is not held');
  });

  it('keeps one posting per version under concurrent re-delivery', async () => {
    const lines = [line('c', 'charge', '7.00', '2026-02-25')];
    const results = await Promise.allSettled([post(v('inv-9', '1'), lines), post(v('inv-9', '1'), lines), post(v('inv-9', '1'), lines)]);
    const entries = await ledger.entriesOfSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 'inv-9' });
    assert.equal(entries.length, 1, JSON.stringify(results.map((r) => r.status)));
  });

  it('a batch posting to a balance that exists adds its lines to the stored sums of the same service date and payer, as one by one', async () => {
    const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: 'A-net' }, patientId: target.patientId });
    const to = { ...target, accountId };
    const first = await post(v('net-1', '1'), [line('c', 'charge', '100.00', '2026-01-05')], to);
    await post(v('net-2', '1'), [line('p', 'payment', '100.00', '2026-01-20')], to);
    const id = first.balanceIds[0]!;
    assert.equal((await ledger.getBalance(id))?.status, 'paid');
    // 2026-01-20 nets to nothing (the payment and this charge), so the payment does not pay off 2026-01-05's charge.
    const [result] = await withTransaction(db(), (tx) => ledger.on(tx).postSources(practiceId, [{ version: v('net-3', '1'), target: to, lines: [line('c', 'charge', '100.00', '2026-01-20')] }]));
    assert.deepEqual(result?.balanceIds, [id]);
    const balance = (await ledger.getBalance(id))!;
    assert.deepEqual([balance.patientAmount.amount, balance.oldestOpenDate, balance.status], [10000, '2026-01-05', 'open']);
    assert.deepEqual(await ledger.verifyBalance(id), { stored: 10000, fromEntries: 10000 });
  });

  it('gives new entries and reversals time-ordered ids (UUID version 7), the lines of a batch ascending in line order', async () => {
    await post(v('ids-1', '1'), [line('a', 'charge', '1.00', '2026-02-01'), line('b', 'charge', '2.00', '2026-02-01'), line('c', 'charge', '3.00', '2026-02-01')]);
    await post(v('ids-1', '2'), [line('a', 'charge', '1.00', '2026-02-01'), line('b', 'charge', '2.50', '2026-02-01'), line('c', 'charge', '3.00', '2026-02-01')]);
    const entries = await ledger.entriesOfSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 'ids-1' });
    assert.equal(entries.length, 5, 'three lines, a reversal and its replacement');
    for (const entry of entries) assert.match(entry.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const ids = entries.filter((e) => e.source.versionId === '1').map((e) => e.id);
    assert.deepEqual(ids, [...ids].sort(), 'in line order');
    assert.equal(ids.length, 3);
  });

  it('lists a balance\'s entries and a source\'s entries in the order they were posted, past the ninth', async () => {
    // Bug: both read seq as text and ordered by that text, so entry 10 came before entry 9 (on the balance's page, in
    // its letter and on the pay page).
    const to = { ...target, accountId: await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: 'A-ORDER' }, patientId: target.patientId }) };
    // The entries' seq numbers cross a power of ten (…96 to …109), wherever this test runs.
    const { rows } = await db().pool.query<{ max: string }>('SELECT coalesce(max(seq), 0)::text AS max FROM ledger_entries');
    await db().pool.query(`SELECT setval(pg_get_serial_sequence('ledger_entries', 'seq'), $1)`, [10 ** (rows[0]!.max.length + 1) - 5]);
    for (let i = 1; i <= 12; i++) await post(v(`order-${i}`, '1'), [line('l', 'charge', `${i}.00`, '2026-02-01')], to);
    await post(v('order-1', '2'), [line('l', 'charge', '13.00', '2026-02-01')], to);
    const balanceId = (await ledger.listBalances(practiceId, { guarantorId: to.guarantorId })).balances.find((b) => b.accountId === to.accountId)!.id;
    const entries = await ledger.entries(balanceId);
    assert.deepEqual(entries.map((e) => e.amount.amount), [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200, -100, 1300]);
    assert.deepEqual(entries.map((e) => Number(e.seq)), entries.map((e) => Number(e.seq)).sort((a, b) => a - b));
    const ofSource = await ledger.entriesOfSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 'order-1' });
    assert.deepEqual(ofSource.map((e) => [e.amount.amount, e.source.versionId]), [[100, '1'], [-100, '2'], [1300, '2']]);
  });

  it('follows a source to another account: later versions reverse only what changed there, a version that drops a line keeps the rest', async () => {
    const account = async (value: string) => ({ ...target, accountId: await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value }, patientId: target.patientId }) });
    const [onA, onB] = [await account('A-MOVE'), await account('B-MOVE')];
    const a = line('lineItem/0', 'charge', '100.00', '2026-02-01');
    const b = line('lineItem/1', 'charge', '50.00', '2026-02-01');
    const [balanceA] = (await post(v('moving', '1'), [a, b], onA)).balanceIds;
    const moved = await post(v('moving', '2'), [a, b], onB);
    assert.deepEqual([moved.posted, moved.reversed], [2, 2], 'every line leaves A for B');
    const balanceB = moved.balanceIds.find((id) => id !== balanceA)!;
    const changed = await post(v('moving', '3'), [line('lineItem/0', 'charge', '120.00', '2026-02-01'), b], onB);
    assert.deepEqual([changed.posted, changed.reversed, changed.balanceIds], [1, 1, [balanceB]], 'only the changed line, on B');
    const dropped = await post(v('moving', '4'), [line('lineItem/0', 'charge', '120.00', '2026-02-01')], onB);
    assert.deepEqual([dropped.posted, dropped.reversed], [0, 1]);
    const again = await post(v('moving', '5'), [line('lineItem/0', 'charge', '130.00', '2026-02-01')], onB);
    assert.deepEqual([again.posted, again.reversed], [1, 1], 'the line kept by version 4 is still found');
    assert.equal((await ledger.getBalance(balanceA!))?.patientAmount.amount, 0);
    assert.equal((await ledger.getBalance(balanceB))?.patientAmount.amount, 13000);
    assert.deepEqual(await ledger.verifyBalance(balanceB), { stored: 13000, fromEntries: 13000 });
  });
});
