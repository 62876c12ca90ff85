/**
 * Analytics queries over 1,000,000 balances and their entries (about 3.3 million ledger entries, 1.5 million
 * outreach attempts, 200,000 Settle payments, 300,000 link opens, 20,000 plans; tests/analytics/seed.ts) on a PostgreSQL server
 * (BENCH_DATABASE_URL, else TEST_DATABASE_URL), seeded set-based in a fresh database. Each measure runs over
 * the default period (twelve months) 10 times after one warm-up, from the analytics rollup refreshed once after
 * seeding (the refresh time is printed too); target p95 ≤ 1 s.
 * `BENCH_BALANCES` changes the size.
 */
import { MEASURE_NAMES, runMeasure } from '../src/analytics/index.ts';
import { refreshRollup } from '../src/analytics/rollup.ts';
import { seedAnalyticsPractice } from '../tests/analytics/seed.ts';
import { createTestDatabase } from '../tests/support/databases.ts';

const serverUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL;
if (!serverUrl) {
  console.log('analytics: skipped (set BENCH_DATABASE_URL or TEST_DATABASE_URL to a PostgreSQL server)');
  process.exit(0);
}
process.env.TEST_DATABASE_URL = serverUrl;

const BALANCES = Number(process.env.BENCH_BALANCES ?? 1_000_000);
const RUNS = 10;
const TARGET_P95_MS = 1000;

const handle = await createTestDatabase('postgres', 4);
const db = handle.db;
let failed = 0;
// A failed seed or query still drops the database (it holds millions of rows).
try {
  const seeded = performance.now();
  const practiceId = await seedAnalyticsPractice(db, BALANCES);
  await db.pool.query('VACUUM ANALYZE');
  const counts = (await db.pool.query(`SELECT (SELECT count(*) FROM balances) AS balances, (SELECT count(*) FROM ledger_entries) AS entries,
    (SELECT count(*) FROM outreach_attempts) AS attempts, (SELECT count(*) FROM payments) AS payments`)).rows[0];
  console.log(`analytics seed: ${counts.balances} balances, ${counts.entries} entries, ${counts.attempts} attempts, ${counts.payments} payments in ${((performance.now() - seeded) / 1000).toFixed(0)} s`);

  // The measures read the analytics rollup: one refresh (as the analytics.refresh job does), then statistics as
  // autovacuum would gather them.
  const refresh = await refreshRollup(db.pool, practiceId);
  await db.pool.query('VACUUM ANALYZE');
  console.log(`analytics rollup refresh (PostgreSQL server, ${BALANCES} balances): ${(refresh.durationMs / 1000).toFixed(1)} s`);

  const period = { practiceId, from: '2025-07-01', to: '2026-06-30', currency: 'USD' };
  for (const name of MEASURE_NAMES) {
    await runMeasure(name, db.pool, period);
    const times: number[] = [];
    for (let run = 0; run < RUNS; run += 1) {
      const started = performance.now();
      await runMeasure(name, db.pool, period);
      times.push(performance.now() - started);
    }
    times.sort((a, b) => a - b);
    const p95 = times[Math.ceil(0.95 * times.length) - 1]!;
    const median = times[Math.floor(times.length / 2)]!;
    if (p95 > TARGET_P95_MS) failed += 1;
    console.log(`analytics ${name} (PostgreSQL server, ${BALANCES} balances, 12 months): p95 ${p95.toFixed(0)} ms, median ${median.toFixed(0)} ms (${(p95 / TARGET_P95_MS).toFixed(2)}x the 1 s target)`);
  }
} catch (error) {
  console.error(error);
  failed += 1;
}
if (process.env.BENCH_KEEP_DB) console.log(`analytics: database kept at ${handle.url}`);
else await handle.drop();
process.exit(failed ? 1 : 0);
