/**
 * Agenda job throughput: 2,000 jobs enqueued and run by one worker (concurrency 20), on the embedded
 * database and on a PostgreSQL server (BENCH_DATABASE_URL, else TEST_DATABASE_URL).
 */
import { JobRegistry, Scheduler } from '../src/scheduler/scheduler.ts';
import { createTestDatabase } from '../tests/support/databases.ts';

const JOBS = 2000;

async function throughput(engine: 'pglite' | 'postgres'): Promise<{ enqueue: number; run: number }> {
  const handle = await createTestDatabase(engine, 25);
  const registry = new JobRegistry();
  let done = 0;
  let finished!: () => void;
  const all = new Promise<void>((resolve) => (finished = resolve));
  registry.register({ name: 'bench.noop', run: async () => { if (++done === JOBS) finished(); } });
  const scheduler = new Scheduler({ db: handle.db, registry, name: 'bench', concurrency: 20, pollIntervalMs: 100 });
  const enqueueStarted = performance.now();
  const enqueuers = 10;
  await Promise.all(
    Array.from({ length: enqueuers }, async (_, e) => {
      for (let i = e; i < JOBS; i += enqueuers) await scheduler.now('bench.noop', { i });
    }),
  );
  const enqueueSeconds = (performance.now() - enqueueStarted) / 1000;
  const started = performance.now();
  await scheduler.start();
  await all;
  const seconds = (performance.now() - started) / 1000;
  await scheduler.stop(1000);
  await handle.drop();
  return { enqueue: JOBS / enqueueSeconds, run: JOBS / seconds };
}

const serverUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL;
const embedded = await throughput('pglite');
const server = serverUrl ? (process.env.TEST_DATABASE_URL = serverUrl, await throughput('postgres')) : undefined;
for (const phase of ['enqueue', 'run'] as const) {
  const ratio = server ? `${(embedded[phase] / server[phase]).toFixed(2)}x vs PostgreSQL server` : 'no server: set BENCH_DATABASE_URL for the ratio';
  console.log(`agenda ${phase} (embedded PGlite, ${JOBS} jobs): ${embedded[phase].toFixed(0)} jobs/s (${ratio})`);
  if (server) console.log(`agenda ${phase} (PostgreSQL server, ${JOBS} jobs): ${server[phase].toFixed(0)} jobs/s (1.00x vs itself)`);
}
process.exit(0);
