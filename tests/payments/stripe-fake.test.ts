import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Stripe from 'stripe';
import { ManualClock } from '../../src/domain/clock.ts';
import { verifyStripeWebhook } from '../../src/payments/stripe-webhook.ts';
import { startStripeFake, type StripeFake } from '../support/stripe-fake/server.ts';
import { matchOperation, paramName, validateParams, stripeSpecMissing } from '../support/stripe-fake/spec.ts';

const sessionParams = (): Stripe.Checkout.SessionCreateParams => ({
  mode: 'payment',
  success_url: 'https://pay.example-clinic.com/paid/{CHECKOUT_SESSION_ID}',
  cancel_url: 'https://pay.example-clinic.com/cancelled',
  line_items: [{ quantity: 1, price_data: { currency: 'usd', unit_amount: 48_250, product_data: { name: 'Account balance payment' } } }],
  payment_intent_data: { setup_future_usage: 'off_session', metadata: { settle_payment_id: 'pay_01' } },
  metadata: { settle_payment_id: 'pay_01', settle_guarantor_id: 'gua_01' },
});

async function stripeError(promise: Promise<unknown>): Promise<InstanceType<typeof Stripe.errors.StripeError>> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof Stripe.errors.StripeError, String(error));
    return error;
  }
  assert.fail('expected a Stripe error');
}

describe('Stripe fake: spec matching', { skip: stripeSpecMissing() }, () => {
  it('finds operations by method and path template, literal segments first', () => {
    assert.equal(matchOperation('POST', '/v1/checkout/sessions')?.operationId, 'PostCheckoutSessions');
    assert.deepEqual(matchOperation('GET', '/v1/checkout/sessions/cs_test_1')?.pathParams, { session: 'cs_test_1' });
    assert.equal(matchOperation('GET', '/v1/payment_intents/search')?.template, '/v1/payment_intents/search');
    assert.equal(matchOperation('GET', '/v1/payment_intents/pi_1')?.template, '/v1/payment_intents/{intent}');
    assert.equal(matchOperation('POST', '/v1/no_such_thing'), undefined);
    assert.equal(matchOperation('DELETE', '/v1/checkout/sessions'), undefined);
  });

  it('coerces form strings to the schema types and names nested params the Stripe way', () => {
    const op = matchOperation('POST', '/v1/payment_intents')!;
    const ok = validateParams(op, { amount: '2500', currency: 'usd', confirm: 'true', off_session: 'true' });
    assert.equal(ok.ok, true);
    assert.deepEqual(ok.params, { amount: 2500, currency: 'usd', confirm: true, off_session: true });
    const bad = validateParams(op, { amount: '25.00', currency: 'usd' });
    assert.equal(bad.error?.code, 'parameter_invalid_integer');
    assert.equal(bad.error?.param, 'amount');
    assert.equal(paramName('/line_items/0/price_data', 'bogus'), 'line_items[0][price_data][bogus]');
    const newer = validateParams(op, { amount: '1', currency: 'usd', brand_new_param: 'x' }, { 'POST /v1/payment_intents': ['brand_new_param'] });
    assert.equal(newer.ok, true);
    assert.deepEqual(newer.unvalidated, { brand_new_param: 'x' });
  });
});

