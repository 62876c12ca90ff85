import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { after, before, it } from 'node:test';
import express from 'express';
import { problemHandler } from '../../src/api/problem.ts';
import { mountRoutes } from '../../src/api/routes.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { SANDBOX_WEBHOOK_SECRET, signSandboxEvent } from '../../src/payments/sandbox.ts';
import { signStripePayload, type StripeEventEnvelope } from '../../src/payments/stripe-webhook.ts';
import { STRIPE_WEBHOOK_PATH, stripeWebhookHandler, stripeWebhookRoute, type StripeWebhookAck, type StripeWebhookRouteDeps } from '../../src/payments/webhook-route.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { cipher, paymentRows, pendingPayment, refundEvent, sandboxCheckoutEvents, seedHousehold, silentLogger, type Household } from './webhook-fixtures.ts';

const SECRET = 'whsec_route_test';
const problem = async (res: Response) => (await res.json()) as { code: string };
const ack = async (res: Response) => (await res.json()) as StripeWebhookAck;

async function listen(app: express.Express): Promise<{ server: Server; url: string }> {
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}${STRIPE_WEBHOOK_PATH}` };
}

describeOnEachDatabase('POST /webhooks/stripe over HTTP', (db) => {
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  let h: Household;
  const servers: Server[] = [];
  let plainUrl = '';
  let mountedUrl = '';
  /** How many times the route asked for write-back delivery to run now. */
  let wakes = 0;

  before(async () => {
    h = await seedHousehold(db(), clock, 'wh-route');
    const deps: StripeWebhookRouteDeps = { db: db(), clock, practiceId: h.practiceId, cipher, logger: silentLogger, secrets: [SECRET, SANDBOX_WEBHOOK_SECRET], onWritebacksQueued: () => wakes++ };
    // 1. The plain express handler, with the raw parser on its own route.
    const plain = express();
    plain.post(STRIPE_WEBHOOK_PATH, express.raw({ type: 'application/json' }), stripeWebhookHandler(deps));
    // 2. The route spec through mountRoutes, wired the way the app does it: raw parser on the path, then the JSON parser.
    const mounted = express();
    mounted.use(STRIPE_WEBHOOK_PATH, express.raw({ type: 'application/json' }));
    mounted.use(express.json());
    const router = express.Router();
    mountRoutes(router, [stripeWebhookRoute(deps)], async () => undefined);
    mounted.use(router);
    mounted.use(problemHandler(silentLogger));
    for (const [app, set] of [[plain, (u: string) => (plainUrl = u)], [mounted, (u: string) => (mountedUrl = u)]] as const) {
      const { server, url } = await listen(app);
      servers.push(server);
      set(url);
    }
  });
  after(async () => {
    for (const server of servers) await new Promise((resolve) => server.close(resolve));
  });

  const deliver = (url: string, payload: string, header: string | undefined) =>
    fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(header ? { 'stripe-signature': header } : {}) }, body: payload });
  const signed = (event: StripeEventEnvelope) => {
    const payload = JSON.stringify(event);
    return { payload, header: signStripePayload(payload, Math.floor(clock.now().getTime() / 1000), SECRET) };
  };
  const eventCount = async () => Number((await db().pool.query<{ n: string }>('SELECT count(*)::text AS n FROM stripe_events WHERE practice_id = $1', [h.practiceId])).rows[0]!.n);

  for (const which of ['plain handler', 'mounted route spec'] as const) {
    it(`${which}: the same webhook three times → 200 each, one ledger entry, one outbox row`, async () => {
      const url = which === 'plain handler' ? plainUrl : mountedUrl;
      const payment = await pendingPayment(db(), clock, h, money(2_500, 'USD'));
      const [succeeded] = sandboxCheckoutEvents(clock, payment);
      const { payload, header } = signed(succeeded!);
      const answers = [];
      const wakesBefore = wakes;
      for (let i = 0; i < 3; i++) {
        const res = await deliver(url, payload, header);
        assert.equal(res.status, 200);
        answers.push(await ack(res));
      }
      assert.deepEqual(answers.map((a) => [a.outcome, a.duplicate]), [['payment-posted', false], ['duplicate', true], ['duplicate', true]]);
      const rows = await paymentRows(db(), h.practiceId, payment.id);
      assert.equal(rows.entries.length, 1);
      assert.equal(rows.outbox.length, 1);
      assert.equal(wakes - wakesBefore, 1, 'write-back delivery is woken once, for the delivery that queued the write-back, not for duplicates');
    });

    it(`${which}: a tampered body or a stale timestamp → 400 problem, nothing stored`, async () => {
      const url = which === 'plain handler' ? plainUrl : mountedUrl;
      const payment = await pendingPayment(db(), clock, h, money(700, 'USD'));
      const [succeeded] = sandboxCheckoutEvents(clock, payment);
      const { payload, header } = signed(succeeded!);
      const before = await eventCount();
      const tampered = await deliver(url, payload.replace('"amount":700', '"amount":7'), header);
      assert.equal(tampered.status, 400);
      assert.match(tampered.headers.get('content-type') ?? '', /application\/problem\+json/);
      assert.equal((await problem(tampered)).code, 'invalid_signature');
      const unsigned = await deliver(url, payload, undefined);
      assert.equal(unsigned.status, 400);
      assert.equal((await problem(unsigned)).code, 'invalid_signature');
      const wrongSecret = await deliver(url, payload, signStripePayload(payload, Math.floor(clock.now().getTime() / 1000), 'whsec_other'));
      assert.equal((await problem(wrongSecret)).code, 'invalid_signature');
      const staleHeader = signStripePayload(payload, Math.floor(clock.now().getTime() / 1000) - 301, SECRET);
      const stale = await deliver(url, payload, staleHeader);
      assert.equal(stale.status, 400);
      assert.equal((await problem(stale)).code, 'stale_signature');
      assert.equal(await eventCount(), before, 'no event stored');
      const rows = await paymentRows(db(), h.practiceId, payment.id);
      assert.deepEqual([rows.entries.length, rows.outbox.length], [0, 0]);
      // The genuine delivery still goes through afterwards.
      assert.equal((await deliver(url, payload, header)).status, 200);
      assert.equal((await paymentRows(db(), h.practiceId, payment.id)).entries.length, 1);
    });
  }

  it('sandbox checkout events, signed with the sandbox secret, go through the same route and handler', async () => {
    const payment = await pendingPayment(db(), clock, h, money(1_200, 'USD'));
    const outcomes = [];
    for (const event of sandboxCheckoutEvents(clock, payment)) {
      const { payload, header } = signSandboxEvent(event, { clock });
      const res = await deliver(plainUrl, payload, header);
      assert.equal(res.status, 200);
      outcomes.push((await ack(res)).outcome);
    }
    assert.deepEqual(outcomes, ['payment-posted', 'payment-already-posted']);
    const charge = (await db().pool.query<{ c: string; pi: string }>('SELECT stripe_charge_id AS c, stripe_payment_intent_id AS pi FROM payments WHERE id = $1', [payment.id])).rows[0]!;
    const { payload, header } = signed(refundEvent(charge.c, charge.pi, 1_200, 1_200));
    const refund = await deliver(mountedUrl, payload, header);
    assert.equal((await ack(refund)).outcome, 'refund-posted');
    const rows = await paymentRows(db(), h.practiceId, payment.id);
    assert.deepEqual(rows.outbox.map((o) => o.kind), ['payment', 'refund']);
  });

  it('answers 500 webhook_not_configured when a JSON parser ran first (the raw body is gone), storing nothing', async () => {
    const wrong = express();
    wrong.use(express.json());
    wrong.post(STRIPE_WEBHOOK_PATH, stripeWebhookHandler({ db: db(), clock, practiceId: h.practiceId, logger: silentLogger, secrets: SECRET }));
    const { server, url } = await listen(wrong);
    servers.push(server);
    const before = await eventCount();
    const payment = await pendingPayment(db(), clock, h, money(300, 'USD'));
    const { payload, header } = signed(sandboxCheckoutEvents(clock, payment)[0]!);
    const res = await deliver(url, payload, header);
    assert.equal(res.status, 500);
    assert.equal((await problem(res)).code, 'webhook_not_configured');
    assert.equal(await eventCount(), before);
  });

  it('answers 400 invalid_event for an authentic event Settle cannot read, storing nothing', async () => {
    const before = await eventCount();
    const { payload, header } = signed({ id: 'evt_broken_1', type: 'charge.refunded', data: { object: { id: 'ch_1' } } });
    const res = await deliver(plainUrl, payload, header);
    assert.equal(res.status, 400);
    assert.equal((await problem(res)).code, 'invalid_event');
    assert.equal(await eventCount(), before);
  });
});
