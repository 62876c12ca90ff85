import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { before, it } from 'node:test';
import { silentLogger } from '../../src/config/logger.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import type { SourceRecord } from '../../src/domain/source-record.ts';
import { drainHl7Messages, processHl7Messages } from '../../src/ingest/hl7-process.ts';
import { drainPendingSourceRecords, ingestPendingSourceRecords } from '../../src/ingest/pending-batch.ts';
import { hl7ProcessJob, INGEST_JOBS, ingestJob } from '../../src/ingest/process.ts';
import { compileMapping } from '../../src/mapping/compile.ts';
import { ProfileError } from '../../src/mapping/fhir-profiles.ts';
import { loadMappings, MappingRegistry } from '../../src/mapping/load.ts';
import { withTransaction } from '../../src/store/database.ts';
import { Hl7MessageAdmin, Hl7MessageRepository } from '../../src/store/hl7-messages.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { QuarantineRepository } from '../../src/store/quarantine.ts';
import { SourceRecordRepository } from '../../src/store/source-records.ts';
import { describeOnEachDatabase } from '../support/databases.ts';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const mappings = loadMappings(repoRoot);
const cipher = new PhiCipher({ encryptionKeys: [{ id: 'test-key', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
const logger = silentLogger();
const example = (file: string) => JSON.parse(readFileSync(`${repoRoot}node_modules/hl7.fhir.r4.examples/${file}`, 'utf8')) as Record<string, unknown>;

/** DFT^P03 v2.5.1: a 150.00 charge, a 25.50 payment and a 10.05 contractual adjustment on account `account`. */
function dft(controlId: string, account: string, amounts: [string, string, string] = ['150.00&USD', '-25.50&USD', '-10.05']): string {
  return [
    `MSH|^~\\&|PMS|RIVERSIDE|SETTLE|SETTLE|20260301103000-0500||DFT^P03^DFT_P03|${controlId}|P|2.5.1`,
    'EVN|P03|20260301103000',
    `PID|1||MRN-${account}^^^RIVERSIDE^MR||O'Brien^Seán||19800131|F|||12 Elm St^^Springfield^IL^62701||(217)555-0100|||||${account}^^^RIVERSIDE^AN`,
    'PV1|1|O|CLINIC^^^RIVERSIDE||||||||||||||||V5001',
    `FT1|1|TX1|B1|20260228|20260301|CG|99213^Office visit^CPT4|||1|${amounts[0]}`,
    `FT1|2|TX2|B1|20260301|20260301|PY|PAY^Patient payment^LOCAL||||${amounts[1]}`,
    `FT1|3|TX3|B1|20260301|20260301|AJ|ADJ^Contractual^LOCAL|||1|${amounts[2]}`,
  ].join('\r');
}

/** ADT^A05 (pre-admit): converted to a patient record, but no shipped mapping reads A05. */
function adtA05(controlId: string): string {
  return [
    `MSH|^~\\&|PMS|RIVERSIDE|SETTLE|SETTLE|20260301103000||ADT^A05^ADT_A05|${controlId}|P|2.5.1`,
    'EVN|A05|20260301103000',
    'PID|1||MRN-A05^^^RIVERSIDE^MR||Doe^Jane||19800131|F|||||||||ACCT-A05^^^RIVERSIDE^AN',
  ].join('\r');
}

it('builds the ingest job\'s FHIR validator when the job is defined, not on its first run', () => {
  const invoiceProfile = JSON.parse(readFileSync(`${repoRoot}fhir-profiles/settle-invoice.json`, 'utf8')) as Record<string, unknown>;
  const unbuildable = { ...invoiceProfile, differential: { element: [{ id: 'Invoice.price', path: 'Invoice.price', min: 1 }] } };
  const deps = { db: undefined as never, clock: new ManualClock(new Date('2026-03-01T00:00:00Z')), logger, cipher, mappings };
  assert.throws(() => ingestJob({ ...deps, profiles: [unbuildable] }), ProfileError, 'the engine start fails, not each minute\'s run');
  assert.doesNotThrow(() => ingestJob({ ...deps, profiles: [] }));
});

describeOnEachDatabase('HL7 messages → source records → ledger', (db) => {
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  let practiceId = '';
  let ledger: LedgerRepository;
  const deps = () => ({ db: db(), clock, logger });

  const storeMessage = async (raw: string, messageType: string, controlId: string) => {
    const result = await new Hl7MessageRepository(db().pool).store({
      practiceId,
      connector: 'pm-hl7v2',
      controlId,
      messageType,
      sendingApplication: 'PMS',
      sendingFacility: 'RIVERSIDE',
      receivedAt: clock.now(),
      raw,
      rawBytesCharset: 'UTF-8',
    });
    return result.id;
  };
  const message = async (id: string) => (await new Hl7MessageRepository(db().pool).findById(practiceId, id))!;
  const records = async () => (await new SourceRecordRepository(db().pool, clock).list(practiceId, { limit: 1000 })).items;
  const balanceOfAccount = async (value: string) => {
    const { rows } = await db().pool.query<{ id: string }>(
      `SELECT b.id FROM balances b JOIN ledger_accounts a ON a.id = b.account_id WHERE a.practice_id = $1 AND a.identifier_value = $2`,
      [practiceId, value],
    );
    assert.equal(rows.length, 1, `one balance on account ${value}`);
    return (await ledger.getBalance(rows[0]!.id))!;
  };
  const entryCount = async () => (await db().pool.query<{ n: number }>('SELECT count(*)::int AS n FROM ledger_entries')).rows[0]!.n;

  before(async () => {
    practiceId = (await new PracticeRepository(db().pool).create({ slug: 'process-test', name: 'Process Test', timeZone: 'America/Chicago' })).id;
    ledger = new LedgerRepository(db().pool, cipher, clock);
  });

  it('a stored DFT^P03 becomes one source record per FT1, then ledger lines: 150.00 − 25.50 − 10.05 = 114.45 USD owed', async () => {
    const id = await storeMessage(dft('DFT-1', 'ACCT-1'), 'DFT^P03', 'DFT-1');
    assert.deepEqual(await processHl7Messages({ ...deps(), limit: 10 }), {
      messages: 1, processed: 1, failed: 0, recordsStored: 3, recordsRequeued: 0, skipped: 0, errors: 0,
    });
    const m = await message(id);
    assert.deepEqual([m.status, m.error], ['processed', null]);
    const stored = await records();
    assert.deepEqual(stored.map((r) => [r.resourceType, r.sourceId, r.status]), [
      ['DFT^P03/FT1', 'PMS|RIVERSIDE|DFT-1|4', 'pending'],
      ['DFT^P03/FT1', 'PMS|RIVERSIDE|DFT-1|5', 'pending'],
      ['DFT^P03/FT1', 'PMS|RIVERSIDE|DFT-1|6', 'pending'],
    ]);

    assert.deepEqual(await ingestPendingSourceRecords({ ...deps(), cipher, mappings, limit: 10 }), {
      records: 3, posted: 3, unchanged: 0, duplicate: 0, stale: 0, recorded: 0, quarantined: 0, unmapped: 0, skipped: 0, errors: 0,
    });
    assert.deepEqual((await records()).map((r) => r.status), ['ingested', 'ingested', 'ingested']);
    const balance = await balanceOfAccount('ACCT-1');
    assert.deepEqual(balance.patientAmount, { amount: 11445, currency: 'USD' });
    assert.equal(balance.status, 'open');
    assert.equal(balance.oldestOpenDate, '2026-02-28');
    const entries = await ledger.entries(balance.id);
    assert.deepEqual(entries.map((e) => [e.kind, e.amount.amount]), [['charge', 15000], ['payment', 2550], ['adjustment', 1005]]);
  });

  it('running both again changes nothing; a message set back to received stores nothing twice', async () => {
    const before = { records: await records(), entries: await entryCount(), balance: await balanceOfAccount('ACCT-1') };
    assert.equal((await processHl7Messages({ ...deps(), limit: 10 })).messages, 0);
    assert.equal((await ingestPendingSourceRecords({ ...deps(), cipher, mappings, limit: 10 })).records, 0);

    const [m] = await new Hl7MessageRepository(db().pool).findByControlId(practiceId, 'pm-hl7v2', 'DFT-1');
    const requeued = await new Hl7MessageAdmin(db().pool).reprocess(practiceId, { ids: [m!.id] }, clock.now());
    assert.equal(requeued.requeued, 1);
    assert.deepEqual(await processHl7Messages({ ...deps(), limit: 10 }), {
      messages: 1, processed: 1, failed: 0, recordsStored: 0, recordsRequeued: 0, skipped: 0, errors: 0,
    });
    assert.equal((await message(m!.id)).status, 'processed');
    assert.equal((await ingestPendingSourceRecords({ ...deps(), cipher, mappings, limit: 10 })).records, 0);

    assert.deepEqual(await records(), before.records);
    assert.equal(await entryCount(), before.entries);
    assert.deepEqual((await balanceOfAccount('ACCT-1')).patientAmount, before.balance.patientAmount);
  });

  it('a DFT^P03 with a bad FT1 amount is failed with a located reason, and none of its FT1s is stored', async () => {
    const before = { records: (await records()).length, entries: await entryCount() };
    const id = await storeMessage(dft('DFT-BAD', 'ACCT-BAD', ['150.00&USD', '12.3x&USD', '-10.05']), 'DFT^P03', 'DFT-BAD');
    const counts = await processHl7Messages({ ...deps(), limit: 10 });
    assert.deepEqual([counts.failed, counts.processed, counts.recordsStored], [1, 0, 0]);
    const m = await message(id);
    assert.equal(m.status, 'failed');
    assert.match(m.error ?? '', /^FT1\[2\]-11 invalid_value: FT1-11: .* is not an amount/);
    assert.equal((await records()).length, before.records, 'the good FT1s 1 and 3 were not stored either');
    assert.equal((await ingestPendingSourceRecords({ ...deps(), cipher, mappings, limit: 10 })).records, 0);
    assert.equal(await entryCount(), before.entries);
    // Failed stays failed: the next run does not take it again.
    assert.equal((await processHl7Messages({ ...deps(), limit: 10 })).messages, 0);
  });

  it('a pending FHIR Invoice source record (any transport) is validated, mapped and posted: 48.00 EUR', async () => {
    const body = example('Invoice-example.json');
    const record: SourceRecord = {
      practiceId,
      connector: 'generic-fhir-r4',
      transport: 'fhir-r4',
      resourceType: 'Invoice',
      sourceId: String(body.id),
      versionId: '1',
      lastUpdated: new Date('2017-01-25T08:00:00Z'),
      contentHash: createHash('sha256').update(JSON.stringify(body)).digest('hex'),
      body,
    };
    const { id: _id, ...noSubject } = { ...body, id: 'no-subject', subject: undefined };
    const broken: SourceRecord = { ...record, sourceId: 'no-subject', body: { ...noSubject, id: 'no-subject' } };
    assert.equal(await withTransaction(db(), (tx) => new SourceRecordRepository(tx, clock).storeMany(tx, [record, broken])), 2);

    assert.deepEqual(await ingestPendingSourceRecords({ ...deps(), cipher, mappings, profiles: [], limit: 10 }), {
      records: 2, posted: 1, unchanged: 0, duplicate: 0, stale: 0, recorded: 0, quarantined: 1, unmapped: 0, skipped: 0, errors: 0,
    });
    const balance = await balanceOfAccount('example'); // Invoice.account: Account/example
    assert.deepEqual(balance.patientAmount, { amount: 4800, currency: 'EUR' });
    const statuses = Object.fromEntries((await records()).filter((r) => r.transport === 'fhir-r4').map((r) => [r.sourceId, r.status]));
    assert.deepEqual(statuses, { example: 'ingested', 'no-subject': 'quarantined' });
    const [entry] = await new QuarantineRepository(db().pool, clock).list(practiceId);
    assert.deepEqual([entry?.sourceId, entry?.mapping, entry?.outcome.issue[0]?.details?.coding?.[0]?.code], ['no-subject', 'generic-fhir-invoice', 'missing-patient']);
    assert.equal((await ingestPendingSourceRecords({ ...deps(), cipher, mappings, limit: 10 })).records, 0, 'a quarantined record is not taken again');
  });

  it('a record no mapping accepts is quarantined with "no mapping accepts …"; reprocessing its message after adding a mapping ingests it', async () => {
    const id = await storeMessage(adtA05('ADT-5'), 'ADT^A05', 'ADT-5');
    const processed = await processHl7Messages({ ...deps(), limit: 10 });
    assert.deepEqual([processed.processed, processed.recordsStored], [1, 1]);
    const counts = await ingestPendingSourceRecords({ ...deps(), cipher, mappings, limit: 10 });
    assert.deepEqual([counts.records, counts.unmapped], [1, 1]);
    const record = (await records()).find((r) => r.resourceType === 'ADT^A05/PID')!;
    assert.equal(record.status, 'quarantined');
    const intake = new SourceRecordRepository(db().pool, clock);
    const [entry] = (await intake.listQuarantine(practiceId, { connector: 'pm-hl7v2' })).items;
    assert.equal(entry?.sourceRecordId, record.id);
    assert.equal(entry?.outcome.issue[0]?.code, 'not-supported');
    assert.equal(entry?.outcome.issue[0]?.details?.coding?.[0]?.code, 'no-mapping');
    assert.match(entry?.outcome.issue[0]?.diagnostics ?? '', /^no mapping accepts ADT\^A05\/PID records from connector pm-hl7v2 \(hl7v2-mllp\)/);
    assert.equal((await ingestPendingSourceRecords({ ...deps(), cipher, mappings, limit: 10 })).records, 0, 'not taken again');

    // An integration engineer adds a mapping that reads A05 and reprocesses the message.
    const adt = JSON.parse(readFileSync(`${repoRoot}mappings/hl7v2-adt.json`, 'utf8')) as { source: Record<string, unknown> };
    const withA05 = new MappingRegistry([
      ...mappings.all(),
      compileMapping({ name: 'hl7v2-adt-a05', file: 'mappings/hl7v2-adt-a05.json', data: { ...adt, name: 'hl7v2-adt-a05', source: { ...adt.source, messageType: 'ADT^A05' } } }),
    ]);
    await new Hl7MessageAdmin(db().pool).reprocess(practiceId, { ids: [id] }, clock.now());
    const again = await processHl7Messages({ ...deps(), limit: 10 });
    assert.deepEqual([again.processed, again.recordsStored, again.recordsRequeued], [1, 0, 1]);
    assert.equal(await intake.countOpenQuarantine(practiceId, 'pm-hl7v2'), 0, 'the intake entry is resolved');
    const ingested = await ingestPendingSourceRecords({ ...deps(), cipher, mappings: withA05, limit: 10 });
    assert.deepEqual([ingested.records, ingested.recorded], [1, 1]);
    assert.equal((await intake.get(practiceId, record.id))?.status, 'ingested');
  });

  it('two runs at once handle each message and record once', async () => {
    for (let i = 0; i < 4; i++) await storeMessage(dft(`DFT-C${i}`, `ACCT-C${i}`), 'DFT^P03', `DFT-C${i}`);
    const hl7 = await Promise.all([processHl7Messages({ ...deps(), limit: 10 }), processHl7Messages({ ...deps(), limit: 10 })]);
    assert.equal(hl7[0].processed + hl7[1].processed, 4);
    assert.equal(hl7[0].recordsStored + hl7[1].recordsStored, 12);
    assert.equal(hl7[0].skipped + hl7[1].skipped, hl7[0].messages + hl7[1].messages - 4, 'what one run took, the other skipped');
    const ingest = await Promise.all([
      ingestPendingSourceRecords({ ...deps(), cipher, mappings, limit: 100 }),
      ingestPendingSourceRecords({ ...deps(), cipher, mappings, limit: 100 }),
    ]);
    assert.equal(ingest[0].posted + ingest[1].posted, 12);
    assert.equal(ingest[0].errors + ingest[1].errors, 0);
    assert.equal(ingest[0].skipped + ingest[1].skipped, ingest[0].records + ingest[1].records - 12);
    for (let i = 0; i < 4; i++) assert.equal((await balanceOfAccount(`ACCT-C${i}`)).patientAmount.amount, 11445);
  });

  it('a message the database refuses to store holds back no other: the rest of its batch is stored, it stays received', async () => {
    for (const name of ['B0', 'BOOM', 'B2']) await storeMessage(dft(`DFT-${name}`, `ACCT-${name}`), 'DFT^P03', `DFT-${name}`);
    await db().pool.query(`CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.body::text LIKE '%ACCT-BOOM%' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$`);
    await db().pool.query('CREATE TRIGGER refuse_boom BEFORE INSERT ON source_records FOR EACH ROW EXECUTE FUNCTION refuse_boom()');
    try {
      const run = await processHl7Messages({ ...deps(), limit: 10 });
      assert.deepEqual([run.messages, run.processed, run.errors, run.recordsStored], [3, 2, 1, 6]);
    } finally {
      await db().pool.query('DROP TRIGGER refuse_boom ON source_records; DROP FUNCTION refuse_boom()');
    }
    const left = await new Hl7MessageRepository(db().pool).pending(10);
    assert.deepEqual(left.map((m) => m.controlId), ['DFT-BOOM'], 'left received for the next run');
    const retried = await processHl7Messages({ ...deps(), limit: 10 });
    assert.deepEqual([retried.processed, retried.recordsStored], [1, 3]);
  });

  it('the jobs drain every batch, bounded per run', async () => {
    for (let i = 0; i < 5; i++) await storeMessage(dft(`DFT-J${i}`, `ACCT-J${i}`), 'DFT^P03', `DFT-J${i}`);
    const bounded = await drainHl7Messages({ ...deps(), batchSize: 2, maxBatches: 2 });
    assert.deepEqual([bounded.messages, bounded.processed], [4, 4], 'two batches of two, the fifth waits for the next run');
    const told: number[] = [];
    const hl7 = hl7ProcessJob({ ...deps(), batchSize: 2, onRecordsStored: async (n) => told.push(n) });
    assert.equal(hl7.name, INGEST_JOBS.hl7Process);
    await hl7.run({}, { jobId: 'test', failures: 0 });
    assert.deepEqual(told, [3], 'the fifth message stored 3 records: ingest.pending can be enqueued at once');
    await hl7.run({}, { jobId: 'test', failures: 0 });
    assert.deepEqual(told, [3], 'not called when nothing was stored');
    assert.equal((await new Hl7MessageRepository(db().pool).pending(10)).length, 0);

    const drained = await drainPendingSourceRecords({ ...deps(), cipher, mappings, batchSize: 4, maxBatches: 2 });
    assert.deepEqual([drained.records, drained.posted], [8, 8]);
    const job = ingestJob({ ...deps(), cipher, mappings, batchSize: 4 });
    assert.equal(job.name, INGEST_JOBS.ingestPending);
    await job.run({}, { jobId: 'test', failures: 0 });
    assert.equal((await new SourceRecordRepository(db().pool, clock).pending(practiceId, 100)).length, 0);
    for (let i = 0; i < 5; i++) assert.equal((await balanceOfAccount(`ACCT-J${i}`)).patientAmount.amount, 11445);
  });
});
