import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { before, it } from 'node:test';
import { silentLogger } from '../../src/config/logger.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import type { SourceRecord } from '../../src/domain/source-record.ts';
import { ingestBatch, mapAndPost } from '../../src/ingest/batch.ts';
import { ingestPendingSourceRecords, type IngestCounts } from '../../src/ingest/pending-batch.ts';
import { ingestClaimed } from '../../src/ingest/pending-claimed.ts';
import { loadMappings } from '../../src/mapping/load.ts';
import { withTransaction } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { QuarantineRepository } from '../../src/store/quarantine.ts';
import { SourceRecordRepository } from '../../src/store/source-records.ts';
import { describeOnEachDatabase } from '../support/databases.ts';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const mappings = loadMappings(repoRoot);
const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
const logger = silentLogger();
const invoiceExample = JSON.parse(readFileSync(`${repoRoot}node_modules/hl7.fhir.r4.examples/Invoice-example.json`, 'utf8')) as Record<string, unknown>;
const ZERO: IngestCounts = { records: 0, posted: 0, unchanged: 0, duplicate: 0, stale: 0, recorded: 0, quarantined: 0, unmapped: 0, skipped: 0, errors: 0 };

describeOnEachDatabase('ingest of pending source records in batches', (db) => {
  const clock = new ManualClock(new Date('2017-03-01T12:00:00Z'));
  let practiceId = '';
  let ledger: LedgerRepository;

  /** An Invoice on account `account` (patient Patient/example) for `value` in `currency`. */
  const invoice = (sourceId: string, account: string, value: number, options: { currency?: string; versionId?: string; lastUpdated?: string; patient?: string | null } = {}): SourceRecord => {
    const body: Record<string, unknown> = { ...invoiceExample, id: sourceId, account: { reference: `Account/${account}` }, totalGross: { value, currency: options.currency ?? 'EUR' } };
    if (options.patient === null) delete body.subject;
    else if (options.patient) body.subject = { reference: `Patient/${options.patient}` };
    return {
      practiceId, connector: 'ehr', transport: 'fhir-r4', resourceType: 'Invoice', sourceId, versionId: options.versionId ?? '1',
      lastUpdated: options.lastUpdated ? new Date(options.lastUpdated) : null, contentHash: createHash('sha256').update(JSON.stringify(body)).digest('hex'), body,
    };
  };
  const store = (records: SourceRecord[]) => withTransaction(db(), (tx) => new SourceRecordRepository(tx, clock).storeMany(tx, records));
  const ingest = (limit = 100) => ingestPendingSourceRecords({ db: db(), clock, logger, cipher, mappings, limit });
  const owed = async (account: string) => {
    const { rows } = await db().pool.query<{ id: string }>(
      'SELECT b.id FROM balances b JOIN ledger_accounts a ON a.id = b.account_id WHERE a.practice_id = $1 AND a.identifier_value = $2',
      [practiceId, account],
    );
    assert.equal(rows.length, 1, `one balance on account ${account}`);
    const balance = (await ledger.getBalance(rows[0]!.id))!;
    const check = await ledger.verifyBalance(balance.id);
    assert.equal(check.stored, check.fromEntries, 'the stored amount is the sum of the entries');
    return balance.patientAmount;
  };
  const statusOf = async (sourceId: string) => (await new SourceRecordRepository(db().pool, clock).versions(practiceId, 'ehr', 'Invoice', sourceId)).map((r) => [r.versionId, r.status]);

  before(async () => {
    practiceId = (await new PracticeRepository(db().pool).create({ slug: 'batch-test', name: 'Batch Test', timeZone: 'Europe/Amsterdam' })).id;
    ledger = new LedgerRepository(db().pool, cipher, clock);
  });

  it('a record that fails mapping in the middle of a batch is quarantined; the records around it post', async () => {
    await store([invoice('m-1', 'M1', 10), invoice('m-2', 'M2', 20, { patient: null }), invoice('m-3', 'M3', 30)]);
    assert.deepEqual(await ingest(), { ...ZERO, records: 3, posted: 2, quarantined: 1 });
    assert.deepEqual([await owed('M1'), await owed('M3')], [{ amount: 1000, currency: 'EUR' }, { amount: 3000, currency: 'EUR' }]);
    assert.deepEqual(await statusOf('m-2'), [['1', 'quarantined']]);
    const entries = await new QuarantineRepository(db().pool, clock).list(practiceId);
    assert.deepEqual(entries.map((e) => [e.sourceId, e.outcome.issue[0]?.details?.coding?.[0]?.code]), [['m-2', 'missing-patient']]);
  });

  it('a record the ledger refuses (mixed currencies) in the middle of a batch is quarantined; the others post, exactly once', async () => {
    await store([invoice('c-1', 'C1', 10.1), invoice('c-2', 'C1', 5, { currency: 'USD' }), invoice('c-3', 'C3', 0.3), invoice('c-4', 'C1', 0.01)]);
    assert.deepEqual(await ingest(), { ...ZERO, records: 4, posted: 3, quarantined: 1 });
    assert.deepEqual(await owed('C1'), { amount: 1011, currency: 'EUR' });
    assert.deepEqual(await owed('C3'), { amount: 30, currency: 'EUR' });
    assert.deepEqual(await statusOf('c-2'), [['1', 'quarantined']]);
    const entry = (await new QuarantineRepository(db().pool, clock).list(practiceId)).find((e) => e.sourceId === 'c-2');
    assert.equal(entry?.outcome.issue[0]?.details?.coding?.[0]?.code, 'currency-mismatch');
    assert.deepEqual(await ingest(), { ...ZERO }, 'nothing left pending');
  });

  it('two versions of one source in one batch: the newer replaces the older; an older one after them is stale; a replay changes nothing', async () => {
    await store([
      invoice('v-1', 'V1', 10, { versionId: '1', lastUpdated: '2017-02-01T00:00:00Z' }),
      invoice('v-other', 'V1', 1),
      invoice('v-1', 'V1', 25.5, { versionId: '3', lastUpdated: '2017-02-03T00:00:00Z' }),
      invoice('v-1', 'V1', 99, { versionId: '2', lastUpdated: '2017-02-02T00:00:00Z' }),
    ]);
    assert.deepEqual(await ingest(), { ...ZERO, records: 4, posted: 3, stale: 1 });
    assert.deepEqual(await owed('V1'), { amount: 2650, currency: 'EUR' });
    const entries = await ledger.entriesOfSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 'v-1' });
    assert.deepEqual(entries.map((e) => [e.amount.amount, e.source.versionId]), [[1000, '1'], [-1000, '3'], [2550, '3']]);
    assert.deepEqual(await statusOf('v-1'), [['1', 'ingested'], ['3', 'ingested'], ['2', 'ingested']]);

    // The same versions stored again are not new; requeued, they change nothing.
    assert.equal(await store([invoice('v-1', 'V1', 25.5, { versionId: '3', lastUpdated: '2017-02-03T00:00:00Z' })]), 0);
    await db().pool.query(`UPDATE source_records SET status = 'pending' WHERE practice_id = $1 AND source_id IN ('v-1', 'v-other')`, [practiceId]);
    assert.deepEqual(await ingest(), { ...ZERO, records: 4, duplicate: 4 }, 'the stale version was seen too');
    assert.deepEqual(await owed('V1'), { amount: 2650, currency: 'EUR' });
  });

  it('patient contact in a batch: encrypted, the later version of a patient wins field by field, phones and emails re-indexed', async () => {
    const patient = (id: string, versionId: string, telecom: { system: string; value: string }[], extra: Record<string, unknown> = {}): SourceRecord => {
      const body = { resourceType: 'Patient', id, name: [{ use: 'official', family: 'Okafor', given: ['Ada'] }], telecom, ...extra };
      return {
        practiceId, connector: 'ehr', transport: 'fhir-r4', resourceType: 'Patient', sourceId: id, versionId, lastUpdated: null,
        contentHash: createHash('sha256').update(JSON.stringify(body)).digest('hex'), body,
      };
    };
    await store([
      patient('pc-1', '1', [{ system: 'phone', value: '617-555-0101' }, { system: 'email', value: 'ada@example.com' }], { birthDate: '1980-01-31' }),
      patient('pc-2', '1', [{ system: 'phone', value: '617-555-0202' }]),
      patient('pc-1', '2', [{ system: 'phone', value: '617-555-0111' }]),
    ]);
    assert.deepEqual(await ingest(), { ...ZERO, records: 3, recorded: 3 });
    const [first] = await ledger.findByContact(practiceId, 'phone', '617-555-0111');
    assert.equal(first?.ownerType, 'patient');
    assert.deepEqual(await ledger.findByContact(practiceId, 'phone', '617-555-0101'), [], 'the earlier phone is no longer indexed');
    assert.deepEqual(await ledger.findByContact(practiceId, 'email', 'ada@example.com'), [first], 'version 2 gives no email: version 1\'s is kept');
    const contact = await ledger.getPatient(first!.id);
    assert.deepEqual(contact?.phones, ['617-555-0111']);
    assert.equal(contact?.birthDate, '1980-01-31', 'a field version 2 does not give keeps the value version 1 gave');
    const { rows } = await db().pool.query<{ phones_enc: string; birth_year: number }>('SELECT phones_enc, birth_year FROM patients WHERE id = $1', [first!.id]);
    assert.ok(!rows[0]!.phones_enc.includes('555'), 'phones are stored encrypted');
    assert.equal(rows[0]!.birth_year, 1980);
    assert.equal((await ledger.findByContact(practiceId, 'phone', '617-555-0202')).length, 1);
  });

  it('a batch gives what one record per batch gives: the same accounts, balances and entries', async () => {
    const otherPractice = (await new PracticeRepository(db().pool).create({ slug: 'batch-test-one-by-one', name: 'One by one', timeZone: 'Europe/Amsterdam' })).id;
    const world = (practice: string) => [
      ...Array.from({ length: 12 }, (_, i) => ({ ...invoice(`e-${i}`, `E${i % 3}`, (105 * (i + 1)) / 100, { patient: `pe-${i % 4}` }), practiceId: practice })),
      { ...invoice('e-1', 'E2', 7, { patient: 'pe-1', versionId: '2' }), practiceId: practice },
      { ...invoice('e-5', 'E0', 5.55, { patient: 'pe-3', versionId: '2' }), practiceId: practice },
    ];
    await store(world(practiceId));
    assert.equal((await ingest(100)).posted, 14);
    await store(world(otherPractice));
    let runs = 0;
    while ((await ingest(1)).records > 0) runs++;
    assert.equal(runs, 14);
    const dump = async (practice: string) => {
      const balances = await db().pool.query(
        `SELECT a.identifier_value AS account, coalesce(gp.identifier_value, g.identifier_value) AS guarantor, p.identifier_value AS patient,
                b.patient_amount_minor::text AS owed, b.status, b.oldest_open_date::text AS oldest,
                (SELECT count(*)::int FROM ledger_entries e WHERE e.balance_id = b.id) AS entries
         FROM balances b JOIN ledger_accounts a ON a.id = b.account_id JOIN guarantors g ON g.id = b.guarantor_id
         LEFT JOIN patients gp ON gp.id = g.self_patient_id LEFT JOIN patients p ON p.id = b.patient_id
         WHERE b.practice_id = $1 AND a.identifier_value LIKE 'E%' ORDER BY 1, 2`,
        [practice],
      );
      const accounts = await db().pool.query(
        `SELECT a.identifier_value AS account, p.identifier_value AS patient, a.name FROM ledger_accounts a LEFT JOIN patients p ON p.id = a.patient_id
         WHERE a.practice_id = $1 AND a.identifier_value LIKE 'E%' ORDER BY 1`,
        [practice],
      );
      return { balances: balances.rows, accounts: accounts.rows };
    };
    const batched = await dump(practiceId);
    assert.deepEqual(batched, await dump(otherPractice));
    assert.deepEqual(batched.accounts.map((a) => a.patient), ['pe-3', 'pe-2', 'pe-1'], 'an account created by a batch is stored with the patient its latest record names');
    assert.equal(batched.balances.reduce((s, b) => s + Number(b.owed), 0), 105 * 78 - 210 - 630 + 700 + 555);
  });

  it('claimed records post and let go of their bodies once mapped; records their caller keeps (CSV rows) keep theirs', async () => {
    await store([invoice('d-1', 'D1', 1.5), invoice('d-2', 'D2', 2.5)]);
    const context = { cipher, clock, timeZone: 'Europe/Amsterdam' };
    const outcomes = await withTransaction(db(), async (tx) =>
      ingestClaimed(tx, await new SourceRecordRepository(tx, clock).claimPending(tx, practiceId, 100), { clock, mappings }, { ...context, dropBodiesOnceMapped: true }),
    );
    assert.deepEqual(outcomes.map((o) => [o.record.sourceId, o.status, o.record.body]), [['d-1', 'posted', undefined], ['d-2', 'posted', undefined]]);
    assert.deepEqual(await owed('D2'), { amount: 250, currency: 'EUR' });
    const kept = await new SourceRecordRepository(db().pool, clock).versions(practiceId, 'ehr', 'Invoice', 'd-1');
    const results = await withTransaction(db(), (tx) => mapAndPost(tx, kept.map((record) => ({ record, mapping: mappings.get('generic-fhir-invoice')! })), context));
    assert.deepEqual(results.map((r) => r.status), ['duplicate']);
    assert.equal((kept[0]!.body as { id?: string }).id, 'd-1');
  });
});

