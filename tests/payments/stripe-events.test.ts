import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type Stripe from 'stripe';
import { ManualClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { checkoutSessionParams, installmentChargeParams, refundParams } from '../../src/payments/checkout.ts';
import { commandForEvent, settleRefs, StripeEventError } from '../../src/payments/stripe-events.ts';
import { verifyStripeWebhook, type StripeEventEnvelope } from '../../src/payments/stripe-webhook.ts';
import { startStripeFake, type StripeFake } from '../support/stripe-fake/server.ts';
import { stripeSpecMissing } from '../support/stripe-fake/spec.ts';

describe('Stripe events → Settle commands (events produced by the Stripe fake, signed and verified)', { skip: stripeSpecMissing() }, () => {
  let fake: StripeFake;
  let stripe: Stripe;
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  const secret = 'whsec_events';
  /** Every event the fake queued, through signature verification, as the webhook route would see them. */
  const delivered = (): StripeEventEnvelope[] =>
    fake.events.map((event) => {
      const { payload, header } = fake.signEvent(event, Math.floor(clock.now().getTime() / 1000));
      return verifyStripeWebhook(payload, header, { secrets: secret, clock });
    });

  before(async () => {
    fake = await startStripeFake({ clock, webhookSecret: secret });
    stripe = fake.client();
  });
  after(() => fake.close());

  it('turns a plan checkout, an installment, a decline, a refund and a dispute into commands', async () => {
    const checkout = checkoutSessionParams({
      paymentId: 'pay_E1', guarantorId: 'gua_E1', amount: money(8_042, 'USD'), plan: { planId: 'plan_E1' },
      successUrl: 'https://pay.example-clinic.com/paid', cancelUrl: 'https://pay.example-clinic.com/cancelled',
    });
    const session = await stripe.checkout.sessions.create(checkout.params, { idempotencyKey: checkout.idempotencyKey });
    fake.completeCheckoutSession(session.id);

    const commands = delivered().map(commandForEvent);
    const completed = commands.find((c) => c.kind === 'checkout-completed');
    const succeeded = commands.find((c) => c.kind === 'payment-succeeded');
    assert.ok(completed && completed.kind === 'checkout-completed');
    assert.ok(succeeded && succeeded.kind === 'payment-succeeded');
    assert.deepEqual(completed.refs, { paymentId: 'pay_E1', guarantorId: 'gua_E1', planId: 'plan_E1' });
    assert.equal(completed.paid, true);
    assert.deepEqual(completed.amount, money(8_042, 'USD'));
    assert.equal(completed.checkoutSession, session.id);
    // Both events name the same Settle payment: the ledger posts it once, keyed by payment id.
    assert.equal(succeeded.refs.paymentId, completed.refs.paymentId);
    assert.equal(succeeded.paymentIntent, completed.paymentIntent);
    assert.deepEqual(succeeded.amount, money(8_042, 'USD'));
    assert.match(String(succeeded.paymentMethod), /^pm_/);
    assert.equal(succeeded.customer, completed.customer);

    fake.events.length = 0;
    const charge = (attempt: number) =>
      installmentChargeParams({
        paymentId: `pay_E1_2_${attempt}`, guarantorId: 'gua_E1', planId: 'plan_E1', installment: 2, attempt, amount: money(8_042, 'USD'),
        customer: String(succeeded.customer), paymentMethod: String(succeeded.paymentMethod),
      });
    fake.failNextPaymentIntents('authentication_required');
    await assert.rejects(stripe.paymentIntents.create(charge(1).params, { idempotencyKey: charge(1).idempotencyKey }));
    const second = await stripe.paymentIntents.create(charge(2).params, { idempotencyKey: charge(2).idempotencyKey });
    const [failed, paid] = delivered().map(commandForEvent);
    assert.deepEqual(failed, {
      kind: 'payment-failed', eventId: failed!.eventId, paymentIntent: (failed as { paymentIntent: string }).paymentIntent,
      refs: { paymentId: 'pay_E1_2_1', guarantorId: 'gua_E1', planId: 'plan_E1', installment: 2, attempt: 1 },
      code: 'authentication_required', declineCode: 'authentication_required',
    });
    assert.equal(paid!.kind, 'payment-succeeded');
    assert.deepEqual((paid as { refs: unknown }).refs, { paymentId: 'pay_E1_2_2', guarantorId: 'gua_E1', planId: 'plan_E1', installment: 2, attempt: 2 });

    fake.events.length = 0;
    const partial = refundParams({ refundId: 'ref_E1', paymentIntent: second.id, amount: money(2_000, 'USD') });
    await stripe.refunds.create(partial.params, { idempotencyKey: partial.idempotencyKey });
    const rest = refundParams({ refundId: 'ref_E2', paymentIntent: second.id });
    await stripe.refunds.create(rest.params, { idempotencyKey: rest.idempotencyKey });
    const refunds = delivered().map(commandForEvent);
    assert.deepEqual(refunds.map((c) => c.kind === 'refunded' && [c.amountRefunded.amount, c.fullyRefunded, c.paymentIntent === second.id]), [
      [2_000, false, true],
      [8_042, true, true],
    ]);

    fake.events.length = 0;
    const opened = fake.disputeCharge(String(second.latest_charge)) as { data: { object: { id: string } } };
    fake.closeDispute(opened.data.object.id, 'lost');
    const disputes = delivered().map(commandForEvent);
    assert.deepEqual(disputes.map((c) => c.kind === 'dispute-opened' || c.kind === 'dispute-closed' ? [c.kind, c.status, c.amount.amount, c.charge] : c.kind), [
      ['dispute-opened', 'needs_response', 8_042, second.latest_charge],
      ['dispute-closed', 'lost', 8_042, second.latest_charge],
    ]);
  });

  it('ignores what Settle did not create and event types it does not handle; refuses unreadable handled events', () => {
    const base = { id: 'evt_x', object: 'event' };
    assert.equal(commandForEvent({ ...base, type: 'payment_intent.succeeded', data: { object: { id: 'pi_1', amount: 100, currency: 'usd', metadata: {} } } }).kind, 'ignored');
    assert.equal(commandForEvent({ ...base, type: 'customer.created', data: { object: { id: 'cus_1' } } }).kind, 'ignored');
    assert.throws(
      () => commandForEvent({ ...base, type: 'payment_intent.succeeded', data: { object: { id: 'pi_1', currency: 'usd', metadata: { settle_payment_id: 'p' } } } }),
      StripeEventError,
    );
    assert.throws(() => commandForEvent({ ...base, type: 'charge.refunded' }), StripeEventError);
    assert.deepEqual(settleRefs({ settle_payment_id: 'p', settle_installment: 'x', other: 'y' }), { paymentId: 'p' });
    assert.deepEqual(settleRefs(null), {});
  });
});
