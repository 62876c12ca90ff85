/**
 * Stripe webhook events handled per second (target ≥ 500/s): each delivery is a raw body whose Stripe-Signature
 * is verified, then handled with the deliveries arriving at the same time, in one set-based transaction per batch
 * (event id recorded once; the payment posted to the ledger across its balance with its write-back outbox row; each
 * payment a different guarantor's), 8 deliveries in flight as Stripe sends them. Every payment's two
 * events (`payment_intent.succeeded`, `checkout.session.completed`) arrive, then all of them again (Stripe's
 * retries: duplicates that must change nothing). The peer is the Stripe SDK's own `webhooks.constructEvent`
 * (signature check only, no database) on the same payloads.
 *
 * Runs on embedded PGlite, and on the PostgreSQL server too when BENCH_DATABASE_URL or TEST_DATABASE_URL is set.
 */
import Stripe from 'stripe';
import { ManualClock } from '../src/domain/clock.ts';
import { money } from '../src/domain/money.ts';
import { signSandboxEvent } from '../src/payments/sandbox.ts';
import { processStripeWebhook } from '../src/payments/webhook-route.ts';
import { createTestDatabase } from '../tests/support/databases.ts';
import { backendCpu, backendCpuSince } from './backend-cpu.ts';
import { withTransaction } from '../src/store/database.ts';
import { LedgerRepository } from '../src/store/ledger.ts';
import { PaymentRepository } from '../src/store/payments.ts';
import { PracticeRepository } from '../src/store/practices.ts';
import { cipher, sandboxCheckoutEvents, silentLogger } from '../tests/payments/webhook-fixtures.ts';

const PAYMENTS = Number(process.env.BENCH_WEBHOOK_PAYMENTS ?? 500);
const CONCURRENCY = 8;
const SECRET = 'whsec_bench_webhooks';

async function inParallel<T>(items: readonly T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < items.length) await work(items[next++]!);
  }));
}

async function run(engine: 'pglite' | 'postgres'): Promise<void> {
  const handle = await createTestDatabase(engine, CONCURRENCY + 2);
  try {
    const db = handle.db;
    const clock = new ManualClock(new Date('2026-06-01T15:00:00Z'));
    // One practice; every payment is a different guarantor's $100.00 balance, as a day's webhooks would be.
    const practiceId = (await new PracticeRepository(db.pool).create({ slug: `bench-${engine}`, name: 'Bench Clinic', timeZone: 'America/New_York' })).id;
    const ledger = new LedgerRepository(db.pool, cipher, clock);
    const deliveries: { payload: Buffer; header: string }[] = [];
    for (let i = 0; i < PAYMENTS; i++) {
      const patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: `B-${i}` });
      const guarantorId = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
      const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: `A-${i}` }, patientId });
      const posted = await withTransaction(db, (tx) => ledger.on(tx).postSource(practiceId,
        { connector: 'ehr', resourceType: 'Invoice', sourceId: `A-${i}`, versionId: '1', lastUpdated: null }, { accountId, guarantorId, patientId },
        [{ lineKey: 'l0', kind: 'charge', amount: money(10_000, 'USD'), serviceDate: '2026-05-01', payer: 'patient', serviceCode: null, description: null }]));
      const payment = await new PaymentRepository(db.pool, clock).createPending({ practiceId, guarantorId, balanceIds: posted.balanceIds, amount: money(10_000, 'USD') });
      for (const event of sandboxCheckoutEvents(clock, payment)) {
        const { payload, header } = signSandboxEvent(event, { clock, secret: SECRET });
        deliveries.push({ payload: Buffer.from(payload), header });
      }
    }
    const all = [...deliveries, ...deliveries]; // every event, then Stripe's retry of every event
    const outcomes = new Map<string, number>();
    const deliver = async ({ payload, header }: { payload: Buffer; header: string }) => {
      const ack = await processStripeWebhook({ db, clock, practiceId, logger: silentLogger, cipher, secrets: SECRET }, payload, header);
      outcomes.set(ack.outcome, (outcomes.get(ack.outcome) ?? 0) + 1);
    };
    const backendsStarted = engine === 'postgres' ? await backendCpu(db) : new Map<number, number>();
    const started = performance.now();
    const cpuStarted = process.cpuUsage();
    await inParallel(deliveries, deliver);
    const firstSeconds = (performance.now() - started) / 1000;
    const firstCpu = process.cpuUsage(cpuStarted);
    const backendMs = engine === 'postgres' ? (backendCpuSince(backendsStarted, await backendCpu(db)) ?? 0) : 0;
    await inParallel(deliveries, deliver);
    const seconds = (performance.now() - started) / 1000;
    const rate = all.length / seconds;
    // This process's CPU time per first delivery (PGlite runs in it; a server's backends do not) tells a change
    // apart from other load on the machine better than the rate does.
    const cpuMs = (firstCpu.user + firstCpu.system) / 1000 / deliveries.length;
    const backend = engine === 'postgres' ? ` and ${(backendMs / deliveries.length).toFixed(2)} ms of the server's backends` : '';
    const phases = `first deliveries ${(deliveries.length / firstSeconds).toFixed(0)}/s using ${cpuMs.toFixed(2)} ms of this process's CPU each${backend}, retries ${(deliveries.length / (seconds - firstSeconds)).toFixed(0)}/s`;
    const posted = outcomes.get('payment-posted') ?? 0;
    if (posted !== PAYMENTS || outcomes.get('duplicate') !== deliveries.length) throw new Error(`wrong outcomes: ${JSON.stringify([...outcomes])}`);
    const { rows: [entries] } = await db.pool.query<{ n: string }>("SELECT count(*)::text AS n FROM writeback_outbox WHERE kind = 'payment'");
    if (Number(entries!.n) !== PAYMENTS) throw new Error(`${entries!.n} payment write-backs for ${PAYMENTS} payments`);

    const stripe = new Stripe('sk_test_bench');
    const peerStarted = performance.now();
    for (const { payload, header } of all) stripe.webhooks.constructEvent(payload, header, SECRET, 86_400 * 365 * 10);
    const peer = all.length / ((performance.now() - peerStarted) / 1000);
    const where = engine === 'postgres' ? 'PostgreSQL server' : 'embedded PGlite';
    console.log(
      `stripe webhooks (${where}, ${all.length} deliveries: ${deliveries.length} events + as many retries, ${CONCURRENCY} in flight, signature + once-per-event + ledger + outbox): `
      + `${rate.toFixed(0)} events/s [${phases}] (${(rate / peer).toFixed(3)}x vs Stripe SDK constructEvent signature check alone at ${peer.toFixed(0)}/s; target ≥ 500/s)`,
    );
  } finally {
    await handle.drop();
  }
}

await run('pglite');
const serverUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL;
if (serverUrl) {
  process.env.TEST_DATABASE_URL = serverUrl;
  await run('postgres');
}
