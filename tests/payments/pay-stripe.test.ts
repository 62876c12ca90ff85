/**
 * The pay page with a Stripe key: real Checkout through the official SDK, against the Stripe fake (which checks
 * every request against Stripe's published OpenAPI document), then Stripe's own signed webhook back to Settle.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { PaymentRepository } from '../../src/store/payments.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { startStripeFake, type StripeFake } from '../support/stripe-fake/server.ts';
import { stripeSpecMissing } from '../support/stripe-fake/spec.ts';
import { withoutIds } from '../support/phi.ts';
import { cipher, csrfOf, seedPayHousehold, startPayApp, TEST_WEBHOOK_SECRET, verified, Visitor, type PayApp, type PayHousehold } from './pay-fixtures.ts';
import { paymentRows } from './webhook-fixtures.ts';

const specMissing = stripeSpecMissing();

describeOnEachDatabase('the pay page with Stripe Checkout', (db) => {
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  let app: PayApp;
  let stripe: StripeFake;
  let dir = '';
  /** The webhook endpoint serves this practice: the household pays within it. */
  let household: PayHousehold;

  before(async () => {
    if (specMissing) return;
    dir = await mkdtemp(join(tmpdir(), 'settle-paystripe-'));
    stripe = await startStripeFake({ clock, webhookSecret: TEST_WEBHOOK_SECRET });
    household = await seedPayHousehold(db(), clock, 'pay-stripe');
    app = await startPayApp(db(), clock, 'pay-stripe', dir, {
      secretKey: 'sk_test_pay_page', options: { host: '127.0.0.1', port: stripe.port, protocol: 'http', maxNetworkRetries: 0 },
    });
  });
  after(async () => {
    await app?.close();
    await stripe?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('sends the patient to Stripe Checkout with opaque ids only, and posts the payment once from Stripe\'s webhook', { skip: specMissing }, async () => {
    const link = await app.link(household);
    const visitor = new Visitor();
    const page = await verified(visitor, link);
    assert.doesNotMatch(page, /Sandbox/, 'no sandbox label once a Stripe key is set');
    const chosen = await visitor.post(`${link}/pay`, { choice: 'full', csrf: csrfOf(page) });
    assert.equal(chosen.status, 303);
    const checkoutUrl = chosen.res.headers.get('location')!;
    assert.match(checkoutUrl, new RegExp(`^${stripe.url}/checkout/cs_test_`), 'the patient goes to Stripe, not to a Settle page');

    // What Stripe received: one valid Checkout Session request, its idempotency key from Settle's payment id,
    // the amount due, and nothing about the patient.
    const created = stripe.requests.filter((r) => r.method === 'POST' && r.path === '/v1/checkout/sessions');
    assert.equal(created.length, 1);
    const request = created[0]!;
    const { rows } = await db().pool.query<{ id: string }>('SELECT id FROM payments WHERE practice_id = $1 AND guarantor_id = $2', [household.practiceId, household.guarantorId]);
    assert.equal(rows.length, 1);
    const paymentId = rows[0]!.id;
    assert.equal(request.idempotencyKey, `settle-checkout-${paymentId}`);
    assert.match(request.rawBody, /unit_amount%5D=15000|unit_amount\]=15000/);
    assert.doesNotMatch(withoutIds(decodeURIComponent(request.rawBody)), /Alex|Example|Main St|Cambridge|02139|Riverside/i, 'no patient or practice detail sent to Stripe');

    // The patient pays on Stripe's page; Stripe calls the webhook (and retries it): posted once.
    const sessionId = checkoutUrl.split('/').pop()!;
    stripe.completeCheckoutSession(sessionId);
    const events = stripe.events.filter((e) => ['checkout.session.completed', 'payment_intent.succeeded'].includes(String(e.type)));
    assert.ok(events.length >= 1);
    for (const event of [...events, ...events]) {
      const { payload, header } = stripe.signEvent(event);
      const res = await fetch(`${app.url}/webhooks/stripe`, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': header }, body: payload });
      assert.equal(res.status, 200, await res.text());
    }
    const payment = (await new PaymentRepository(db().pool, clock).get(household.practiceId, paymentId))!;
    assert.equal(payment.status, 'succeeded');
    assert.deepEqual(payment.amount, money(15_000, 'USD'));
    assert.match(payment.stripe.checkoutSession ?? '', /^cs_test_/);
    const ledger = new LedgerRepository(db().pool, cipher, clock);
    for (const id of [household.olderBalanceId, household.newerBalanceId]) assert.equal((await ledger.getBalance(id))!.status, 'paid');
    const posted = await paymentRows(db(), household.practiceId, paymentId);
    assert.equal(posted.entries.length, 2);
    assert.deepEqual(posted.outbox.map((o) => [o.kind, o.amount]), [['payment', 15_000]]);
  });
});