describeOnEachDatabase('two workers ingesting at once', (db, engine) => {
  it(`take disjoint batches, post every record once, and agree on every balance [${engine}]`, async () => {
    const clock = new ManualClock(new Date('2017-03-01T12:00:00Z'));
    const practiceId = (await new PracticeRepository(db().pool).create({ slug: 'batch-workers', name: 'Batch Workers', timeZone: 'UTC' })).id;
    const records: SourceRecord[] = Array.from({ length: 60 }, (_, i) => {
      const body = { ...invoiceExample, id: `w-${i}`, subject: { reference: `Patient/pw-${i % 7}` }, account: { reference: `Account/W${i % 5}` }, totalGross: { value: 1.01, currency: 'EUR' } };
      return {
        practiceId, connector: 'ehr', transport: 'fhir-r4', resourceType: 'Invoice', sourceId: `w-${i % 40}`, versionId: String(Math.floor(i / 40) + 1),
        lastUpdated: null, contentHash: createHash('sha256').update(JSON.stringify(body)).digest('hex'), body,
      };
    });
    assert.equal(await withTransaction(db(), (tx) => new SourceRecordRepository(tx, clock).storeMany(tx, records)), 60);
    const worker = () => ingestPendingSourceRecords({ db: db(), clock, logger, cipher, mappings, limit: 10 });
    const counts: IngestCounts[] = [];
    for (let round = 0; round < 10; round++) counts.push(...(await Promise.all([worker(), worker()])));
    const sum = (key: keyof IngestCounts) => counts.reduce((s, c) => s + c[key], 0);
    assert.equal(sum('errors'), 0);
    assert.equal(sum('records'), 60, 'each record taken once');
    assert.equal(sum('posted') + sum('unchanged'), 60);
    const ledger = new LedgerRepository(db().pool, cipher, clock);
    const { balances } = await ledger.listBalances(practiceId, { limit: 500 });
    // 40 sources of 1.01 each; versions 2 of w-0 … w-19 moved nothing (same amount, same account) or moved a source between accounts.
    assert.equal(balances.reduce((s, b) => s + b.patientAmount.amount, 0), 40 * 101);
    for (const balance of balances) {
      const check = await ledger.verifyBalance(balance.id);
      assert.equal(check.stored, check.fromEntries);
    }
  });
  it(`the same records in two batches at once (no claim) post once: the other batch finds them unchanged or duplicate [${engine}]`, async () => {
    const clock = new ManualClock(new Date('2017-03-01T12:00:00Z'));
    const practiceId = (await new PracticeRepository(db().pool).create({ slug: 'batch-same', name: 'Batch Same', timeZone: 'UTC' })).id;
    const records: SourceRecord[] = Array.from({ length: 20 }, (_, i) => {
      const body = { ...invoiceExample, id: `s-${i}`, subject: { reference: `Patient/ps-${i % 3}` }, account: { reference: `Account/S${i % 4}` }, totalGross: { value: 2.5, currency: 'EUR' } };
      return { practiceId, connector: 'ehr', transport: 'fhir-r4', resourceType: 'Invoice', sourceId: `s-${i}`, versionId: '1', lastUpdated: null, contentHash: createHash('sha256').update(JSON.stringify(body)).digest('hex'), body };
    });
    await withTransaction(db(), (tx) => new SourceRecordRepository(tx, clock).storeMany(tx, records));
    const stored = await new SourceRecordRepository(db().pool, clock).pending(practiceId, 100);
    const items = stored.map((record) => ({ record, mapping: mappings.get('generic-fhir-invoice')! }));
    const batch = () => withTransaction(db(), (tx) => ingestBatch(tx, items, { cipher, clock, timeZone: 'UTC' }));
    const results = (await Promise.all([batch(), batch()])).flat();
    const statuses = results.map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 'posted').length, 20, 'each record posted by one of the batches');
    assert.equal(statuses.filter((s) => s === 'unchanged' || s === 'duplicate').length, 20);
    const ledger = new LedgerRepository(db().pool, cipher, clock);
    const { balances } = await ledger.listBalances(practiceId, { limit: 500 });
    assert.equal(balances.reduce((s, b) => s + b.patientAmount.amount, 0), 20 * 250);
    const { rows } = await db().pool.query<{ n: number }>('SELECT count(*)::int AS n FROM ledger_entries WHERE practice_id = $1', [practiceId]);
    assert.equal(rows[0]!.n, 20);
  });
});
