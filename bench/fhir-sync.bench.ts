/**
 * 1. Paged FHIR sync: N Invoices (default 50,000; BENCH_FHIR_INVOICES) from the sandbox EHR over loopback HTTP into
 * the database — search with _sort=_lastUpdated and _count=1000, every next link followed, each page stored as
 * source records with its checkpoint in one transaction. Resources/s on the embedded database and on a PostgreSQL
 * server (BENCH_DATABASE_URL, else TEST_DATABASE_URL). Target (issue 3): ≥ 3,000 resources/s into PostgreSQL.
 * 2. Bulk Data import of the same N: kick-off, poll, stream the NDJSON, store — as a ratio of plain `JSON.parse` of
 *    the same lines (target ≥ 0.25 with storage included), with the importing process's peak RSS.
 * The sandbox EHR runs in its own process (this file, with FHIR_BENCH_SANDBOX=1), as a real EHR would.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { Invoice } from '@medplum/fhirtypes';
import { importBulkExport } from '../src/connectors/fhir/bulk-export.ts';
import { createFhirClient, type FhirConnectorConfig } from '../src/connectors/fhir/connector.ts';
import { syncFhirConnector } from '../src/connectors/fhir/sync.ts';
import { PracticeRepository } from '../src/store/practices.ts';
import { createTestDatabase } from '../tests/support/databases.ts';
import { startSandboxEhr, type SandboxEhr } from '../src/sandbox-ehr/server.ts';
import { seedPractice } from '../src/sandbox-ehr/seed.ts';

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

/** Bulk import of all N Invoices: resources/s, and the same lines through plain JSON.parse. */
async function bulk(baseUrl: string, engine: 'pglite' | 'postgres'): Promise<{ perSecond: number; parsePerSecond: number; peakRss: number; baseRss: number }> {
  const handle = await createTestDatabase(engine, 5);
  try {
    const practiceId = (await new PracticeRepository(handle.db.pool).ensure({ slug: 'bench', name: 'Bench Clinic' })).id;
    const connector = benchConnector('bench-bulk', baseUrl);
    (globalThis as { gc?: () => void }).gc?.();
    const baseRss = process.memoryUsage().rss;
    let peakRss = baseRss;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
    const started = performance.now();
    const summary = await importBulkExport({ db: handle.db, connector, practiceId, client: createFhirClient(connector, { env: {} }), full: true, sleep: async () => {} });
    const seconds = (performance.now() - started) / 1000;
    clearInterval(sampler);
    if (summary.stored !== N) throw new Error(`bulk stored ${summary.stored} of ${N}`);
    // The peer: the same lines (read once more, after the measurement), parsed and nothing else.
    const lines = (await exportedLines(baseUrl)).filter((l) => l.trim() !== '');
    const parseStarted = performance.now();
    let parsed = 0;
    for (const line of lines) parsed += JSON.parse(line) ? 1 : 0;
    const parseSeconds = (performance.now() - parseStarted) / 1000;
    return { perSecond: N / seconds, parsePerSecond: parsed / parseSeconds, peakRss, baseRss };
  } finally {
    await handle.drop();
  }
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
const embedded = await run(baseUrl, 'pglite');
const server = serverUrl ? ((process.env.TEST_DATABASE_URL = serverUrl), await run(baseUrl, 'postgres')) : undefined;
const ratio = server ? `${(embedded.perSecond / server.perSecond).toFixed(2)}x vs server` : 'no server: set BENCH_DATABASE_URL for the ratio';
const detail = (r: typeof embedded) => `${N} Invoices, ${r.pages} pages of ${PAGE_SIZE}; ${r.afterFirstPage.toFixed(0)}/s after the sandbox's ${r.firstPageSeconds.toFixed(1)} s first search`;
console.log(`fhir sync (embedded): ${embedded.perSecond.toFixed(0)} resources/s (${ratio}; ${detail(embedded)})`);
if (server) {
  console.log(`fhir sync (PostgreSQL server): ${server.perSecond.toFixed(0)} resources/s (${(server.perSecond / 3000).toFixed(2)}x vs the 3,000/s target; ${detail(server)})`);
}
for (const engine of server ? (['pglite', 'postgres'] as const) : (['pglite'] as const)) {
  const b = await bulk(baseUrl, engine);
  const name = engine === 'pglite' ? 'embedded' : 'PostgreSQL server';
  const where = engine === 'pglite' ? 'importer and embedded database' : 'importer';
  console.log(
    `fhir bulk import (${name}): ${b.perSecond.toFixed(0)} resources/s (${(b.perSecond / b.parsePerSecond).toFixed(3)}x vs plain JSON.parse of the same lines, target 0.25; peak RSS of the ${where} ${(b.peakRss / 2 ** 20).toFixed(0)} MB, +${((b.peakRss - b.baseRss) / 2 ** 20).toFixed(0)} MB during the import)`,
  );
}
sandbox.stdin!.end();
await once(sandbox, 'exit');
process.exit(0);
