import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type Stripe from 'stripe';
import { ManualClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { assertOpaqueId, checkoutSessionParams, CheckoutParamsError, installmentChargeParams, refundParams } from '../../src/payments/checkout.ts';
import { offeredPlans, planSchedule } from '../../src/domain/payment-plan.ts';
import { startStripeFake, type StripeFake } from '../support/stripe-fake/server.ts';
import { stripeSpecMissing } from '../support/stripe-fake/spec.ts';

/** A guarantor as Settle holds it: everything here except the id is PHI that Stripe must never see. */
const guarantor = {
  id: 'gua_5Jk2q9',
  firstName: 'Guadalupe',
  lastName: 'Ortiz-Whitfield',
  email: 'lupe.ortiz@example.org',
  phone: '+1 617 555 0143',
  phoneDigits: '6175550143',
  birthDate: '1984-03-07',
  birthDateUs: '03/07/1984',
  address: '42 Wallaby Way',
  zip: '02139',
  mrn: 'MRN884213',
  diagnosis: 'J45.909',
};

const PHI = [
  guarantor.firstName, guarantor.lastName, guarantor.email, guarantor.phone, guarantor.phoneDigits, guarantor.birthDate, guarantor.birthDateUs,
  guarantor.address, guarantor.mrn, guarantor.diagnosis, 'Ortiz', 'Whitfield', 'asthma',
];

function assertNoPhi(text: string, where: string): void {
  const decoded = (() => {
    try {
      return decodeURIComponent(text.replace(/\+/g, ' '));
    } catch {
      return text;
    }
  })();
  for (const value of PHI) {
    for (const haystack of [text, decoded]) {
      assert.ok(!haystack.toLowerCase().includes(value.toLowerCase()), `${where} contains PHI (${value.slice(0, 3)}…)`);
    }
  }
}

describe('checkout parameters', () => {
  it('has a PHI detector that notices plain and form-encoded leaks (control)', () => {
    assert.throws(() => assertNoPhi('customer_email=lupe.ortiz%40example.org', 'control'), /PHI/);
    assert.throws(() => assertNoPhi('metadata[name]=Guadalupe+Ortiz-Whitfield', 'control'), /PHI/);
    assert.throws(() => assertNoPhi('metadata[dob]=03%2F07%2F1984', 'control'), /PHI/);
    assert.doesNotThrow(() => assertNoPhi('metadata[settle_guarantor_id]=gua_5Jk2q9', 'control'));
  });

  it('pay in full: one generic line item, opaque ids, key from the payment id', () => {
    const { params, idempotencyKey } = checkoutSessionParams({
      paymentId: 'pay_A1',
      guarantorId: guarantor.id,
      amount: money(48_250, 'USD'),
      successUrl: 'https://pay.example-clinic.com/paid/{CHECKOUT_SESSION_ID}',
      cancelUrl: 'https://pay.example-clinic.com/cancelled',
    });
    assert.equal(idempotencyKey, 'settle-checkout-pay_A1');
    assert.equal(params.mode, 'payment');
    assert.equal(params.client_reference_id, 'pay_A1');
    assert.deepEqual(params.line_items, [{ quantity: 1, price_data: { currency: 'usd', unit_amount: 48_250, product_data: { name: 'Account balance payment' } } }]);
    assert.deepEqual(params.metadata, { settle_payment_id: 'pay_A1', settle_guarantor_id: guarantor.id });
    assert.deepEqual(params.payment_intent_data, { metadata: { settle_payment_id: 'pay_A1', settle_guarantor_id: guarantor.id } });
    assert.equal(params.customer_creation, undefined);
  });

  it('plan: saves the card off-session and says so in Spanish when asked', () => {
    const { params } = checkoutSessionParams({
      paymentId: 'pay_A2',
      guarantorId: guarantor.id,
      amount: money(8_042, 'USD'),
      successUrl: 'https://pay.example-clinic.com/paid',
      cancelUrl: 'https://pay.example-clinic.com/cancelled',
      plan: { planId: 'plan_Z9' },
      locale: 'es',
      expiresAt: new Date('2026-03-02T16:00:00Z'),
    });
    assert.equal(params.payment_intent_data?.setup_future_usage, 'off_session');
    assert.equal(params.customer_creation, 'always');
    assert.equal(params.locale, 'es');
    assert.equal(params.line_items?.[0]?.price_data?.product_data?.name, 'Plan de pagos: primera cuota');
    assert.equal(params.metadata?.settle_plan_id, 'plan_Z9');
    assert.equal(params.expires_at, Date.parse('2026-03-02T16:00:00Z') / 1000);
  });

  it('refuses ids that are not opaque, bad amounts and non-https URLs', () => {
    const base = { paymentId: 'pay_1', guarantorId: 'gua_1', amount: money(100, 'USD'), successUrl: 'https://a.example/ok', cancelUrl: 'https://a.example/no' };
    for (const bad of ['Guadalupe Ortiz', 'lupe@example.org', '+16175550143', '', 'x'.repeat(65), '1984-03-07/x']) {
      assert.throws(() => checkoutSessionParams({ ...base, guarantorId: bad }), { code: 'not-opaque' });
    }
    assert.throws(() => checkoutSessionParams({ ...base, amount: { amount: 10.5, currency: 'USD' } }), { code: 'invalid-amount' });
    assert.throws(() => checkoutSessionParams({ ...base, amount: money(0, 'USD') }), { code: 'invalid-amount' });
    assert.throws(() => checkoutSessionParams({ ...base, successUrl: 'http://pay.example/ok' }), { code: 'invalid-url' });
    assert.throws(() => checkoutSessionParams({ ...base, cancelUrl: '/relative' }), { code: 'invalid-url' });
    assert.doesNotThrow(() => checkoutSessionParams({ ...base, successUrl: 'http://127.0.0.1:8080/ok' }));
    assert.throws(() => installmentChargeParams({ paymentId: 'p', guarantorId: 'g', planId: 'pl', installment: 0, attempt: 1, amount: money(1, 'USD'), customer: 'cus_1', paymentMethod: 'pm_1' }), CheckoutParamsError);
    fc.assert(fc.property(fc.string(), (id) => {
      try {
        assertOpaqueId('id', id);
        assert.match(id, /^[A-Za-z0-9_-]{1,64}$/);
      } catch (error) {
        assert.ok(error instanceof CheckoutParamsError);
      }
    }));
  });

  it('keys each installment attempt and each refund separately', () => {
    const charge = (attempt: number) => installmentChargeParams({
      paymentId: `pay_i2a${attempt}`, guarantorId: 'gua_1', planId: 'plan_1', installment: 2, attempt, amount: money(2_500, 'USD'), customer: 'cus_1', paymentMethod: 'pm_1',
    });
    assert.equal(charge(1).idempotencyKey, 'settle-plan-plan_1-i2-a1');
    assert.equal(charge(2).idempotencyKey, 'settle-plan-plan_1-i2-a2');
    assert.equal(charge(1).params.off_session, true);
    assert.equal(charge(1).params.confirm, true);
    assert.equal(refundParams({ refundId: 'ref_1', paymentIntent: 'pi_1' }).idempotencyKey, 'settle-refund-ref_1');
    assert.deepEqual(refundParams({ refundId: 'ref_1', paymentIntent: 'pi_1', amount: money(500, 'USD'), reason: 'duplicate' }).params, {
      payment_intent: 'pi_1', amount: 500, reason: 'duplicate', metadata: { settle_refund_id: 'ref_1' },
    });
  });
});

describe('checkout through the Stripe fake', { skip: stripeSpecMissing() }, () => {
  let fake: StripeFake;
  let stripe: Stripe;
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  before(async () => {
    fake = await startStripeFake({ clock });
    stripe = fake.client();
  });
  after(() => fake.close());

  it('runs a plan end to end (checkout, installments, a decline, a refund) and Stripe never receives PHI', async () => {
    const balanceCents = 48_250;
    const offer = offeredPlans(balanceCents, { minimumInstallmentCents: 2_500, maximumMonths: 12 }).find((o) => o.months === 6)!;
    const schedule = planSchedule({ balanceCents, months: offer.months, startDate: '2026-03-02' });

    const checkout = checkoutSessionParams({
      paymentId: 'pay_P1',
      guarantorId: guarantor.id,
      amount: money(schedule[0]!.amountCents, 'USD'),
      successUrl: 'https://pay.example-clinic.com/paid/{CHECKOUT_SESSION_ID}',
      cancelUrl: 'https://pay.example-clinic.com/cancelled',
      plan: { planId: 'plan_P1' },
    });
    const session = await stripe.checkout.sessions.create(checkout.params, { idempotencyKey: checkout.idempotencyKey });
    const replayed = await stripe.checkout.sessions.create(checkout.params, { idempotencyKey: checkout.idempotencyKey });
    assert.deepEqual(replayed, session);
    assert.equal(session.amount_total, schedule[0]!.amountCents);
    fake.completeCheckoutSession(session.id);
    const paid = await stripe.checkout.sessions.retrieve(session.id);
    const first = await stripe.paymentIntents.retrieve(String(paid.payment_intent));
    assert.equal(first.metadata.settle_plan_id, 'plan_P1');

    for (const installment of schedule.slice(1, 3)) {
      const { params, idempotencyKey } = installmentChargeParams({
        paymentId: `pay_P1_${installment.number}`, guarantorId: guarantor.id, planId: 'plan_P1', installment: installment.number, attempt: 1,
        amount: money(installment.amountCents, 'USD'), customer: String(paid.customer), paymentMethod: String(first.payment_method),
      });
      const intent = await stripe.paymentIntents.create(params, { idempotencyKey });
      assert.equal(intent.status, 'succeeded');
    }
    fake.failNextPaymentIntents('card_declined');
    const declined = installmentChargeParams({
      paymentId: 'pay_P1_4', guarantorId: guarantor.id, planId: 'plan_P1', installment: 4, attempt: 1,
      amount: money(schedule[3]!.amountCents, 'USD'), customer: String(paid.customer), paymentMethod: String(first.payment_method),
    });
    await assert.rejects(stripe.paymentIntents.create(declined.params, { idempotencyKey: declined.idempotencyKey }), { code: 'card_declined' });
    const retry = installmentChargeParams({
      paymentId: 'pay_P1_4b', guarantorId: guarantor.id, planId: 'plan_P1', installment: 4, attempt: 2,
      amount: money(schedule[3]!.amountCents, 'USD'), customer: String(paid.customer), paymentMethod: String(first.payment_method),
    });
    assert.equal((await stripe.paymentIntents.create(retry.params, { idempotencyKey: retry.idempotencyKey })).status, 'succeeded');
    const refund = refundParams({ refundId: 'ref_P1', paymentIntent: first.id, amount: money(1_000, 'USD') });
    await stripe.refunds.create(refund.params, { idempotencyKey: refund.idempotencyKey });
    const transactions = await stripe.balanceTransactions.list({ limit: 100 });
    const net = transactions.data.reduce((sum, t) => sum + t.amount, 0);
    assert.equal(net, schedule.slice(0, 4).reduce((s, i) => s + i.amountCents, 0) - 1_000);

    // Every request Settle's builders produced was valid against Stripe's spec…
    const sent = fake.requests;
    assert.ok(sent.length >= 9);
    for (const request of sent) assert.equal(request.valid, true, `${request.method} ${request.path}: ${request.validationError?.message ?? ''}`);
    // …and nothing in any of them (body, query, headers, idempotency keys) carries PHI.
    for (const request of sent) {
      assertNoPhi(request.rawBody, `${request.method} ${request.path} body`);
      assertNoPhi(request.rawQuery, `${request.method} ${request.path} query`);
      assertNoPhi(JSON.stringify(request.headers), `${request.method} ${request.path} headers`);
    }
  });
});
