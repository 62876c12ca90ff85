/**
 * Daily reconciliation as a real Agenda job over a real database and the Stripe fake's balance transactions:
 * a matched refund, a charge Stripe recorded for a different amount, a charge Settle never saw, and a refund
 * whose write-back has not reached the EHR are all listed; the stored report is what the API and CLI show.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { checkoutSessionParams } from '../../src/payments/checkout.ts';
import { dayWindow, RECONCILE_JOB, reconcileDay, reconcileJob, storedReconciliation } from '../../src/payments/reconcile-job.ts';
import { formatReconciliation } from '../../src/payments/refund-cli.ts';
import { startRefund } from '../../src/payments/refund-service.ts';
import { SandboxGateway } from '../../src/payments/sandbox-gateway.ts';
import { StripeGateway } from '../../src/payments/stripe-gateway.ts';
import { processStripeWebhook } from '../../src/payments/webhook-route.ts';
import { JobRegistry, Scheduler } from '../../src/scheduler/scheduler.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { startStripeFake, type StripeFake } from '../support/stripe-fake/server.ts';
import { stripeSpecMissing } from '../support/stripe-fake/spec.ts';
import { cipher, pendingPayment, seedHousehold, silentLogger } from './webhook-fixtures.ts';

const SECRET = 'whsec_reconcile_test';

describeOnEachDatabase('Daily reconciliation', (db) => {
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  let fake: StripeFake;
  let gateway: StripeGateway;
  before(async () => {
    fake = await startStripeFake({ clock, webhookSecret: SECRET });
    gateway = new StripeGateway('sk_test_reconcile', { host: '127.0.0.1', port: fake.port, protocol: 'http', maxNetworkRetries: 0 });
  });
  after(() => fake.close());

  test('the job lists every mismatch planted in Stripe and in the write-backs, and matches the rest', async () => {
    const h = await seedHousehold(db(), clock, `recon-${randomUUID().slice(0, 8)}`);
    const deliver = async (from: number) => {
      for (const event of fake.events.slice(from)) {
        const { payload, header } = fake.signEvent(event);
        await processStripeWebhook({ db: db(), clock, practiceId: h.practiceId, logger: silentLogger, cipher, secrets: SECRET }, Buffer.from(payload), header);
      }
    };
    // Two card payments and a refund of the second, all on 2 March (New York).
    const paid: string[] = [];
    for (const cents of [12_000, 3_000]) {
      const payment = await pendingPayment(db(), clock, h, money(cents, 'USD'));
      const session = await gateway.createCheckoutSession(checkoutSessionParams({
        paymentId: payment.id, guarantorId: h.guarantorId, amount: payment.amount, successUrl: 'http://127.0.0.1/paid', cancelUrl: 'http://127.0.0.1/cancel',
      }));
      const seen = fake.events.length;
      fake.completeCheckoutSession(session.id);
      await deliver(seen);
      paid.push(payment.id);
    }
    const seen = fake.events.length;
    const refund = await startRefund({ db: db(), clock, gateway }, { practiceId: h.practiceId, paymentId: paid[1]!, amount: money(1_000, 'USD'), requestedBy: 'test' });
    await deliver(seen);
    // The EHR took the payments' write-backs; the refund's is still waiting.
    await db().pool.query("UPDATE writeback_outbox SET status = 'delivered', delivered_at = $2 WHERE practice_id = $1 AND kind = 'payment'", [h.practiceId, clock.now()]);
    // Planted at Stripe: the first payment's charge settled for $119.00, and a charge Settle never saw.
    const { rows } = await db().pool.query<{ charge: string }>('SELECT stripe_charge_id AS charge FROM payments WHERE id = $1', [paid[0]]);
    const bt = [...fake.objects.values()].find((o) => o.object === 'balance_transaction' && o.source === rows[0]!.charge)!;
    bt.amount = 11_900;
    fake.objects.set('txn_planted', { id: 'txn_planted', object: 'balance_transaction', type: 'charge', amount: 999, currency: 'usd', source: 'ch_planted', created: Math.floor(clock.now().getTime() / 1000) });

    clock.set(new Date('2026-03-03T11:00:00Z'));
    const registry = new JobRegistry();
    registry.register({ ...reconcileJob({ db: db(), clock, logger: silentLogger, gatewayFor: async () => gateway }), lockLifetimeMs: 4_000 });
    const scheduler = new Scheduler({ db: db(), registry, name: 'recon-test', concurrency: 1, pollIntervalMs: 100 });
    const finished = new Promise<Error | undefined>((resolve) => scheduler.onOutcome((o) => resolve(o.error)));
    await scheduler.start();
    await scheduler.now(RECONCILE_JOB, {}); // yesterday, in each practice's time zone
    assert.equal(await finished, undefined);
    await scheduler.stop(2_000);

    const report = (await storedReconciliation(db(), h.practiceId, '2026-03-02'))!;
    assert.ok(report, 'the job stored the report of the day before');
    assert.equal(report.movements, 3);
    assert.equal(report.matched, 2, 'the second payment and the refund match Stripe');
    assert.deepEqual(report.mismatches.map((m) => m.kind).sort(), ['amount-mismatch', 'not-in-settle', 'writeback-late']);
    assert.deepEqual(report.mismatches.find((m) => m.kind === 'amount-mismatch'), { kind: 'amount-mismatch', movement: paid[0], balanceTransaction: bt.id, settleCents: 12_000, stripeCents: 11_900 });
    assert.deepEqual(report.mismatches.find((m) => m.kind === 'not-in-settle'), { kind: 'not-in-settle', balanceTransaction: 'txn_planted', stripeSource: 'ch_planted', amount: 999 });
    assert.deepEqual(report.mismatches.find((m) => m.kind === 'writeback-late'), { kind: 'writeback-late', movement: refund.id });
    const text = formatReconciliation(report);
    assert.match(text, /matched 2, mismatches 3/);
    assert.match(text, /not-in-settle: .*balanceTransaction=txn_planted/);
    assert.match(text, /not-in-settle: .*stripeSource=ch_planted/);
    assert.ok(fake.requests.filter((r) => r.path === '/v1/balance_transactions').every((r) => r.valid));
  });

  test('a sandbox day checks write-backs only, and a malformed date is refused', async () => {
    const h = await seedHousehold(db(), clock, `recon-sbx-${randomUUID().slice(0, 8)}`);
    const sandbox = new SandboxGateway({ db: db(), clock, practiceId: h.practiceId, logger: silentLogger, baseUrl: 'http://127.0.0.1:3000' });
    const report = await reconcileDay({ db: db(), clock, logger: silentLogger, gatewayFor: async () => sandbox }, { practiceId: h.practiceId, date: '2026-03-03' });
    assert.deepEqual([report.sandbox, report.movements, report.mismatches.length], [true, 0, 0]);
    assert.throws(() => dayWindow('2026-02-30', 'America/New_York'), /not a date/);
    assert.deepEqual(dayWindow('2026-03-08', 'America/New_York'), { from: new Date('2026-03-08T05:00:00Z'), to: new Date('2026-03-09T04:00:00Z') });
  });
}, { skip: stripeSpecMissing() });
