/**
 * 1. Paged FHIR sync: N Invoices (default 50,000; BENCH_FHIR_INVOICES) from the sandbox EHR over loopback HTTP into
 * the database — search with _sort=_lastUpdated and _count=1000, every next link followed, each page stored as
 * source records with its checkpoint in one transaction. Resources/s on the embedded database and on a PostgreSQL
 * server (BENCH_DATABASE_URL, else TEST_DATABASE_URL). Target (issue 3): ≥ 3,000 resources/s into PostgreSQL.
 * 2. Bulk Data import of the same N: kick-off, poll, stream the NDJSON, store. Lines/s from the first file's
 *    download to the last line stored (the sandbox preparing the export is shown apart), as a ratio of plain
 *    `JSON.parse` of the same bytes (target ≥ 0.25 with storage into the database included). The import runs in a
 *    process of its own (this file, with FHIR_BENCH_BULK set), whose peak RSS during the import is reported (target
 *    < 300 MB at any N: BENCH_FHIR_BULK_ONLY=1 BENCH_FHIR_INVOICES=200000 skips the paged sync to show it), with what
 *    the opened database holds when it starts (PGlite, on the embedded engine) and the process's peak while opening it,
 *    and the share of the import the importer process was on the CPU (well under 100% on a server: it waits for it), with
 *    the CPU time a line cost the importer (and its page faults a line: memory touched afresh) and, when the
 *    PostgreSQL server runs on this host, its backends (this VM's speed swings by up to 2x: CPU time per line
 *    compares two runs better than their rates).
 * The sandbox EHR runs in its own process (this file, with FHIR_BENCH_SANDBOX=1), as a real EHR would.
 * BENCH_BULK_WRITERS=N runs the Bulk import with N writers instead of its default (to compare them).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Invoice } from '@medplum/fhirtypes';
import pg from 'pg';
import { importBulkExport } from '../src/connectors/fhir/bulk-export.ts';
import { createFhirClient, type FhirConnectorConfig } from '../src/connectors/fhir/connector.ts';
import { syncFhirConnector } from '../src/connectors/fhir/sync.ts';
import { openDatabase, type Database } from '../src/store/database.ts';
import { migrate } from '../src/store/migrate.ts';
import { PracticeRepository } from '../src/store/practices.ts';
import { createTestDatabase } from '../tests/support/databases.ts';
import { startSandboxEhr, type SandboxEhr } from '../src/sandbox-ehr/server.ts';
import { seedPractice } from '../src/sandbox-ehr/seed.ts';
import { backendCpu, backendCpuOf, backendCpuSince } from './backend-cpu.ts';
import { ENGINE_NODE_FLAGS } from './engine-flags.ts';

const N = Number(process.env.BENCH_FHIR_INVOICES ?? 50_000);
const PAGE_SIZE = 1000;

/** Seeds a practice, then copies its invoices (fresh ids, later lastUpdated) until there are N. */
async function seedInvoices(ehr: SandboxEhr): Promise<void> {
  await seedPractice(ehr.repo, { patients: 400, seed: 42, coverage: false });
  const templates = await ehr.repo.searchResources<Invoice>({ resourceType: 'Invoice', count: 10_000 });
  let at = Date.parse('2026-03-01T00:00:00Z');
  const copies: Invoice[] = [];
  for (let i = templates.length; i < N; i++) {
    const t = templates[i % templates.length]!;
    if (i % 3 === 0) at += 1000; // several invoices share a timestamp, as after a batch import
    copies.push({ ...t, id: `bench-${i}`, identifier: [{ system: 'http://sandbox-ehr.settle.test/fhir/sid/invoice', value: `BENCH-${i}` }], meta: { versionId: '1', lastUpdated: new Date(at).toISOString() } });
  }
  await ehr.repo.withSeeding(async () => {
    for (const invoice of copies) await ehr.repo.createResource(invoice);
  });
}

/** A connector reading every Invoice of the sandbox at `baseUrl`. */
function benchConnector(name: string, baseUrl: string): FhirConnectorConfig {
  return {
    name,
    description: 'bench',
    practice: 'bench',
    transport: 'fhir-r4',
    baseUrl,
    auth: { method: 'none' },
    resources: [{ type: 'Invoice' }],
    schedule: { every: '1 hour' },
    pageSize: PAGE_SIZE,
    rateLimitPerSecond: 1000,
  };
}

