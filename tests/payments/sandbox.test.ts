import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { checkoutSessionParams, installmentChargeParams } from '../../src/payments/checkout.ts';
import { completeSandboxSession, createSandboxSession, sandboxCharge, SandboxError, signSandboxEvent, SANDBOX_WEBHOOK_SECRET } from '../../src/payments/sandbox.ts';
import { commandForEvent, type StripeEventCommand } from '../../src/payments/stripe-events.ts';
import { verifyStripeWebhook, type StripeEventEnvelope } from '../../src/payments/stripe-webhook.ts';
import { startStripeFake, type StripeFake } from '../support/stripe-fake/server.ts';
import { stripeSpecMissing } from '../support/stripe-fake/spec.ts';

const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
const request = checkoutSessionParams({
  paymentId: 'pay_S1', guarantorId: 'gua_S1', amount: money(8_045, 'USD'), plan: { planId: 'plan_S1' },
  successUrl: 'https://pay.example-clinic.com/paid', cancelUrl: 'https://pay.example-clinic.com/cancelled',
});
/** Through the same verifier and the same event → command mapping as real webhooks. */
const handle = (events: readonly StripeEventEnvelope[]) =>
  events.map((e) => {
    const { payload, header } = signSandboxEvent(e, { clock });
    return commandForEvent(verifyStripeWebhook(payload, header, { secrets: SANDBOX_WEBHOOK_SECRET, clock }));
  });
/** The parts of a command that do not depend on which Stripe produced it. */
const shape = (c: StripeEventCommand) => {
  const { kind } = c;
  if (kind === 'checkout-completed') return { kind, refs: c.refs, paid: c.paid, amount: c.amount, customer: !!c.customer };
  if (kind === 'payment-succeeded') return { kind, refs: c.refs, amount: c.amount, customer: !!c.customer, paymentMethod: !!c.paymentMethod };
  if (kind === 'payment-failed') return { kind, refs: c.refs, code: c.code };
  return { kind };
};

describe('sandbox payments', { skip: stripeSpecMissing() }, () => {
  let fake: StripeFake;
  before(async () => {
    fake = await startStripeFake({ clock });
  });
  after(() => fake.close());

  it('makes a labelled, deterministic session from the same parameters as Stripe Checkout', () => {
    const session = createSandboxSession(request, { clock, baseUrl: 'http://localhost:3000/' });
    assert.match(session.id, /^cs_sandbox_/);
    assert.equal(session.livemode, false);
    assert.equal(session.amount_total, 8_045);
    assert.equal(session.url, `http://localhost:3000/sandbox/checkout/${session.id}`);
    assert.deepEqual(createSandboxSession(request, { clock, baseUrl: 'http://localhost:3000' }).id, session.id, 'same idempotency key, same session');
    const other = checkoutSessionParams({ ...{ paymentId: 'pay_S2', guarantorId: 'gua_S1', amount: money(1, 'USD') }, successUrl: 'https://a.example/ok', cancelUrl: 'https://a.example/no' });
    assert.notEqual(createSandboxSession(other, { clock, baseUrl: 'http://localhost:3000' }).id, session.id);
  });

  it('produces the same commands as the Stripe fake does for the same checkout', async () => {
    const sandboxEvents = completeSandboxSession(createSandboxSession(request, { clock, baseUrl: 'http://localhost:3000' }), { clock });
    const fromSandbox = handle(sandboxEvents).map(shape);
    const stripe = fake.client();
    const session = await stripe.checkout.sessions.create(request.params, { idempotencyKey: request.idempotencyKey });
    fake.completeCheckoutSession(session.id);
    const fromFake = fake.events.map((e) => commandForEvent(e as unknown as StripeEventEnvelope)).map(shape);
    assert.deepEqual(fromSandbox, fromFake);
    assert.deepEqual(fromSandbox.map((c) => c.kind), ['payment-succeeded', 'checkout-completed']);
    // Replaying the page gives the same event ids: the handler's once-per-event rule holds.
    const again = completeSandboxSession(createSandboxSession(request, { clock, baseUrl: 'http://localhost:3000' }), { clock });
    assert.deepEqual(again.map((e) => e.id), sandboxEvents.map((e) => e.id));
  });

  it('declines test outcomes like Stripe: failure events, no completion', () => {
    const session = createSandboxSession(request, { clock, baseUrl: 'http://localhost:3000' });
    const declined = handle(completeSandboxSession(session, { clock, outcome: 'card_declined' }));
    assert.deepEqual(declined.map(shape), [{ kind: 'payment-failed', refs: { paymentId: 'pay_S1', guarantorId: 'gua_S1', planId: 'plan_S1' }, code: 'card_declined' }]);
  });

  it('charges installments off-session, and declines with a Stripe-shaped error carrying the failure event', () => {
    const charge = installmentChargeParams({
      paymentId: 'pay_S1_2', guarantorId: 'gua_S1', planId: 'plan_S1', installment: 2, attempt: 1, amount: money(8_041, 'USD'), customer: 'cus_sandbox_x', paymentMethod: 'pm_sandbox_x',
    });
    const ok = sandboxCharge(charge, { clock });
    assert.equal(ok.paymentIntent.status, 'succeeded');
    const [command] = handle(ok.events);
    assert.equal(command!.kind, 'payment-succeeded');
    assert.deepEqual((command as { refs: unknown }).refs, { paymentId: 'pay_S1_2', guarantorId: 'gua_S1', planId: 'plan_S1', installment: 2, attempt: 1 });
    try {
      sandboxCharge(charge, { clock, outcome: 'authentication_required' });
      assert.fail('expected a decline');
    } catch (error) {
      assert.ok(error instanceof SandboxError);
      assert.equal(error.code, 'authentication_required');
      assert.equal(handle(error.events)[0]!.kind, 'payment-failed');
    }
  });
});
