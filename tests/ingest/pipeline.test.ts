import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ManualClock } from '../../src/domain/clock.ts';
import type { SourceRecord } from '../../src/domain/source-record.ts';
import { importCsv, runImportCsv } from '../../src/ingest/csv-import.ts';
import { fhirValidator } from '../../src/mapping/fhir-validation.ts';
import { ledgerRoutes } from '../../src/ingest/ledger-routes.ts';
import { ApiError } from '../../src/api/problem.ts';
import type { AnyRoute } from '../../src/api/routes.ts';
import { ingestRecord, type IngestResult } from '../../src/ingest/pipeline.ts';
import { loadMappings } from '../../src/mapping/load.ts';
import { withTransaction } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { QuarantineRepository } from '../../src/store/quarantine.ts';
import { describeOnEachDatabase } from '../support/databases.ts';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const mappings = loadMappings(repoRoot);
const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
const example = (file: string) => JSON.parse(readFileSync(`${repoRoot}node_modules/hl7.fhir.r4.examples/${file}`, 'utf8'));

const csvMapping = mappings.get('csv-statement')!;
const csvDir = mkdtempSync(join(tmpdir(), 'settle-csv-'));
after(() => rmSync(csvDir, { recursive: true, force: true }));
const csvFile = join(csvDir, 'statement.csv');
const statement = readFileSync(new URL('../mapping/fixtures/statement.csv', import.meta.url), 'utf8');
writeFileSync(csvFile, `${statement.trimEnd()}\nA-400,,,,P-4,Too,Many,1/1/1970,,,,,,,2/2/2026,I-7,Visit,1.00,0.00,0.00,1.00,extra\n`);