async function run(baseUrl: string, engine: 'pglite' | 'postgres'): Promise<{ perSecond: number; afterFirstPage: number; firstPageSeconds: number; pages: number }> {
  const handle = await createTestDatabase(engine, 5);
  try {
    const practiceId = (await new PracticeRepository(handle.db.pool).ensure({ slug: 'bench', name: 'Bench Clinic' })).id;
    const connector = benchConnector('bench-ehr', baseUrl);
    const started = performance.now();
    let firstPageAt = 0;
    const summary = await syncFhirConnector({
      db: handle.db,
      connector,
      practiceId,
      client: createFhirClient(connector, { env: {} }),
      recordRun: false,
      onPageFetched: ({ page }) => void (page === 1 && (firstPageAt = performance.now())),
    });
    const seconds = (performance.now() - started) / 1000;
    const firstPageSeconds = (firstPageAt - started) / 1000;
    if (summary.stored !== N) throw new Error(`stored ${summary.stored} of ${N}`);
    // The sandbox's in-memory search of all N (before the first page) is the peer's cost, shown apart.
    return { perSecond: N / seconds, afterFirstPage: (N - PAGE_SIZE) / (seconds - firstPageSeconds), firstPageSeconds, pages: summary.pages };
  } finally {
    await handle.drop();
  }
}

/** What the Bulk importer process reports. */
interface BulkRun {
  /** Seconds from kick-off to the last line stored, and from the first file's download to the last line stored. */
  seconds: number;
  ingestSeconds: number;
  stored: number;
  /** Resident set size before the database was opened, the peak while opening it, and when the import started. */
  baseRss: number;
  openPeakRss: number;
  startRss: number;
  /** The peak resident set size during the import, and the peak of V8's heap then (sampled every 50 ms). */
  importPeakRss: number;
  importPeakHeap: number;
  /** CPU seconds (user + system) the importer process spent from the first file's download to the last line stored. */
  ingestCpuSeconds: number;
  /** The importer process's page faults meanwhile (memory touched afresh: about 14 µs of CPU each on this VM). */
  ingestPageFaults: number;
  /** CPU seconds the PostgreSQL server's backends of the database spent meanwhile, when they run on this host. */
  serverCpuSeconds?: number;
  /** PostgreSQL's own cost of storing the same rows, when the server runs on this host (see {@link storageFloor}). */
  floor?: StorageFloor;
}

/** CPU seconds a fresh backend spent reading the imported rows, and reading and inserting them again (under another connector). */
interface StorageFloor {
  readCpuSeconds: number;
  insertCpuSeconds: number;
}

/**
 * PostgreSQL's own cost of storing the import's rows, with no client work at all: on a fresh connection (as the
 * importer's writers are), its commits not waiting for the disk (as theirs), the server reads the imported rows, then
 * inserts them again under another connector name (`INSERT … SELECT`: same table, keys, trigger and lz4 compression,
 * no parsing, no network). Insert less read is what storing the lines costs the server however they are sent: the
 * floor the import's backends are measured against. Undefined when the server is not on this host.
 */
async function storageFloor(url: string, practiceId: string, connector: string): Promise<StorageFloor | undefined> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const cpu = () => (backendCpuOf(pid) ?? NaN) / 1000;
    await client.query('SET synchronous_commit = off');
    const before = cpu();
    await client.query('SELECT sum(length(body)) FROM source_records WHERE practice_id = $1 AND connector = $2', [practiceId, connector]);
    const read = cpu();
    await client.query(
      `INSERT INTO source_records (practice_id, connector, transport, resource_type, source_id, version_id, last_updated, content_hash, body, received_at)
       SELECT practice_id, 'storage-floor', transport, resource_type, source_id, version_id, last_updated, content_hash, body, received_at
       FROM source_records WHERE practice_id = $1 AND connector = $2`,
      [practiceId, connector],
    );
    const inserted = cpu();
    return Number.isNaN(before) ? undefined : { readCpuSeconds: read - before, insertCpuSeconds: inserted - read };
  } finally {
    await client.end();
  }
}