describe('Stripe fake through the official SDK', { skip: stripeSpecMissing() }, () => {
  let fake: StripeFake;
  let stripe: Stripe;
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  before(async () => {
    fake = await startStripeFake({ clock, webhookSecret: 'whsec_fake' });
    stripe = fake.client();
  });
  after(() => fake.close());

  it('accepts a Checkout session for a balance with setup_future_usage and opaque metadata, and serves it back', async () => {
    const session = await stripe.checkout.sessions.create(sessionParams(), { idempotencyKey: 'settle-checkout-pay_01' });
    assert.match(session.id, /^cs_test_/);
    assert.equal(session.object, 'checkout.session');
    assert.equal(session.amount_total, 48_250);
    assert.equal(session.currency, 'usd');
    assert.equal(session.status, 'open');
    assert.equal(session.created, Math.floor(clock.now().getTime() / 1000));
    assert.deepEqual(session.metadata, { settle_payment_id: 'pay_01', settle_guarantor_id: 'gua_01' });
    assert.ok(session.url?.startsWith(fake.url));
    const request = fake.requests.at(-1)!;
    assert.equal(request.valid, true);
    assert.equal(request.operation, 'PostCheckoutSessions');
    assert.equal(request.idempotencyKey, 'settle-checkout-pay_01');
    assert.match(request.rawBody, /payment_intent_data\[setup_future_usage\]=off_session/);
    assert.deepEqual((request.params.payment_intent_data as Record<string, unknown>).setup_future_usage, 'off_session');
    assert.equal(((request.params.line_items as Record<string, Record<string, unknown>>[])[0]!.price_data!).unit_amount, 48_250, 'coerced to an integer');
    const again = await stripe.checkout.sessions.retrieve(session.id);
    assert.deepEqual(again, session);
  });

  it('replays an idempotent request with the identical session, and refuses the key with a different body', async () => {
    const first = await stripe.checkout.sessions.create(sessionParams(), { idempotencyKey: 'settle-checkout-pay_02' });
    const count = fake.objects.size;
    const second = await stripe.checkout.sessions.create(sessionParams(), { idempotencyKey: 'settle-checkout-pay_02' });
    assert.deepEqual(second, first);
    assert.equal(fake.objects.size, count, 'nothing new was created');
    assert.equal(fake.requests.at(-1)!.replayed, true);
    const changed = { ...sessionParams(), line_items: [{ quantity: 1, price_data: { currency: 'usd', unit_amount: 100, product_data: { name: 'x' } } }] };
    const error = await stripeError(stripe.checkout.sessions.create(changed, { idempotencyKey: 'settle-checkout-pay_02' }));
    assert.equal(error.type, 'StripeIdempotencyError');
    assert.equal(error.statusCode, 400);
    assert.match(error.message, /same parameters/);
  });

  it('rejects an unknown parameter and a wrong type with Stripe-shaped errors, and does not remember them', async () => {
    const unknown = await stripeError(
      stripe.checkout.sessions.create({ ...sessionParams(), patient_name: 'Ana' } as Stripe.Checkout.SessionCreateParams, { idempotencyKey: 'k-unknown' }),
    );
    assert.equal(unknown.type, 'StripeInvalidRequestError');
    assert.equal(unknown.statusCode, 400);
    assert.equal(unknown.code, 'parameter_unknown');
    assert.equal(unknown.param, 'patient_name');
    assert.equal(unknown.message, 'Received unknown parameter: patient_name');
    const nested = await stripeError(
      stripe.checkout.sessions.create({
        ...sessionParams(),
        line_items: [{ quantity: 1, price_data: { currency: 'usd', unit_amount: 100, product_data: { name: 'x' }, diagnosis: 'J45' } }],
      } as unknown as Stripe.Checkout.SessionCreateParams),
    );
    assert.equal(nested.param, 'line_items[0][price_data][diagnosis]');
    const wrongType = await stripeError(stripe.paymentIntents.create({ amount: 'ten' as unknown as number, currency: 'usd' }));
    assert.equal(wrongType.code, 'parameter_invalid_integer');
    assert.equal(wrongType.param, 'amount');
    const badEnum = await stripeError(
      stripe.checkout.sessions.create({ ...sessionParams(), payment_intent_data: { setup_future_usage: 'forever' as 'off_session' } }),
    );
    assert.equal(badEnum.param, 'payment_intent_data[setup_future_usage]');
    // In the 2023 document, but removed from the API version the SDK pins (sent as Stripe-Version).
    const removed = await stripeError(
      stripe.checkout.sessions.create({ ...sessionParams(), payment_method_types: ['card'] } as unknown as Stripe.Checkout.SessionCreateParams),
    );
    assert.equal(removed.code, 'parameter_unknown');
    assert.equal(removed.param, 'payment_method_types');
    const missingParam = await stripeError(stripe.paymentIntents.create({ currency: 'usd' } as Stripe.PaymentIntentCreateParams));
    assert.equal(missingParam.code, 'parameter_missing');
    const tooLong = await stripeError(stripe.checkout.sessions.create({ ...sessionParams(), metadata: { note: 'x'.repeat(501) } }));
    assert.equal(tooLong.param, 'metadata[note]');
    assert.ok(fake.requests.filter((r) => r.status === 400).every((r) => r.valid === false || r.response !== undefined));
    // The same key with a now-valid body is fine: validation failures are not remembered.
    const ok = await stripe.checkout.sessions.create(sessionParams(), { idempotencyKey: 'k-unknown' });
    assert.match(ok.id, /^cs_test_/);
  });

  it('answers unknown paths with 404, missing objects with resource_missing, and bad keys with 401', async () => {
    const missingSession = await stripeError(stripe.checkout.sessions.retrieve('cs_test_nope'));
    assert.equal(missingSession.statusCode, 404);
    assert.equal(missingSession.code, 'resource_missing');
    const badKey = await stripeError(fake.client('sk_live_nope').checkout.sessions.retrieve('cs_test_x'));
    assert.equal(badKey.statusCode, 401);
    const response = await fetch(`${fake.url}/v1/made_up`, { headers: { authorization: 'Bearer sk_test_x' } });
    assert.equal(response.status, 404);
    assert.equal(((await response.json()) as { error: { type: string } }).error.type, 'invalid_request_error');
  });

  it('charges a saved card off-session, declines the test cards, refunds, and lists balance transactions', async () => {
    const session = await stripe.checkout.sessions.create(sessionParams(), { idempotencyKey: 'settle-checkout-pay_03' });
    const completed = fake.completeCheckoutSession(session.id) as { type: string; data: { object: Stripe.Checkout.Session } };
    assert.equal(completed.type, 'checkout.session.completed');
    const paid = await stripe.checkout.sessions.retrieve(session.id);
    assert.equal(paid.status, 'complete');
    assert.equal(paid.payment_status, 'paid');
    assert.match(String(paid.customer), /^cus_/);
    const firstIntent = await stripe.paymentIntents.retrieve(String(paid.payment_intent));
    assert.equal(firstIntent.status, 'succeeded');
    assert.equal(firstIntent.setup_future_usage, 'off_session');
    const savedMethod = String(firstIntent.payment_method);

    const installment = await stripe.paymentIntents.create(
      { amount: 9650, currency: 'usd', customer: String(paid.customer), payment_method: savedMethod, off_session: true, confirm: true, metadata: { settle_plan_id: 'plan_1' } },
      { idempotencyKey: 'settle-plan-plan_1-i2-a1' },
    );
    assert.equal(installment.status, 'succeeded');
    assert.equal(installment.amount_received, 9650);
    const replay = await stripe.paymentIntents.create(
      { amount: 9650, currency: 'usd', customer: String(paid.customer), payment_method: savedMethod, off_session: true, confirm: true, metadata: { settle_plan_id: 'plan_1' } },
      { idempotencyKey: 'settle-plan-plan_1-i2-a1' },
    );
    assert.equal(replay.id, installment.id, 'the installment is charged once');

    const declined = await stripeError(stripe.paymentIntents.create({ amount: 9650, currency: 'usd', customer: String(paid.customer), payment_method: 'pm_card_chargeDeclined', off_session: true, confirm: true }));
    assert.equal(declined.type, 'StripeCardError');
    assert.equal(declined.statusCode, 402);
    assert.equal(declined.code, 'card_declined');
    assert.equal(declined.decline_code, 'generic_decline');
    assert.equal(declined.payment_intent?.status, 'requires_payment_method');
    fake.failNextPaymentIntents('authentication_required');
    const auth = await stripeError(stripe.paymentIntents.create({ amount: 9650, currency: 'usd', customer: String(paid.customer), payment_method: savedMethod, off_session: true, confirm: true }));
    assert.equal(auth.code, 'authentication_required');

    const refund = await stripe.refunds.create({ payment_intent: installment.id, amount: 1000 }, { idempotencyKey: 'settle-refund-ref_1' });
    assert.equal(refund.status, 'succeeded');
    assert.equal(refund.amount, 1000);
    const tooMuch = await stripeError(stripe.refunds.create({ payment_intent: installment.id, amount: 9000 }));
    assert.equal(tooMuch.code, 'amount_too_large');

    const transactions = await stripe.balanceTransactions.list({ limit: 100, created: { gte: Math.floor(clock.now().getTime() / 1000) } });
    const byType = transactions.data.map((t) => [t.type, t.amount]);
    assert.deepEqual(byType.slice(0, 3), [['refund', -1000], ['charge', 9650], ['charge', 48_250]]);
    for (const t of transactions.data) assert.equal(t.net, t.amount - t.fee);
    const onlyRefunds = await stripe.balanceTransactions.list({ type: 'refund' });
    assert.ok(onlyRefunds.data.every((t) => t.type === 'refund'));
    const paged = await stripe.balanceTransactions.list({ limit: 1 });
    assert.equal(paged.data.length, 1);
    assert.equal(paged.has_more, true);
  });

  it('queues events a webhook endpoint can verify', () => {
    const event = fake.events.find((e) => e.type === 'checkout.session.completed')!;
    const { payload, header } = fake.signEvent(event, Math.floor(clock.now().getTime() / 1000));
    const verified = verifyStripeWebhook(payload, header, { secrets: 'whsec_fake', clock });
    assert.equal(verified.id, event.id);
    assert.equal((verified.data?.object as { metadata: Record<string, string> }).metadata.settle_payment_id, 'pay_01');
  });
});
