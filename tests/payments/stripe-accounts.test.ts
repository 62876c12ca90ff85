/**
 * A Stripe account per practice: `STRIPE_SECRET_KEYS=slug=sk_…` gives each named practice its own key for
 * Checkout and refunds (and plan charges and reconciliation, through the same `gatewayFor`); a practice not
 * named uses `STRIPE_SECRET_KEY`, else the sandbox, clearly labelled. Against the Stripe fake, which checks
 * every request against Stripe's OpenAPI document and records its `Authorization` header.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadSettings, SettingsError } from '../../src/config/settings.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { checkoutSessionParams } from '../../src/payments/checkout.ts';
import { practiceGateways } from '../../src/payments/practice-gateways.ts';
import { startRefund } from '../../src/payments/refund-service.ts';
import { PaymentRepository } from '../../src/store/payments.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { startStripeFake, type StripeFake } from '../support/stripe-fake/server.ts';
import { stripeSpecMissing } from '../support/stripe-fake/spec.ts';
import { csrfOf, seedPayHousehold, silentLogger, startPayApp, verified, Visitor, type PayApp, type PayHousehold } from './pay-fixtures.ts';

const specMissing = stripeSpecMissing();

describe('STRIPE_SECRET_KEYS', () => {
  const problems = (value: string) => {
    try {
      loadSettings({ STRIPE_SECRET_KEYS: value });
    } catch (error) {
      assert.ok(error instanceof SettingsError);
      return error.problems;
    }
    assert.fail('no error');
  };

  it('reads slug=sk_… pairs', () => {
    assert.deepEqual(loadSettings({ STRIPE_SECRET_KEYS: 'north=sk_test_n,south=rk_live_s' }).stripeSecretKeys, new Map([['north', 'sk_test_n'], ['south', 'rk_live_s']]));
    assert.deepEqual(loadSettings({}).stripeSecretKeys, new Map());
  });

  it('names the variable and the bad entry, never a secret', () => {
    const found = problems('north=sk_test_secret1,south=whsec_secret2,sk_live_secret3,north=sk_test_secret4');
    assert.deepEqual(found.map((p) => p.variable), ['STRIPE_SECRET_KEYS', 'STRIPE_SECRET_KEYS', 'STRIPE_SECRET_KEYS']);
    assert.match(found[0]!.message, /^entry 2 \("south=…"\): the secret must start with sk_ or rk_/);
    assert.match(found[1]!.message, /^entry 3 does not start with a practice slug/);
    assert.match(found[2]!.message, /^entry 4 \("north=…"\) names the practice "north" twice/);
    assert.doesNotMatch(JSON.stringify(found), /secret\d/, 'no secret is echoed');
  });
});

describeOnEachDatabase('a Stripe account per practice', (db) => {
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  const suffix = Math.random().toString(36).slice(2, 8);
  const slugs = { north: `north-${suffix}`, south: `south-${suffix}`, west: `west-${suffix}` };
  const keys = { north: 'sk_test_north_account', south: 'sk_test_south_account', fallback: 'sk_test_default_account' };
  const webhookSecret = 'whsec_accounts_fake';
  let fake: StripeFake;
  let app: PayApp;
  let dir = '';
  let homes: Record<'north' | 'south' | 'west', PayHousehold>;
  const fakeAt = () => ({ host: '127.0.0.1', port: fake.port, protocol: 'http' as const, maxNetworkRetries: 0 });
  const keyOf = (idempotencyKey: string) => {
    const sent = fake.requests.filter((r) => r.idempotencyKey === idempotencyKey);
    assert.equal(sent.length, 1, `one request with the idempotency key ${idempotencyKey}`);
    assert.equal(sent[0]!.valid, true);
    return sent[0]!.headers.authorization;
  };

  before(async () => {
    if (specMissing) return;
    dir = await mkdtemp(join(tmpdir(), 'settle-stripe-accounts-'));
    // The fake takes only the configured keys: any other key would be a 401.
    fake = await startStripeFake({ clock, webhookSecret, apiKeys: Object.values(keys) });
    homes = { north: await seedPayHousehold(db(), clock, slugs.north), south: await seedPayHousehold(db(), clock, slugs.south), west: await seedPayHousehold(db(), clock, slugs.west) };
    // No STRIPE_SECRET_KEY: west, which has no key of its own, is in the sandbox.
    app = await startPayApp(db(), clock, slugs.north, dir, { secretKeys: `${slugs.north}=${keys.north},${slugs.south}=${keys.south}`, options: fakeAt() },
      `${slugs.north}=${webhookSecret},${slugs.south}=${webhookSecret}`);
  });
  after(async () => {
    await app?.close();
    await fake?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** The patient of `home` pays in full on the pay page; where the pay page sent them, and the payment id. */
  const payInFull = async (home: PayHousehold) => {
    const link = await app.link(home);
    const visitor = new Visitor();
    const page = await verified(visitor, link);
    const chosen = await visitor.post(`${link}/pay`, { choice: 'full', csrf: csrfOf(page) });
    assert.equal(chosen.status, 303);
    const { rows } = await db().pool.query<{ id: string }>('SELECT id FROM payments WHERE practice_id = $1 ORDER BY created_at DESC LIMIT 1', [home.practiceId]);
    return { page, location: chosen.res.headers.get('location')!, paymentId: rows[0]!.id };
  };

  it('sends each practice\'s Checkout and refund to Stripe with its own key, never the other\'s', { skip: specMissing }, async () => {
    for (const name of ['north', 'south'] as const) {
      const { page, location, paymentId } = await payInFull(homes[name]);
      assert.doesNotMatch(page, /Sandbox/);
      assert.match(location, new RegExp(`^${fake.url}/checkout/cs_test_`));
      assert.equal(keyOf(`settle-checkout-${paymentId}`), `Bearer ${keys[name]}`);

      // Paid on Stripe's page; the practice's own webhook endpoint posts it; then staff refund $10.00.
      fake.completeCheckoutSession(location.split('/').pop()!);
      for (const event of fake.events.splice(0)) {
        const { payload, header } = fake.signEvent(event);
        const res = await fetch(`${app.url}/webhooks/stripe/${slugs[name]}`, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': header }, body: payload });
        assert.equal(res.status, 200, await res.text());
      }
      assert.equal((await new PaymentRepository(db().pool, clock).get(homes[name].practiceId, paymentId))?.status, 'succeeded');
      const refund = await startRefund({ db: db(), clock, gateway: await app.wiring.gatewayFor(homes[name].practiceId) }, {
        practiceId: homes[name].practiceId, paymentId, amount: money(1_000, 'USD'), requestedBy: 'test', idempotencyKey: `refund-${name}-${suffix}`,
      });
      const refunds = fake.requests.filter((r) => r.path === '/v1/refunds' && r.method === 'POST' && r.params.payment_intent !== undefined);
      const sent = refunds.at(-1)!;
      assert.equal(sent.valid, true);
      assert.equal(sent.headers.authorization, `Bearer ${keys[name]}`, `${name}'s refund ${refund.id} uses ${name}'s key`);
    }
  });

  it('runs a practice without a key of its own (and no STRIPE_SECRET_KEY) in the sandbox, labelled', { skip: specMissing }, async () => {
    const before = fake.requests.length;
    const { page, location } = await payInFull(homes.west);
    assert.match(page, /Sandbox/);
    assert.match(location, /\/sandbox\/checkout\//);
    assert.equal(fake.requests.length, before, 'nothing reached Stripe');
    assert.equal(app.wiring.sandbox, false, 'the engine as a whole is not in sandbox mode');
  });

  it('gives a practice without a key of its own STRIPE_SECRET_KEY when it is set', { skip: specMissing }, async () => {
    const gatewayFor = practiceGateways({
      db: db(), clock, logger: silentLogger, baseUrl: 'http://127.0.0.1', secretKey: keys.fallback, secretKeys: new Map([[slugs.north, keys.north]]), stripe: fakeAt(),
    });
    for (const [name, key] of [['west', keys.fallback], ['south', keys.fallback], ['north', keys.north]] as const) {
      const gateway = await gatewayFor(homes[name].practiceId);
      assert.equal(gateway.sandbox, false);
      const request = checkoutSessionParams({
        paymentId: `pay_${name}_${suffix}`, guarantorId: homes[name].guarantorId, amount: money(2_500, 'USD'), successUrl: 'http://127.0.0.1/paid', cancelUrl: 'http://127.0.0.1/cancel',
      });
      await gateway.createCheckoutSession(request);
      assert.equal(keyOf(request.idempotencyKey), `Bearer ${key}`, name);
    }
    await assert.rejects(gatewayFor('00000000-0000-4000-8000-000000000000'), /no practice 00000000-/);
  });
});