/**
 * Imports all N Invoices by Bulk export in this process (the importer process the bench starts), and reports. The
 * embedded database is kept in a data directory, as Settle runs it (an in-memory one would hold every record in
 * this process's memory).
 */
async function importInThisProcess(baseUrl: string, engine: 'pglite' | 'postgres'): Promise<BulkRun> {
  const baseRss = process.memoryUsage().rss;
  const dataDir = engine === 'pglite' ? mkdtempSync(join(tmpdir(), 'settle-bench-bulk-')) : undefined;
  const handle = dataDir ? await embeddedOnDisk(dataDir) : await createTestDatabase(engine, 5);
  try {
    const practiceId = (await new PracticeRepository(handle.db.pool).ensure({ slug: 'bench', name: 'Bench Clinic' })).id;
    const connector = benchConnector('bench-bulk', baseUrl);
    const openPeakRss = ownPeakRss();
    resetPeakRss();
    const startRss = process.memoryUsage().rss;
    let importPeakHeap = 0;
    const sampler = setInterval(() => (importPeakHeap = Math.max(importPeakHeap, process.memoryUsage().heapUsed)), 50);
    let downloadAt = 0;
    let downloadCpu = process.cpuUsage();
    let downloadFaults = process.resourceUsage().minorPageFault;
    let serverCpu: Map<number, number> | undefined;
    const started = performance.now();
    const summary = await importBulkExport({
      db: handle.db,
      connector,
      practiceId,
      client: createFhirClient(connector, { env: {} }),
      full: true,
      writers: process.env.BENCH_BULK_WRITERS ? Number(process.env.BENCH_BULK_WRITERS) : undefined,
      sleep: async () => {},
      onProgress: (e) => {
        if (e.phase !== 'downloading' || downloadAt !== 0) return;
        downloadAt = performance.now();
        downloadCpu = process.cpuUsage();
        downloadFaults = process.resourceUsage().minorPageFault;
        if (engine === 'postgres') void backendCpu(handle.db).then((ticks) => (serverCpu = ticks));
      },
    });
    const ended = performance.now();
    const cpu = process.cpuUsage(downloadCpu);
    const faults = process.resourceUsage().minorPageFault - downloadFaults;
    const serverCpuMs = engine === 'postgres' && serverCpu ? backendCpuSince(serverCpu, await backendCpu(handle.db)) : undefined;
    const serverCpuSeconds = serverCpuMs === undefined ? undefined : serverCpuMs / 1000;
    clearInterval(sampler);
    const floor = handle.url ? await storageFloor(handle.url, practiceId, connector.name) : undefined;
    return {
      seconds: (ended - started) / 1000,
      ingestSeconds: (ended - downloadAt) / 1000,
      stored: summary.stored,
      baseRss,
      openPeakRss,
      startRss,
      importPeakRss: ownPeakRss(),
      importPeakHeap,
      ingestCpuSeconds: (cpu.user + cpu.system) / 1e6,
      ingestPageFaults: faults,
      serverCpuSeconds,
      floor,
    };
  } finally {
    await handle.drop();
  }
}

/**
 * This process's peak RSS: Linux's VmHWM, of this process's own address space. (`resourceUsage().maxRSS` would do
 * elsewhere, but Linux carries the spawning process's RSS at fork time over into it: the bench's own memory.)
 */
