/**
 * The two PaymentGateways: StripeGateway (the official SDK) against the Stripe fake, which checks every request
 * against Stripe's OpenAPI document, and SandboxGateway, whose events go through the real webhook processing
 * into a real database.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ManualClock, systemClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { checkoutSessionParams, installmentChargeParams, refundParams } from '../../src/payments/checkout.ts';
import { SandboxGateway } from '../../src/payments/sandbox-gateway.ts';
import { StripeGateway } from '../../src/payments/stripe-gateway.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { startStripeFake, type StripeFake } from '../support/stripe-fake/server.ts';
import { stripeSpecMissing } from '../support/stripe-fake/spec.ts';
import { paymentRows, pendingPayment, seedHousehold, silentLogger } from './webhook-fixtures.ts';

const GUARANTOR = 'g_0001';

function charge(plan: string, attempt: number, paymentMethod: string) {
  return installmentChargeParams({
    paymentId: `pay_${plan}_${attempt}`, guarantorId: GUARANTOR, planId: plan, installment: 2, attempt, amount: money(5_000, 'USD'),
    customer: 'cus_test_1', paymentMethod,
  });
}

describe('StripeGateway against the Stripe fake', { skip: stripeSpecMissing() }, () => {
  let fake: StripeFake;
  let gateway: StripeGateway;
  before(async () => {
    fake = await startStripeFake();
    gateway = new StripeGateway('sk_test_settle_gateway', { host: '127.0.0.1', port: fake.port, protocol: 'http', maxNetworkRetries: 0 });
  });
  after(() => fake.close());

  test('a Checkout Session is created with Settle\'s idempotency key, and a double tap returns the same session', async () => {
    const request = checkoutSessionParams({
      paymentId: 'pay_checkout_1', guarantorId: GUARANTOR, amount: money(12_345, 'USD'),
      successUrl: 'http://127.0.0.1/paid?session={CHECKOUT_SESSION_ID}', cancelUrl: 'http://127.0.0.1/cancelled', plan: { planId: 'plan_1' },
    });
    const first = await gateway.createCheckoutSession(request);
    const second = await gateway.createCheckoutSession(request);
    assert.equal(second.id, first.id);
    assert.match(first.url, /^http:\/\/127\.0\.0\.1:\d+\/checkout\/cs_test_/);
    const posts = fake.requests.filter((r) => r.path === '/v1/checkout/sessions');
    assert.equal(posts.length, 2);
    assert.ok(posts.every((r) => r.valid && r.idempotencyKey === 'settle-checkout-pay_checkout_1'), 'valid against the spec, keyed by the payment id');
    assert.equal(posts[1]!.replayed, true);
    assert.equal((posts[0]!.params.payment_intent_data as Record<string, unknown>).setup_future_usage, 'off_session');
  });

  test('an off-session installment charge succeeds with the saved card', async () => {
    const result = await gateway.chargeInstallment(charge('plan_ok', 1, 'pm_card_visa'));
    assert.equal(result.status, 'succeeded');
    assert.ok(result.status === 'succeeded' && result.paymentIntentId.startsWith('pi_') && result.chargeId?.startsWith('ch_'));
    const sent = fake.requests.find((r) => r.idempotencyKey === 'settle-plan-plan_ok-i2-a1')!;
    assert.equal(sent.valid, true);
    assert.equal(sent.params.off_session, true);
    assert.equal(sent.params.confirm, true);
  });

  test('a declined card is a failed result with Stripe\'s codes, not an exception', async () => {
    const result = await gateway.chargeInstallment(charge('plan_declined', 1, 'pm_card_chargeDeclined'));
    assert.deepEqual(
      result.status === 'failed' && { code: result.code, declineCode: result.declineCode, transient: result.transient, intent: result.paymentIntentId?.startsWith('pi_') },
      { code: 'card_declined', declineCode: 'generic_decline', transient: false, intent: true },
    );
  });

  test('authentication_required is reported as such (the plan asks the patient to pay on-session)', async () => {
    const result = await gateway.chargeInstallment(charge('plan_sca', 1, 'pm_card_authenticationRequired'));
    assert.equal(result.status === 'failed' && result.code, 'authentication_required');
  });

  test('running the same attempt twice charges once (Stripe replays the answer); a retry is a new attempt', async () => {
    fake.failNextPaymentIntents('card_declined');
    const first = await gateway.chargeInstallment(charge('plan_retry', 1, 'pm_card_visa'));
    const replay = await gateway.chargeInstallment(charge('plan_retry', 1, 'pm_card_visa'));
    const retry = await gateway.chargeInstallment(charge('plan_retry', 2, 'pm_card_visa'));
    assert.equal(first.status, 'failed');
    assert.equal(replay.status, 'failed');
    assert.equal(retry.status, 'succeeded');
    const replayed = fake.requests.filter((r) => r.idempotencyKey === 'settle-plan-plan_retry-i2-a1').map((r) => r.replayed);
    assert.deepEqual(replayed, [false, true]);
  });

  test('Stripe out of reach is a transient failure (retry the same request later)', async () => {
    const closed = await startStripeFake();
    const port = closed.port;
    await closed.close();
    const offline = new StripeGateway('sk_test_settle_gateway', { host: '127.0.0.1', port, protocol: 'http', maxNetworkRetries: 0, timeoutMs: 2_000 });
    const result = await offline.chargeInstallment(charge('plan_offline', 1, 'pm_card_visa'));
    assert.equal(result.status === 'failed' && result.transient, true);
  });

  test('a wrong API key throws instead of looking like a decline', async () => {
    const fakeWithKeys = await startStripeFake({ apiKeys: ['sk_test_right'] });
    try {
      const wrong = new StripeGateway('sk_test_wrong', { host: '127.0.0.1', port: fakeWithKeys.port, protocol: 'http', maxNetworkRetries: 0 });
      await assert.rejects(wrong.chargeInstallment(charge('plan_key', 1, 'pm_card_visa')), /Invalid API Key/);
    } finally {
      await fakeWithKeys.close();
    }
    assert.throws(() => new StripeGateway('pk_test_publishable'), /secret key/);
  });

  test('a refund is requested with its idempotency key and lists among the balance transactions', async () => {
    const from = new Date(systemClock.now().getTime() - 60_000);
    const paid = await gateway.chargeInstallment(charge('plan_refund', 1, 'pm_card_visa'));
    assert.equal(paid.status, 'succeeded');
    const intent = paid.status === 'succeeded' ? paid.paymentIntentId : '';
    const refund = await gateway.refund(refundParams({ refundId: 'refund_1', paymentIntent: intent, amount: money(1_000, 'USD') }));
    assert.match(refund.id, /^re_/);
    assert.equal(refund.status, 'succeeded');
    const sent = fake.requests.find((r) => r.path === '/v1/refunds' && r.method === 'POST')!;
    assert.equal(sent.valid, true);
    assert.equal(sent.idempotencyKey, 'settle-refund-refund_1');
    const listed = [];
    for await (const bt of gateway.listBalanceTransactions({ from, to: new Date(systemClock.now().getTime() + 60_000) })) listed.push(bt);
    assert.ok(listed.some((bt) => bt.type === 'refund' && bt.amount === -1_000 && bt.source === refund.id));
    assert.ok(listed.some((bt) => bt.type === 'charge' && bt.amount === 5_000));
    assert.ok(fake.requests.filter((r) => r.path === '/v1/balance_transactions').every((r) => r.valid));
  });
});

describeOnEachDatabase('SandboxGateway: the same events through the same webhook processing', (db) => {
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  const deps = () => ({ db: db(), clock, logger: silentLogger, baseUrl: 'http://127.0.0.1:3000' });

  test('a sandbox checkout pays the balances: ledger entries and a write-back row, once however often it is pressed', async () => {
    const h = await seedHousehold(db(), clock, `sbx-${randomUUID().slice(0, 8)}`);
    const gateway = new SandboxGateway({ ...deps(), practiceId: h.practiceId });
    assert.equal(gateway.sandbox, true);
    const payment = await pendingPayment(db(), clock, h, money(12_000, 'USD'));
    const session = await gateway.createCheckoutSession(checkoutSessionParams({
      paymentId: payment.id, guarantorId: h.guarantorId, amount: payment.amount, successUrl: 'http://127.0.0.1:3000/paid', cancelUrl: 'http://127.0.0.1:3000/cancel',
    }));
    assert.match(session.url, /\/sandbox\/checkout\/cs_sandbox_/);
    const acks = await gateway.completeSession(session.id);
    assert.deepEqual(acks.map((a) => a.outcome), ['payment-posted', 'payment-already-posted']);
    assert.deepEqual(await gateway.completeSession(session.id), []);
    const rows = await paymentRows(db(), h.practiceId, payment.id);
    assert.equal(rows.entries.reduce((sum, e) => sum + e.effect, 0), -12_000);
    assert.deepEqual(rows.outbox.map((o) => [o.kind, o.amount]), [['payment', 12_000]]);
  });

  test('sandbox checkouts completed together are delivered in one transaction, each posted once', async () => {
    const h = await seedHousehold(db(), clock, `sbm-${randomUUID().slice(0, 8)}`);
    const gateway = new SandboxGateway({ ...deps(), practiceId: h.practiceId });
    const sessions = [];
    const payments = [];
    for (const amount of [4_000, 6_000]) {
      const payment = await pendingPayment(db(), clock, h, money(amount, 'USD'));
      payments.push(payment);
      sessions.push(await gateway.createCheckoutSession(checkoutSessionParams({
        paymentId: payment.id, guarantorId: h.guarantorId, amount: payment.amount, successUrl: 'http://127.0.0.1:3000/paid', cancelUrl: 'http://127.0.0.1:3000/cancel',
      })));
    }
    const ids = sessions.map((s) => s.id);
    const acks = await gateway.completeSessions([...ids, ids[0]!, 'cs_sandbox_unknown']);
    assert.deepEqual(acks.map((a) => a.outcome), ['payment-posted', 'payment-already-posted', 'payment-posted', 'payment-already-posted']);
    assert.deepEqual(await gateway.completeSessions(ids), [], 'completed sessions are forgotten');
    for (const [i, payment] of payments.entries()) {
      const rows = await paymentRows(db(), h.practiceId, payment.id);
      assert.deepEqual(rows.outbox.map((o) => [o.kind, o.amount]), [['payment', [4_000, 6_000][i]]]);
    }
  });

  test('a sandbox refund arrives as charge.refunded and posts the refund once', async () => {
    const h = await seedHousehold(db(), clock, `sbr-${randomUUID().slice(0, 8)}`);
    const gateway = new SandboxGateway({ ...deps(), practiceId: h.practiceId });
    const payment = await pendingPayment(db(), clock, h, money(3_000, 'USD'));
    const session = await gateway.createCheckoutSession(checkoutSessionParams({
      paymentId: payment.id, guarantorId: h.guarantorId, amount: payment.amount, successUrl: 'http://127.0.0.1:3000/paid', cancelUrl: 'http://127.0.0.1:3000/cancel',
    }));
    await gateway.completeSession(session.id);
    const { rows } = await db().pool.query<{ pi: string }>('SELECT stripe_payment_intent_id AS pi FROM payments WHERE id = $1', [payment.id]);
    const request = refundParams({ refundId: 'rf_sandbox_1', paymentIntent: rows[0]!.pi, amount: money(1_000, 'USD') });
    const refund = await gateway.refund(request);
    await gateway.refund(request); // the same request again: the same event id, handled once
    assert.match(refund.id, /^re_sandbox_/);
    const after = await paymentRows(db(), h.practiceId, payment.id);
    assert.deepEqual(after.outbox.map((o) => [o.kind, o.amount]), [['payment', 3_000], ['refund', 1_000]]);
  });

  test('a sandbox installment charge with a declining test card fails like Stripe\'s', async () => {
    const h = await seedHousehold(db(), clock, `sbd-${randomUUID().slice(0, 8)}`);
    const gateway = new SandboxGateway({ ...deps(), practiceId: h.practiceId });
    const payment = await pendingPayment(db(), clock, h, money(5_000, 'USD'));
    const request = installmentChargeParams({
      paymentId: payment.id, guarantorId: h.guarantorId, planId: 'plan_sbx', installment: 2, attempt: 1, amount: money(5_000, 'USD'),
      customer: 'cus_sandbox_1', paymentMethod: 'pm_card_chargeDeclined',
    });
    const result = await gateway.chargeInstallment(request);
    assert.equal(result.status === 'failed' && result.code, 'card_declined');
    const { rows } = await db().pool.query<{ status: string }>('SELECT status FROM payments WHERE id = $1', [payment.id]);
    assert.equal(rows[0]!.status, 'failed');
  });
});
