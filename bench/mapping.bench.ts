/**
 * Mapping throughput: an Invoice with 10 line items → balance events, on one core.
 *  - compiled: the generic-fhir-invoice mapping compiled once (FHIRPath pre-parsed), money added in TypeScript;
 *  - peer: the same mapping interpreted per record with `evalFhirPath` on the expression strings (parsed every time);
 *  - end to end: store BENCH_INGEST_RECORDS (default 1000) Invoice source records, then ingest them as the
 *    `ingest.pending` job does (batches claimed, mapped and posted with set-based statements, one transaction
 *    per batch of its default size: 250 on the server, 100 embedded; its default drainers: two batches at once on
 *    the server, one embedded), on the PostgreSQL server (BENCH_DATABASE_URL, else TEST_DATABASE_URL) and on
 *    embedded PGlite; on the server also
 *    with each Invoice validated against `fhir-profiles/` as the engine's ingest job does (Medplum's validator);
 *  - end to end, steady state: the same on the server with BENCH_INGEST_STEADY_RECORDS (default 5000) Invoices on
 *    the same 1000 patients and accounts (5 each): first-batch costs (query planning, code warming up) weigh less than
 *    in the 1000-record line, and most records post to balances that exist (recomputed) instead of creating them.
 * Prints `name: value unit (ratio vs peer)`. Runs under the engine's V8 flags (`engine-flags.ts`), restarting itself
 * with them when started without.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { evalFhirPath } from '@medplum/core';
import { systemClock } from '../src/domain/clock.ts';
import { balanceEffect, type EntryKind } from '../src/domain/ledger.ts';
import { sumMoney, type Money } from '../src/domain/money.ts';
import type { SourceRecord } from '../src/domain/source-record.ts';
import { loadDataFiles } from '../src/config/data-files.ts';
import { silentLogger } from '../src/config/logger.ts';
import { validatorFor } from '../src/ingest/mapping-choice.ts';
import { ingestDrainers } from '../src/ingest/drain.ts';
import { drainPendingSourceRecords } from '../src/ingest/pending-batch.ts';
import { compileMapping } from '../src/mapping/compile.ts';
import { MappingRegistry } from '../src/mapping/load.ts';
import { toDate, toMoney } from '../src/mapping/transforms.ts';
import { withTransaction } from '../src/store/database.ts';
import { PhiCipher } from '../src/store/phi-crypto.ts';
import { PracticeRepository } from '../src/store/practices.ts';
import { SourceRecordRepository } from '../src/store/source-records.ts';
import { createTestDatabase } from '../tests/support/databases.ts';
import { backendCpu, backendCpuSince } from './backend-cpu.ts';
import { runUnderEngineFlags } from './engine-flags.ts';

runUnderEngineFlags(fileURLToPath(import.meta.url));

const root = fileURLToPath(new URL('../', import.meta.url));
const file = 'mappings/generic-fhir-invoice.json';
const data = JSON.parse(readFileSync(`${root}${file}`, 'utf8'));
const mapping = compileMapping({ name: data.name, file, data });

function invoice(n: number): Record<string, unknown> {
  return {
    resourceType: 'Invoice',
    id: `bench-${n}`,
    status: 'issued',
    subject: { reference: `Patient/p${n % 1000}` },
    account: { reference: `Account/a${n % 1000}` },
    date: '2026-01-15T09:30:00-05:00',
    lineItem: Array.from({ length: 10 }, (_, i) => ({
      sequence: i + 1,
      chargeItemCodeableConcept: { coding: [{ system: 'http://www.ama-assn.org/go/cpt', code: `992${10 + i}` }] },
      priceComponent: [
        { type: 'base', amount: { value: 100 + i + 0.25, currency: 'USD' } },
        { type: 'tax', amount: { value: 1.1, currency: 'USD' } },
        ...(i % 3 === 0 ? [{ type: 'discount', amount: { value: 5.05, currency: 'USD' } }] : []),
      ],
    })),
    totalGross: { value: 1000, currency: 'USD' },
  };
}

const record = (body: Record<string, unknown>, practiceId = 'p'): SourceRecord => ({
  practiceId, connector: 'bench', transport: 'fhir-r4', resourceType: 'Invoice', sourceId: String(body.id), versionId: '1',
  lastUpdated: null, contentHash: createHash('sha256').update(JSON.stringify(body)).digest('hex'), body,
});

/** The peer: the same mapping file, interpreted per record with expression strings. */
function interpret(resource: Record<string, unknown>): { kind: EntryKind; amount: Money; serviceDate: string }[] {
  const value = (expression: string, input: unknown) => evalFhirPath(expression, input, { '%resource': { type: 'Invoice', value: resource } });
  const fields: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(data.fields as Record<string, { fhirpath: string; transform?: string; currency?: string; codeTable?: string; timeZone?: string }>)) {
    const found = value(spec.fhirpath, resource);
    if (found.length === 0) continue;
    if (spec.transform === 'money') fields[name] = toMoney(found[0], spec.currency);
    else if (spec.transform === 'date') fields[name] = toDate(found[0], spec.timeZone ?? 'UTC');
    else if (spec.transform === 'code-table') fields[name] = data.codeTables[spec.codeTable!][String(found[0])];
    else fields[name] = String(found[0]);
  }
  const lines: { kind: EntryKind; amount: Money; serviceDate: string }[] = [];
  for (const event of data.events as { forEach?: string; kind: EntryKind; amount: { fhirpath: string; currency: string; sum?: boolean } }[]) {
    const items = event.forEach ? value(event.forEach, resource) : [resource];
    for (const item of items) {
      const amounts = value(event.amount.fhirpath, item).map((v) => toMoney(v, event.amount.currency));
      if (amounts.length === 0) continue;
      const amount = sumMoney(amounts);
      if (amount.amount !== 0) lines.push({ kind: event.kind, amount, serviceDate: fields.serviceDate as string });
    }
  }
  return lines;
}

