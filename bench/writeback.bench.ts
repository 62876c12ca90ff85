/**
 * Write-backs delivered to the sandbox EHR per second (target ≥ 200/s): outbox rows claimed, rendered as
 * PaymentReconciliations, validated (Medplum profile + HL7 fhir.schema.json), sent as conditional creates over
 * HTTP and marked delivered — side by side with bare conditional-create POSTs of the same resources to the same
 * server (no database, no validation) at the same concurrency. The sandbox EHR runs in its own process, as an
 * EHR would. The database is the PostgreSQL server (BENCH_DATABASE_URL, else TEST_DATABASE_URL), or embedded PGlite
 * when neither is set.
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { PaymentReconciliation } from '@medplum/fhirtypes';
import { ManualClock } from '../src/domain/clock.ts';
import { WritebackDelivery } from '../src/writeback/delivery.ts';
import { renderPaymentReconciliation } from '../src/writeback/render-fhir.ts';
import { startSandboxEhr } from '../src/sandbox-ehr/server.ts';
import { PaymentRepository } from '../src/store/payments.ts';
import { createTestDatabase } from '../tests/support/databases.ts';
import { deliveryDeps, fhirConnector, seedHousehold } from '../tests/writeback/fixtures.ts';

const COUNT = Number(process.env.BENCH_WRITEBACKS ?? 2000);
const CONCURRENCY = 16;

if (process.argv[2] === 'ehr-child') {
  // The EHR's process: serves the sandbox, answers how many PaymentReconciliations it holds per identifier system.
  const ehr = await startSandboxEhr();
  process.on('message', async (message) => {
    if (message === 'close') {
      await ehr.close();
      process.exit(0);
    }
    const all = await ehr.repo.searchResources<PaymentReconciliation>({ resourceType: 'PaymentReconciliation', count: 1_000_000 });
    const bySystem: Record<string, { resources: number; distinct: number }> = {};
    for (const system of new Set(all.map((r) => r.identifier?.[0]?.system ?? ''))) {
      const mine = all.filter((r) => r.identifier?.[0]?.system === system);
      bySystem[system] = { resources: mine.length, distinct: new Set(mine.map((r) => r.identifier?.[0]?.value)).size };
    }
    process.send!({ bySystem, sample: all.filter((r) => r.identifier?.[0]?.system === 'urn:settle:writeback').slice(0, COUNT) });
  });
  process.send!({ baseUrl: ehr.baseUrl });
  await new Promise(() => {});
}

const serverUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL;
const engine = serverUrl ? 'postgres' : 'pglite';
if (serverUrl) process.env.TEST_DATABASE_URL = serverUrl;
const handle = await createTestDatabase(engine, 10);
const db = handle.db;
const clock = new ManualClock(new Date('2026-06-01T15:00:00Z'));
const child = fork(fileURLToPath(import.meta.url), ['ehr-child'], { stdio: 'inherit' });
const [{ baseUrl }] = (await once(child, 'message')) as [{ baseUrl: string }];
const ehr = {
  baseUrl,
  async contents(): Promise<{ bySystem: Record<string, { resources: number; distinct: number }>; sample: PaymentReconciliation[] }> {
    child.send('count');
    return ((await once(child, 'message')) as [never])[0];
  },
  async close() {
    child.send('close');
    await once(child, 'exit');
  },
};
try {
  const h = await seedHousehold(db, clock, 'wb-bench');
  const payments = new PaymentRepository(db.pool, clock);
  // COUNT succeeded payments of the household's older balance, each with its outbox row, in two statements.
  const now = clock.now();
  await db.pool.query(
    `INSERT INTO payments (practice_id, guarantor_id, balance_ids, allocations, amount_minor, currency, status, created_at, updated_at)
     SELECT $1, $2, ARRAY[$3::uuid], jsonb_build_array(jsonb_build_object('balanceId', $3::text, 'amountMinor', 100 + i % 5000)), 100 + i % 5000, 'USD', 'succeeded', $4, $4
     FROM generate_series(1, $5) AS i`,
    [h.practiceId, h.guarantorId, h.olderBalanceId, now, COUNT],
  );
  await db.pool.query(
    // control_id: hl7ControlId in SQL, as migration 0020 computes it.
    `INSERT INTO writeback_outbox (practice_id, payment_id, kind, writeback_id, control_id, amount_minor, currency, allocations, next_attempt_at, created_at, updated_at)
     SELECT practice_id, id, 'payment', 'payment-' || id, upper(substr(encode(sha256(convert_to(practice_id::text || ' payment-' || id, 'UTF8')), 'hex'), 1, 16)),
       amount_minor, currency, allocations, $2, $2, $2 FROM payments WHERE practice_id = $1`,
    [h.practiceId, now],
  );
  const delivery = new WritebackDelivery(deliveryDeps(db, clock, [fhirConnector('wb-bench', ehr.baseUrl)], { concurrency: CONCURRENCY, batchSize: 200 }));

  // Warm-up: definitions, the JSON Schema compile and the HTTP connection pool are one-off costs.
  const warm = await payments.claimDueWritebacks({ limit: 1, leaseMs: 0 });
  await payments.releaseWriteback(warm[0]!.id, clock.now());
  const sample = renderPaymentReconciliation({ row: warm[0]!, balances: [], connector: 'ehr', identifierSystem: 'urn:settle:warmup' });
  await fetch(`${ehr.baseUrl}/PaymentReconciliation`, { method: 'POST', headers: { 'content-type': 'application/fhir+json', 'if-none-exist': 'identifier=urn:settle:warmup|w' }, body: JSON.stringify(sample) });
  (await import('../src/writeback/validate.ts')).writebackIssues(sample);

  const started = performance.now();
  const report = await delivery.deliverDue();
  const seconds = (performance.now() - started) / 1000;
  const { bySystem, sample: written } = await ehr.contents();
  const ours = bySystem['urn:settle:writeback'];
  if (report.delivered !== COUNT || ours?.resources !== COUNT || ours.distinct !== COUNT) {
    throw new Error(`expected ${COUNT} delivered once each, got ${JSON.stringify(report)} and ${JSON.stringify(ours)} in the EHR`);
  }
  const rate = COUNT / seconds;

  // The peer: the same resources POSTed as conditional creates straight to the server, same concurrency.
  const bare = written.map((r) => ({ ...r, id: undefined, meta: undefined, identifier: [{ system: 'urn:bench:bare', value: r.identifier![0]!.value! }] }));
  let next = 0;
  const bareStarted = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < bare.length) {
      const resource = bare[next++]!;
      const res = await fetch(`${ehr.baseUrl}/PaymentReconciliation`, {
        method: 'POST', headers: { 'content-type': 'application/fhir+json', 'if-none-exist': `identifier=urn:bench:bare|${resource.identifier[0]!.value}` }, body: JSON.stringify(resource),
      });
      await res.text();
    }
  }));
  const theirs = bare.length / ((performance.now() - bareStarted) / 1000);
  const where = engine === 'postgres' ? 'PostgreSQL server' : 'embedded PGlite';
  console.log(
    `writeback delivery to the sandbox EHR (${where}, ${COUNT} PaymentReconciliations, ${CONCURRENCY} in flight, validated, conditional create): ${rate.toFixed(0)} writebacks/s (${(rate / theirs).toFixed(2)}x vs bare conditional-create POSTs at ${theirs.toFixed(0)}/s; target ≥ 200/s)`,
  );
  await delivery.close();
} finally {
  await ehr.close();
  await handle.drop();
}
