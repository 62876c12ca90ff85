/**
 * One engine, several practices' Stripe accounts: `POST /webhooks/stripe/{practice}` verifies with that practice's
 * signing secret (`STRIPE_WEBHOOK_SECRETS`) and writes only that practice's rows; `POST /webhooks/stripe` keeps
 * serving the one webhook practice; an unconfigured practice is a 404 and nothing is stored.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parsePracticeSecrets } from '../../src/config/settings.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { signSandboxEvent } from '../../src/payments/sandbox.ts';
import type { StripeEventEnvelope } from '../../src/payments/stripe-webhook.ts';
import { PaymentRepository } from '../../src/store/payments.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { startPayApp, TEST_WEBHOOK_SECRET, type PayApp } from './pay-fixtures.ts';
import { pendingPayment, sandboxCheckoutEvents, seedHousehold, type Household } from './webhook-fixtures.ts';

describe('STRIPE_WEBHOOK_SECRETS', () => {
  it('reads slug=whsec_… pairs and refuses a practice named twice', () => {
    const parse = (value: string | undefined) => parsePracticeSecrets('STRIPE_WEBHOOK_SECRETS', value);
    assert.deepEqual([...parse('north=whsec_n1,south=whsec_s1')], [['north', 'whsec_n1'], ['south', 'whsec_s1']]);
    assert.deepEqual([...parse(undefined)], []);
    assert.throws(() => parse('north=whsec_a,north=whsec_b'), /names the practice "north" twice/);
    assert.throws(() => parse('north=sk_live_x'), /slug=whsec_/);
  });
});

describeOnEachDatabase('Stripe webhooks for several practices', (db) => {
  const clock = new ManualClock(new Date('2026-06-01T15:00:00Z'));
  const dataDir = mkdtempSync(join(tmpdir(), 'settle-webhook-practices-'));
  const suffix = Math.random().toString(36).slice(2, 8);
  const [north, south] = [`north-${suffix}`, `south-${suffix}`];
  const secrets = { [north]: 'whsec_north_account', [south]: 'whsec_south_account' };
  let app: PayApp;
  let homes: Record<string, Household>;

  before(async () => {
    homes = { [north]: await seedHousehold(db(), clock, north), [south]: await seedHousehold(db(), clock, south) };
    // `/webhooks/stripe` serves north (STRIPE_WEBHOOK_SECRET); each practice's own account has its own endpoint.
    app = await startPayApp(db(), clock, north, dataDir, undefined, `${north}=${secrets[north]},${south}=${secrets[south]}`);
  });
  after(async () => {
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const post = (path: string, event: StripeEventEnvelope, secret: string) => {
    const { payload, header } = signSandboxEvent(event, { clock, secret });
    return fetch(`${app.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': header }, body: payload });
  };
  const eventCount = async (practiceId: string) =>
    Number((await db().pool.query<{ n: string }>('SELECT count(*)::text AS n FROM stripe_events WHERE practice_id = $1', [practiceId])).rows[0]!.n);

  it('each practice\'s endpoint takes its own account\'s events, once, into that practice only', async () => {
    const payment = await pendingPayment(db(), clock, homes[south]!, money(4_000, 'USD'));
    const [succeeded] = sandboxCheckoutEvents(clock, payment);
    const northEvents = await eventCount(homes[north]!.practiceId);

    const forged = await post(`/webhooks/stripe/${south}`, succeeded!, secrets[north]!);
    assert.equal(forged.status, 400, 'signed with another practice\'s secret');
    assert.equal(((await forged.json()) as { code: string }).code, 'invalid_signature');
    assert.equal(await eventCount(homes[south]!.practiceId), 0, 'nothing stored on a 400');

    const outcomes = [];
    for (let i = 0; i < 2; i++) {
      const response = await post(`/webhooks/stripe/${south}`, succeeded!, secrets[south]!);
      assert.equal(response.status, 200);
      outcomes.push(((await response.json()) as { outcome: string }).outcome);
    }
    assert.deepEqual(outcomes, ['payment-posted', 'duplicate']);
    assert.equal((await new PaymentRepository(db().pool, clock).get(homes[south]!.practiceId, payment.id))?.status, 'succeeded');
    assert.equal(await eventCount(homes[south]!.practiceId), 1);
    assert.equal(await eventCount(homes[north]!.practiceId), northEvents, 'north\'s rows are untouched');
  });

  it('/webhooks/stripe still serves the one webhook practice: another practice\'s payment is unknown there', async () => {
    const payment = await pendingPayment(db(), clock, homes[south]!, money(1_000, 'USD'));
    const [succeeded] = sandboxCheckoutEvents(clock, payment);
    const response = await post('/webhooks/stripe', succeeded!, TEST_WEBHOOK_SECRET);
    assert.equal(response.status, 200);
    assert.equal(((await response.json()) as { outcome: string }).outcome, 'unknown-payment');
    assert.equal((await new PaymentRepository(db().pool, clock).get(homes[south]!.practiceId, payment.id))?.status, 'pending');

    const own = await pendingPayment(db(), clock, homes[north]!, money(1_000, 'USD'));
    const [ownEvent] = sandboxCheckoutEvents(clock, own);
    assert.equal(((await (await post('/webhooks/stripe', ownEvent!, TEST_WEBHOOK_SECRET)).json()) as { outcome: string }).outcome, 'payment-posted');
  });

  it('a practice without a configured secret has no endpoint: 404, nothing stored', async () => {
    const payment = await pendingPayment(db(), clock, homes[north]!, money(1_000, 'USD'));
    const [succeeded] = sandboxCheckoutEvents(clock, payment);
    const response = await post(`/webhooks/stripe/nowhere-${suffix}`, succeeded!, secrets[north]!);
    assert.equal(response.status, 404);
    assert.equal(((await response.json()) as { code: string }).code, 'unknown_webhook_endpoint');
    assert.equal((await new PaymentRepository(db().pool, clock).get(homes[north]!.practiceId, payment.id))?.status, 'pending');
  });
});