const bodies = Array.from({ length: 1000 }, (_, n) => invoice(n));
const records = bodies.map((b) => record(b));

// Both produce the same events.
const check = mapping.map(records[0]!);
if (!check.ok) throw new Error(JSON.stringify(check.issues));
const compiledTotal = check.record.lines.reduce((s, l) => s + balanceEffect(l.kind, l.amount.amount), 0);
const peerTotal = interpret(bodies[0]!).reduce((s, l) => s + balanceEffect(l.kind, l.amount.amount), 0);
if (check.record.lines.length !== interpret(bodies[0]!).length || compiledTotal !== peerTotal) throw new Error('the peer does not produce the same events');
const eventsPerInvoice = check.record.lines.length;

function rate(work: (i: number) => void, seconds: number): number {
  for (let i = 0; i < 2000; i++) work(i); // warm up
  let n = 0;
  const started = performance.now();
  const until = started + seconds * 1000;
  while (performance.now() < until) {
    for (let k = 0; k < 100; k++) work(n++);
  }
  return n / ((performance.now() - started) / 1000);
}

const compiled = rate((i) => {
  const r = mapping.map(records[i % records.length]!);
  if (!r.ok) throw new Error('mapping failed');
}, 3);
const peer = rate((i) => void interpret(bodies[i % bodies.length]!), 3);
console.log(`mapping invoice (10 line items, ${eventsPerInvoice} events), compiled: ${compiled.toFixed(0)} invoices/s (${(compiled / peer).toFixed(2)}x vs evalFhirPath on strings)`);
console.log(`mapping balance events, compiled: ${(compiled * eventsPerInvoice).toFixed(0)} events/s (${(compiled / peer).toFixed(2)}x vs evalFhirPath on strings)`);
console.log(`mapping invoice (10 line items), evalFhirPath on strings: ${peer.toFixed(0)} invoices/s (1.00x vs itself)`);

/** What one end-to-end run measured. */
interface EndToEnd {
  /** Records stored and ingested per second, from the first store to the last post. */
  perSecond: number;
  /** CPU per record over the same span: this process's, and the PostgreSQL server's backends' (undefined when not local, or embedded). */
  nodeMicros: number;
  serverMicros: number | undefined;
}

/** Invoices of another practice that each server line first stores and ingests, untimed (see {@link endToEnd}). */
const WARM_UP_RECORDS = 500;

/**
 * Stores `count` Invoice source records (pending), then drains them as one run of the `ingest.pending` job does
 * (`drainPendingSourceRecords` with its defaults: claim a batch, map, post in one transaction per batch, its drainers
 * at once), on a pool of the drainers' connections and two more (the engine's pool has ten).
 *
 * On the server the timed run is the running engine's: {@link WARM_UP_RECORDS} Invoices of another practice go through
 * the same path first, untimed, so the pool's sessions are warm (the engine keeps them open between its per-minute
 * runs: `IDLE_CONNECTION_MS`; a fresh session spends about 50 ms of the server's CPU on its first statements) and so is
 * the code (validation included, when the line validates). The timed practice's patients, guarantors, accounts and
 * balances are all new.
 */