describeOnEachDatabase('ingestRecord', (db) => {
  const clock = new ManualClock(new Date('2017-03-01T12:00:00Z'));
  let practiceId = '';
  let ledger: LedgerRepository;

  const fhir = (body: Record<string, unknown>, versionId = '1', lastUpdated: string | null = null): SourceRecord => ({
    practiceId, connector: 'ehr', transport: 'fhir-r4', resourceType: String(body.resourceType), sourceId: String(body.id), versionId,
    lastUpdated: lastUpdated ? new Date(lastUpdated) : null, contentHash: 'h', body,
  });
  const ingest = (record: SourceRecord, mappingName: string): Promise<IngestResult> =>
    withTransaction(db(), (tx) => ingestRecord(tx, record, mappings.get(mappingName)!, { cipher, clock }));
  const posted = (result: IngestResult) => {
    if (result.status === 'quarantined') assert.fail(`quarantined: ${JSON.stringify(result.issues)}`);
    return result;
  };
  const balanceOf = async (result: IngestResult) => {
    const ok = posted(result);
    const { balances } = await ledger.listBalances(practiceId, { guarantorId: ok.guarantorId! });
    return balances.filter((b) => b.accountId === ok.accountId);
  };

  before(async () => {
    practiceId = (await new PracticeRepository(db().pool).create({ slug: 'ingest-test', name: 'Ingest Test', timeZone: 'Europe/Amsterdam' })).id;
    ledger = new LedgerRepository(db().pool, cipher, clock);
  });

  it("HL7's Account example, Invoice example and ChargeItem example add up to 88.00 EUR owed by the patient", async () => {
    const account = posted(await ingest(fhir(example('Account-example.json')), 'generic-fhir-account'));
    assert.equal(account.status, 'recorded');
    const invoice = posted(await ingest(fhir(example('Invoice-example.json')), 'generic-fhir-invoice'));
    assert.equal(invoice.status, 'posted');
    assert.equal(invoice.accountId, account.accountId, 'Invoice.account Account/example is the Account example');
    assert.equal(invoice.patientId, account.patientId);
    assert.deepEqual((await balanceOf(invoice)).map((b) => [b.patientAmount, b.status, b.oldestOpenDate, b.agingBucket]), [
      [{ amount: 4800, currency: 'EUR' }, 'open', '2017-01-25', '31-60'],
    ]);
    const charge = posted(await ingest(fhir(example('ChargeItem-example.json')), 'oracle-health-chargeitem'));
    assert.equal(charge.accountId, account.accountId);
    const [balance] = await balanceOf(charge);
    assert.deepEqual(balance?.patientAmount, { amount: 8800, currency: 'EUR' });
    assert.equal(balance?.guarantorId, account.guarantorId, 'the patient is their own guarantor');
    const patient = await ledger.getPatient(account.patientId!);
    assert.deepEqual(patient?.name, { text: 'Peter James Chalmers' });
  });

  it("Account ewg names RelatedPerson/benedicte as guarantor: an Invoice on that account bills her", async () => {
    const account = posted(await ingest(fhir(example('Account-ewg.json')), 'generic-fhir-account'));
    const invoice = posted(await ingest(fhir({ ...example('Invoice-example.json'), id: 'ewg-invoice', account: { reference: 'Account/ewg' } }), 'generic-fhir-invoice'));
    assert.equal(invoice.guarantorId, account.guarantorId);
    assert.deepEqual((await ledger.getGuarantorContact(invoice.guarantorId!))?.name, { text: 'Bénédicte du Marché' });
    assert.deepEqual((await balanceOf(invoice))[0]?.patientAmount, { amount: 4800, currency: 'EUR' });
  });

  it('duplicate, changed and out-of-order versions', async () => {
    const body = { ...example('Invoice-example.json'), id: 'inv-v', account: { reference: 'Account/v' } };
    const v2 = { ...body, totalGross: { value: 50.5, currency: 'EUR' } };
    const first = posted(await ingest(fhir(body, '1', '2017-02-01T00:00:00Z'), 'generic-fhir-invoice'));
    assert.equal((await ingest(fhir(body, '1', '2017-02-01T00:00:00Z'), 'generic-fhir-invoice')).status, 'duplicate');
    assert.equal((await ingest(fhir(v2, '3', '2017-02-03T00:00:00Z'), 'generic-fhir-invoice')).status, 'posted');
    assert.equal((await ingest(fhir(body, '2', '2017-02-02T00:00:00Z'), 'generic-fhir-invoice')).status, 'stale');
    assert.deepEqual((await balanceOf(first))[0]?.patientAmount, { amount: 5050, currency: 'EUR' });
    const entries = await ledger.entriesOfSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 'inv-v' });
    assert.deepEqual(entries.map((e) => [e.kind, e.amount.amount, e.source.versionId]), [['charge', 4800, '1'], ['charge', -4800, '3'], ['charge', 5050, '3']]);
    const cancelled = await ingest(fhir({ ...v2, status: 'cancelled' }, '4', '2017-02-04T00:00:00Z'), 'generic-fhir-invoice');
    assert.equal(cancelled.status, 'posted');
    const [balance] = await balanceOf(first);
    assert.deepEqual([balance?.patientAmount.amount, balance?.status], [0, 'paid']);
  });

  it('quarantines a currency mismatch and a missing patient reference with an OperationOutcome, leaving the ledger as it was; a fixed version resolves it', async () => {
    const usd = { ...example('Invoice-example.json'), id: 'inv-usd', totalGross: { value: 10, currency: 'USD' } };
    const before = await ledger.entriesOfSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 'inv-usd' });
    const result = await ingest(fhir(usd), 'generic-fhir-invoice');
    assert.equal(result.status, 'quarantined');
    assert.ok(result.status === 'quarantined');
    assert.equal(result.outcome.issue[0]?.code, 'business-rule');
    assert.match(result.outcome.issue[0]?.diagnostics ?? '', /^mappings\/generic-fhir-invoice.json: \/events: the balance is in EUR; a USD amount cannot be added/);
    assert.deepEqual(await ledger.entriesOfSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 'inv-usd' }), before);
    const { subject: _subject, ...noPatient } = { ...example('Invoice-example.json'), id: 'inv-nopatient' };
    const missing = await ingest(fhir(noPatient), 'generic-fhir-invoice');
    assert.ok(missing.status === 'quarantined');
    assert.deepEqual(missing.outcome.issue.map((i) => [i.code, i.details?.coding?.[0]?.code]), [['required', 'missing-patient']]);
    const quarantine = new QuarantineRepository(db().pool, clock);
    assert.deepEqual((await quarantine.list(practiceId)).map((q) => q.sourceId).sort(), ['inv-nopatient', 'inv-usd']);
    const fixed = await ingest(fhir({ ...usd, totalGross: { value: 10, currency: 'EUR' } }, '2'), 'generic-fhir-invoice');
    assert.equal(fixed.status, 'posted');
    assert.deepEqual((await quarantine.list(practiceId)).map((q) => q.sourceId), ['inv-nopatient']);
    assert.ok((await quarantine.get(result.quarantineId!))?.resolvedAt);
  });

  it('a DFT^P03 posts patient and insurance parts separately; a negative charge is quarantined by the FHIR preset', async () => {
    const message = readFileSync(new URL('../mapping/fixtures/dft-p03.hl7', import.meta.url), 'utf8');
    const record: SourceRecord = {
      practiceId, connector: 'pm', transport: 'hl7v2-mllp', resourceType: 'DFT^P03', sourceId: 'MSG00042', versionId: 'MSG00042',
      lastUpdated: new Date('2026-02-12T14:30:00Z'), contentHash: 'h', body: { message },
    };
    const result = posted(await ingest(record, 'hl7v2-dft-p03'));
    const [balance] = await balanceOf(result);
    // 150.00 + 35.50 − 40.00 (patient payment) − 10.25 (adjustment); the insurance payment of 90.00 is kept apart.
    assert.deepEqual([balance?.patientAmount.amount, balance?.insuranceAmount.amount], [13525, -9000]);
    assert.equal((await ingest(record, 'hl7v2-dft-p03')).status, 'duplicate');
    const patient = await ledger.getPatient(result.patientId!);
    assert.equal(patient?.email, 'maria@example.com');
    assert.deepEqual(await ledger.findByContact(practiceId, 'phone', '217-555-0134'), [{ ownerType: 'patient', id: result.patientId }]);
    const negative = await ingest(fhir({ ...example('Invoice-example.json'), id: 'neg', totalGross: { value: -5, currency: 'EUR' } }), 'generic-fhir-invoice');
    assert.ok(negative.status === 'quarantined');
    assert.equal(negative.issues[0]?.code, 'negative-amount');
  });

  it('quarantines a resource that fails FHIR validation before mapping it', async () => {
    const validate = fhirValidator();
    const bad = fhir({ ...example('Invoice-example.json'), id: 'inv-invalid', totalGross: { value: '48', currency: 'EUR' } });
    const result = await withTransaction(db(), (tx) => ingestRecord(tx, bad, mappings.get('generic-fhir-invoice')!, { cipher, clock, validate }));
    assert.ok(result.status === 'quarantined');
    assert.deepEqual(result.issues.map((i) => i.code), ['invalid-resource']);
    assert.deepEqual(await ledger.entriesOfSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 'inv-invalid' }), []);
  });

  // ---- API routes (handlers called directly; the API mounts them) ----
  it('routes: list and show balances, change status, list and reprocess quarantine, try a mapping', async () => {
    const stored = new Map<string, SourceRecord>();
    const routes = ledgerRoutes({
      db: db(), cipher, clock, mappings,
      loadSourceRecord: async (key) => stored.get(`${key.sourceId}@${key.versionId}`),
    });
    const route = (method: string, path: string): AnyRoute => routes.find((r) => r.method === method && r.path === path)!;
    const principal = { keyId: 'k1', practiceId, name: 'staff', role: 'staff' as const };
    const call = (r: AnyRoute, extra: Record<string, unknown> = {}) => r.handler({ principal, params: {}, query: {}, body: undefined, ...extra } as never) as Promise<any>;

    const page = await call(route('get', '/balances'), { query: { minAmount: 1 } });
    assert.ok(page.balances.length >= 2);
    assert.ok(page.balances.every((b: { patientAmount: { amountMinor: number } }) => b.patientAmount.amountMinor >= 1));
    const target = page.balances.find((b: { patientAmount: { value: string } }) => b.patientAmount.value === '98.00');
    assert.ok(target, '88.00 EUR of the HL7 examples + the corrected 10.00 EUR invoice');
    const detail = await call(route('get', '/balances/{id}'), { params: { id: target.id } });
    assert.deepEqual(detail.entries.map((e: { amount: { value: string } }) => e.amount.value), ['48.00', '40.00', '10.00']);
    assert.deepEqual(detail.sources.map((s: { resourceType: string; sourceId: string }) => `${s.resourceType}/${s.sourceId}`), ['Invoice/example', 'ChargeItem/example', 'Invoice/inv-usd']);
    await assert.rejects(call(route('post', '/balances/{id}/status'), { params: { id: target.id }, body: { status: 'on_hold' } }), (e: unknown) => e instanceof ApiError && e.status === 422);
    const held = await call(route('post', '/balances/{id}/status'), { params: { id: target.id }, body: { status: 'on_hold', holdReason: 'insurance_pending', note: 'EOB expected' } });
    assert.deepEqual([held.status, held.holdReason, held.outreachEligible], ['on_hold', 'insurance_pending', false]);
    const history = (await call(route('get', '/balances/{id}'), { params: { id: target.id } })).statusHistory;
    assert.deepEqual(history.at(-1).actor, 'apikey:k1');
    await assert.rejects(call(route('get', '/balances/{id}'), { params: { id: target.id }, principal: { ...principal, practiceId: randomUUID() } }), (e: unknown) => e instanceof ApiError && e.status === 404);

    const { entries } = await call(route('get', '/quarantine'));
    const missing = entries.find((e: { sourceId: string }) => e.sourceId === 'inv-nopatient');
    assert.equal(missing.outcome.resourceType, 'OperationOutcome');
    const fixed = { ...example('Invoice-example.json'), id: 'inv-nopatient', subject: { reference: 'Patient/example' } };
    stored.set(`inv-nopatient@${missing.versionId}`, fhir(fixed, missing.versionId));
    assert.deepEqual((await call(route('post', '/quarantine/{id}/reprocess'), { params: { id: missing.id } })).status, 'posted');
    assert.ok(!(await call(route('get', '/quarantine'))).entries.some((e: { sourceId: string }) => e.sourceId === 'inv-nopatient'));

    const tried = await call(route('post', '/mappings/{name}/test'), { params: { name: 'generic-fhir-invoice' }, body: { content: JSON.stringify(example('Invoice-example.json')) } });
    assert.deepEqual([tried.mapped, tried.failed, tried.records[0].record.lines[0].amount], [1, 0, { amount: 4800, currency: 'EUR' }]);
    await assert.rejects(call(route('post', '/mappings/{name}/test'), { params: { name: 'nope' }, body: { content: 'x' } }), (e: unknown) => e instanceof ApiError && e.status === 404);
  });

  // ---- CSV statement import (same database: one embedded database start per file keeps the suite fast) ----
  const csvClock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
  let csvPracticeId = '';
  before(async () => {
    csvPracticeId = (await new PracticeRepository(db().pool).create({ slug: 'csv-test', name: 'CSV Test', timeZone: 'America/Chicago' })).id;
  });
  const run = (progress?: number[]) =>
    importCsv({ db: db(), practiceId: csvPracticeId, connector: 'pm-csv', mapping: csvMapping, file: csvFile, cipher, clock: csvClock, onProgress: (bytes) => progress?.push(bytes) });

  it('CSV import: imports the good rows and reports each bad one as line N, column C: reason', async () => {
    const progress: number[] = [];
    const summary = await run(progress);
    assert.deepEqual(summary.problems, [
      "line 4, column 21 (Balance): the lines add up to 80.00 USD, but the record's balance is 75.00 USD",
      'line 5, column 15 (Service Date): "13/1/2026" is not a valid date: you specified 13 (of type number) as a month, which is invalid',
      'line 6, column 18 (Charges): "12.345" has 3 decimal places; USD has 2',
      'line 8: has 22 columns, the header has 21',
    ]);
    assert.deepEqual({ ...summary, problems: undefined }, { rows: 7, posted: 3, unchanged: 0, duplicate: 0, stale: 0, bad: 4, problems: undefined });
    assert.equal(progress.at(-1), readFileSync(csvFile).length);
    const csvLedger = new LedgerRepository(db().pool, cipher, csvClock);
    const { balances } = await csvLedger.listBalances(csvPracticeId);
    assert.deepEqual(balances.map((b) => b.patientAmount.amount).sort((a, b) => a - b), [5000, 113000]);
    const [guarantor] = await csvLedger.findByContact(csvPracticeId, 'email', 'ana@example.com');
    assert.equal(guarantor?.ownerType, 'guarantor');
    const ana = balances.find((b) => b.guarantorId === guarantor?.id);
    assert.equal(ana?.patientAmount.amount, 113000, '130.00 + 1,045.10 − 45.10');
    assert.equal(ana?.oldestOpenDate, '2026-01-05');
  });

  it('CSV import: can be re-run on the same file without change', async () => {
    const csvLedger = new LedgerRepository(db().pool, cipher, csvClock);
    const before = (await csvLedger.listBalances(csvPracticeId)).balances.map((b) => [b.id, b.patientAmount.amount]);
    const summary = await run();
    assert.deepEqual([summary.posted, summary.duplicate, summary.bad], [0, 3, 4]);
    const printed: string[] = [];
    const code = await runImportCsv({ db: db(), practiceId: csvPracticeId, connector: 'pm-csv', mapping: csvMapping, file: csvFile, cipher, clock: csvClock, print: (l) => printed.push(l) });
    assert.equal(code, 1);
    assert.equal(printed.length, 5);
    assert.equal(printed.at(-1), '7 rows: 0 imported, 3 already imported, 0 unchanged, 0 older than what is stored, 4 bad');
    assert.deepEqual((await csvLedger.listBalances(csvPracticeId)).balances.map((b) => [b.id, b.patientAmount.amount]), before);
  });
});