function ownPeakRss(): number {
  const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(existsSync('/proc/self/status') ? readFileSync('/proc/self/status', 'utf8') : '');
  return hwm ? Number(hwm[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
}

/**
 * Starts this process's peak RSS afresh from its current RSS (Linux's clear_refs 5), so that the peak read after
 * the import is the import's, not that of opening the database (PGlite compiles its WebAssembly then).
 */
function resetPeakRss(): void {
  if (existsSync('/proc/self/clear_refs')) writeFileSync('/proc/self/clear_refs', '5');
}

/** A migrated embedded database in `dataDir`, removed when dropped (no URL: nothing else connects to it). */
async function embeddedOnDisk(dataDir: string): Promise<{ db: Database; url?: undefined; drop(): Promise<void> }> {
  const db = await openDatabase({ dataDir, poolSize: 5 });
  await migrate(db);
  return {
    db,
    async drop() {
      await db.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Bulk import of all N Invoices in a process of its own (so its peak RSS is the importer's alone: not the bench's,
 * not the sandbox's), then the peer: the same bytes, from a fresh export, through plain JSON.parse (best of 5, each
 * round after a full garbage collection when the bench runs with --expose-gc: this VM's speed swings, and the best
 * round is the peer's own speed).

 */
async function bulk(baseUrl: string, engine: 'pglite' | 'postgres'): Promise<BulkRun & { parsePerSecond: number }> {
  // With the V8 flags Settle runs with (engine-flags.ts): its peak is what this measures.
  const child = spawn(process.execPath, [...ENGINE_NODE_FLAGS, fileURLToPath(import.meta.url)], { env: { ...process.env, FHIR_BENCH_BULK: JSON.stringify({ baseUrl, engine }) }, stdio: ['ignore', 'pipe', 'inherit'] });
  let printed = '';
  child.stdout!.on('data', (d) => (printed += d));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`the Bulk importer process exited with ${code}`);
  const result = JSON.parse(printed) as BulkRun;
  if (result.stored !== N) throw new Error(`bulk stored ${result.stored} of ${N}`);
  const lines = (await exportedLines(baseUrl)).filter((l) => l.trim() !== '');
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    (globalThis as { gc?: () => void }).gc?.();
    const parseStarted = performance.now();
    let parsed = 0;
    for (const line of lines) parsed += JSON.parse(line) ? 1 : 0;
    if (parsed !== N) throw new Error(`parsed ${parsed} of ${N}`);
    best = Math.min(best, (performance.now() - parseStarted) / 1000);
  }
  return { ...result, parsePerSecond: N / best };
}

/** The Invoice NDJSON of a fresh export, as lines (for the JSON.parse peer only). */
async function exportedLines(baseUrl: string): Promise<string[]> {
  const kick = await fetch(`${baseUrl}/$export?_type=Invoice`, { headers: { prefer: 'respond-async' } });
  const status = kick.headers.get('content-location')!;
  for (;;) {
    const res = await fetch(status);
    if (res.status === 202) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      continue;
    }
    const manifest = (await res.json()) as { output: { url: string }[] };
    const text = await (await fetch(manifest.output[0]!.url)).text();
    await fetch(status, { method: 'DELETE' });
    return text.split('\n');
  }
}

if (process.env.FHIR_BENCH_BULK) {
  // The importer process: one Bulk import, its measurements as JSON on stdout.
  const { baseUrl, engine } = JSON.parse(process.env.FHIR_BENCH_BULK) as { baseUrl: string; engine: 'pglite' | 'postgres' };
  process.stdout.write(`${JSON.stringify(await importInThisProcess(baseUrl, engine))}\n`);
  process.exit(0);
}

if (process.env.FHIR_BENCH_SANDBOX === '1') {
  // The sandbox process: seed, print the base URL, serve until stdin closes.
  const ehr = await startSandboxEhr({ bulkPendingPolls: 1 });
  const seedStarted = performance.now();
  await seedInvoices(ehr);
  console.error(`seeded ${N} invoices in ${((performance.now() - seedStarted) / 1000).toFixed(1)} s`);
  process.stdout.write(`${ehr.baseUrl}\n`);
  process.stdin.resume();
  await once(process.stdin, 'end');
  await ehr.close();
  process.exit(0);
}

const sandbox = spawn(process.execPath, [fileURLToPath(import.meta.url)], { env: { ...process.env, FHIR_BENCH_SANDBOX: '1' }, stdio: ['pipe', 'pipe', 'inherit'] });
let printed = '';
const baseUrl = await new Promise<string>((resolve, reject) => {
  sandbox.stdout!.on('data', (d) => {
    printed += d;
    if (printed.includes('\n')) resolve(printed.trim());
  });
  sandbox.once('exit', (code) => reject(new Error(`the sandbox exited with ${code}`)));
});
const serverUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL;
if (serverUrl) process.env.TEST_DATABASE_URL = serverUrl;
const engines = serverUrl ? (['pglite', 'postgres'] as const) : (['pglite'] as const);
if (process.env.BENCH_FHIR_BULK_ONLY !== '1') {
  const [embedded, server] = [await run(baseUrl, 'pglite'), serverUrl ? await run(baseUrl, 'postgres') : undefined];
  const ratio = server ? `${(embedded.perSecond / server.perSecond).toFixed(2)}x vs server` : 'no server: set BENCH_DATABASE_URL for the ratio';
  const detail = (r: typeof embedded) => `${N} Invoices, ${r.pages} pages of ${PAGE_SIZE}; ${r.afterFirstPage.toFixed(0)}/s after the sandbox's ${r.firstPageSeconds.toFixed(1)} s first search`;
  console.log(`fhir sync (embedded): ${embedded.perSecond.toFixed(0)} resources/s (${ratio}; ${detail(embedded)})`);
  if (server) {
    console.log(`fhir sync (PostgreSQL server): ${server.perSecond.toFixed(0)} resources/s (${(server.perSecond / 3000).toFixed(2)}x vs the 3,000/s target; ${detail(server)})`);
  }
}
for (const engine of engines) {
  const b = await bulk(baseUrl, engine);
  const name = engine === 'pglite' ? 'embedded' : 'PostgreSQL server';
  const where = engine === 'pglite' ? 'importer process (embedded database in a data directory included)' : 'importer process';
  const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MB`;
  console.log(
    `fhir bulk import (${name}): ${(N / b.ingestSeconds).toFixed(0)} resources/s from download to stored ` +
      `(${(N / b.ingestSeconds / b.parsePerSecond).toFixed(3)}x vs plain JSON.parse of the same bytes at ${b.parsePerSecond.toFixed(0)}/s, target 0.25; ` +
      `${(N / b.seconds).toFixed(0)}/s counting the sandbox's ${(b.seconds - b.ingestSeconds).toFixed(1)} s to prepare the export; ` +
      `the importer process on the CPU ${((b.ingestCpuSeconds / b.ingestSeconds) * 100).toFixed(0)}% of the import${engine === 'pglite' ? ', its embedded database included' : ''}, ` +
      `${((b.ingestCpuSeconds / N) * 1e6).toFixed(1)} µs a line (${(b.ingestPageFaults / N).toFixed(2)} page faults)${b.serverCpuSeconds === undefined ? '' : `, the server's backends ${((b.serverCpuSeconds / N) * 1e6).toFixed(1)} µs a line`}); ` +
      `peak RSS of the ${where} during the import ${mb(b.importPeakRss)} (${mb(b.startRss)} when it started, ${mb(b.startRss - b.baseRss)} of that the opened database; ` +
      `V8 heap at most ${mb(b.importPeakHeap)}; the process peaked at ${mb(b.openPeakRss)} opening the database), ${N} lines`,
  );
  if (b.floor) {
    const us = (seconds: number) => ((seconds / N) * 1e6).toFixed(1);
    const storing = b.floor.insertCpuSeconds - b.floor.readCpuSeconds;
    const target = 0.25 * b.parsePerSecond;
    const budget = availableParallelism() / target;
    console.log(
      `fhir bulk import (PostgreSQL server), the server's floor: storing the same ${N} rows again on a fresh connection with no client work (INSERT … SELECT) ` +
        `cost its backend ${us(b.floor.insertCpuSeconds)} µs of CPU a line, ${us(b.floor.readCpuSeconds)} of them reading the rows: storing alone ${us(storing)} µs a line` +
        `${b.serverCpuSeconds === undefined ? '' : ` (the import's backends ${us(b.serverCpuSeconds)})`}. ` +
        `0.25 of this run's JSON.parse peer is ${target.toFixed(0)} lines/s: at most ${(budget * 1e6).toFixed(1)} µs of CPU a line for the sandbox, the importer and the server together ` +
        `on this machine's ${availableParallelism()} cores, ${((storing / N / budget) * 100).toFixed(0)}% of it the server's floor alone`,
    );
  }
}
sandbox.stdin!.end();
await once(sandbox, 'exit');
process.exit(0);