async function endToEnd(engine: 'pglite' | 'postgres', count: number, profiles?: readonly Record<string, unknown>[]): Promise<EndToEnd> {
  const handle = await createTestDatabase(engine, ingestDrainers({ kind: engine === 'postgres' ? 'server' : 'embedded' }) + 2);
  const practices = new PracticeRepository(handle.db.pool);
  const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
  // The engine's clock: ids made from the time (ledger entries') follow it as in production, where a fixed clock
  // would give every batch the same millisecond.
  const clock = systemClock;
  // The engine builds its validator once (loading the R4 definitions takes about a second): not part of the rate.
  if (profiles) validatorFor(profiles);
  /** Stores the Invoices, then drains them as the job does. @returns the drain's counts. */
  const storeAndIngest = async (work: readonly SourceRecord[]) => {
    for (let i = 0; i < work.length; i += 500) {
      await withTransaction(handle.db, (tx) => new SourceRecordRepository(tx, clock).storeMany(tx, work.slice(i, i + 500)));
    }
    return drainPendingSourceRecords({
      db: handle.db,
      clock,
      logger: silentLogger(),
      cipher,
      mappings: new MappingRegistry([mapping]),
      maxBatches: Number.MAX_SAFE_INTEGER,
      ...(profiles ? { profiles } : {}),
    });
  };
  if (engine === 'postgres') {
    const warmUpId = (await practices.create({ slug: 'warm-up', name: 'Warm-up', timeZone: 'America/New_York' })).id;
    const warmUp = await storeAndIngest(Array.from({ length: WARM_UP_RECORDS }, (_, n) => record(invoice(n), warmUpId)));
    if (warmUp.posted !== WARM_UP_RECORDS) throw new Error(`warm-up posted ${warmUp.posted} of ${WARM_UP_RECORDS}: ${JSON.stringify(warmUp)}`);
  }
  const practiceId = (await practices.create({ slug: 'bench', name: 'Bench', timeZone: 'America/New_York' })).id;
  const work = Array.from({ length: count }, (_, n) => record(invoice(n), practiceId));
  const serverBefore = engine === 'postgres' ? await backendCpu(handle.db) : undefined;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const run = await storeAndIngest(work);
  const perSecond = count / ((performance.now() - started) / 1000);
  const cpu = process.cpuUsage(cpuBefore);
  // The pool's connections are still open: each backend that served the run is counted (one started since: all of it).
  const serverMs = serverBefore ? backendCpuSince(serverBefore, await backendCpu(handle.db)) : undefined;
  if (run.posted !== count) throw new Error(`posted ${run.posted} of ${count}: ${JSON.stringify(run)}`);
  await handle.drop();
  return { perSecond, nodeMicros: (cpu.user + cpu.system) / count, serverMicros: serverMs === undefined ? undefined : (serverMs * 1000) / count };
}

/** `CPU per record: PostgreSQL backends N µs, Node M µs` of a server run (the backends' part left out when they are not on this host). */
const cpuPerRecord = (run: EndToEnd): string =>
  `CPU per record: ${run.serverMicros === undefined ? '' : `PostgreSQL backends ${run.serverMicros.toFixed(0)} µs, `}Node ${run.nodeMicros.toFixed(0)} µs`;

const serverDrainers = ingestDrainers({ kind: 'server' });
const ingestRecords = Number(process.env.BENCH_INGEST_RECORDS ?? 1000);
const profiles = loadDataFiles(root).profiles.map((p) => p.data);
const serverUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL;
const embedded = (await endToEnd('pglite', ingestRecords)).perSecond;
if (serverUrl) {
  process.env.TEST_DATABASE_URL = serverUrl;
  const server = await endToEnd('postgres', ingestRecords);
  console.log(`ingest end to end (${ingestRecords} Invoices: store source, map, post ledger; PostgreSQL server, ${serverDrainers} drainers, warmed by ${WARM_UP_RECORDS} of another practice): ${server.perSecond.toFixed(0)} records/s (${(server.perSecond / embedded).toFixed(2)}x vs embedded PGlite)`);
  console.log(`  ${cpuPerRecord(server)}`);
  // As the engine runs it: each Invoice is also validated with Medplum against fhir-profiles/ (settle-invoice).
  const validated = await endToEnd('postgres', ingestRecords, profiles);
  console.log(`ingest end to end with validation against fhir-profiles/ (${ingestRecords} Invoices; PostgreSQL server, ${serverDrainers} drainers, warmed by ${WARM_UP_RECORDS} of another practice): ${validated.perSecond.toFixed(0)} records/s (${(validated.perSecond / server.perSecond).toFixed(2)}x vs without validation)`);
  console.log(`  ${cpuPerRecord(validated)}`);
  const steadyRecords = Number(process.env.BENCH_INGEST_STEADY_RECORDS ?? 5000);
  const steady = await endToEnd('postgres', steadyRecords);
  console.log(`ingest end to end, steady state (${steadyRecords} Invoices on 1000 patients' accounts: store source, map, post ledger; PostgreSQL server, ${serverDrainers} drainers, warmed by ${WARM_UP_RECORDS} of another practice): ${steady.perSecond.toFixed(0)} records/s (${(steady.perSecond / server.perSecond).toFixed(2)}x vs ${ingestRecords} Invoices)`);
  console.log(`  ${cpuPerRecord(steady)}`);
} else {
  console.log('ingest end to end (PostgreSQL server): skipped (set BENCH_DATABASE_URL)');
}
console.log(`ingest end to end (${ingestRecords} Invoices: store source, map, post ledger; embedded PGlite, 1 drainer): ${embedded.toFixed(0)} records/s (1.00x vs itself)`);
process.exit(0);
