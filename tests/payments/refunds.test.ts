/**
 * Refunds from the staff API over real HTTP: the real StripeGateway sends a refund request the Stripe fake checks
 * against Stripe's OpenAPI document; the ledger changes only when the fake's `charge.refunded` event reaches
 * `POST /webhooks/stripe`, and only once however often it is delivered. Also GET /payments/{id}, GET /plans/{id}.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createApi } from '../../src/api/app.ts';
import { EngineMetrics } from '../../src/api/metrics.ts';
import { silentLogger as apiLogger } from '../../src/config/logger.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { loadMappings } from '../../src/mapping/load.ts';
import { checkoutSessionParams } from '../../src/payments/checkout.ts';
import { createPaymentsWiring } from '../../src/payments/pay-wiring.ts';
import { offeredPlans } from '../../src/domain/payment-plan.ts';
import { proposePlan } from '../../src/payments/plan-service.ts';
import { ApiKeyRepository } from '../../src/store/api-keys.ts';
import { AuditLog } from '../../src/store/audit.ts';
import type { Database } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { ROOT } from '../support/cli.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { startStripeFake, type StripeFake } from '../support/stripe-fake/server.ts';
import { stripeSpecMissing } from '../support/stripe-fake/spec.ts';
import { cipher, paymentRows, pendingPayment, seedHousehold, type Household } from './webhook-fixtures.ts';

const SECRET = 'whsec_refunds_test';

/** The real API with payments wired to the Stripe fake, for one practice. */
async function startPaymentsApi(db: Database, clock: ManualClock, fake: StripeFake, slug: string, dataDir: string) {
  const payments = await createPaymentsWiring({
    db, clock, logger: apiLogger(), dataDir, sharedDatabase: false, stripeSecretKey: 'sk_test_refunds', stripeWebhookSecret: SECRET,
    webhookPracticeSlug: slug, stripe: { host: '127.0.0.1', port: fake.port, protocol: 'http', maxNetworkRetries: 0 },
  });
  const api = createApi({
    configDir: ROOT, cipher, mappings: loadMappings(ROOT), db, clock, logger: apiLogger(), metrics: new EngineMetrics(), version: 'test', payments,
    readiness: { database: async () => ({ ok: true, detail: '' }), migrations: async () => ({ ok: true, detail: '' }), scheduler: () => ({ ok: true, detail: '' }) },
  });
  const server: Server = api.app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, gateway: await payments.gatewayFor(''), close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }) };
}

describeOnEachDatabase('Refunds from the API', (db) => {
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  const dataDir = mkdtempSync(join(tmpdir(), 'settle-refunds-'));
  let fake: StripeFake;
  let h: Household;
  let api: Awaited<ReturnType<typeof startPaymentsApi>>;
  let staff: string;
  let integration: string;
  let paymentId: string;

  before(async () => {
    fake = await startStripeFake({ clock, webhookSecret: SECRET });
    const slug = `refunds-${Math.random().toString(36).slice(2, 8)}`;
    h = await seedHousehold(db(), clock, slug);
    api = await startPaymentsApi(db(), clock, fake, slug, dataDir);
    const keys = new ApiKeyRepository(db().pool, clock);
    staff = (await keys.create(h.practiceId, 'staff key', 'staff')).secret;
    integration = (await keys.create(h.practiceId, 'integration key', 'integration')).secret;
    // The patient pays $120.00 on Checkout; Stripe's events reach the webhook.
    const payment = await pendingPayment(db(), clock, h, money(12_000, 'USD'));
    paymentId = payment.id;
    const session = await api.gateway.createCheckoutSession(checkoutSessionParams({
      paymentId, guarantorId: h.guarantorId, amount: payment.amount, successUrl: 'http://127.0.0.1/paid', cancelUrl: 'http://127.0.0.1/cancel',
    }));
    fake.completeCheckoutSession(session.id);
    for (const event of [...fake.events]) assert.equal((await deliver(event)).status, 200);
  });
  after(async () => {
    await api?.close();
    await fake?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  function deliver(event: Record<string, unknown>) {
    const { payload, header } = fake.signEvent(event);
    return fetch(`${api.url}/webhooks/stripe`, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': header }, body: payload });
  }
  const call = (method: string, path: string, key: string, body?: unknown) =>
    fetch(`${api.url}${path}`, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const owed = async () => {
    const ledger = new LedgerRepository(db().pool, cipher, clock);
    return (await ledger.getBalance(h.olderBalanceId))!.patientAmount.amount + (await ledger.getBalance(h.newerBalanceId))!.patientAmount.amount;
  };

  test('a refund goes to Stripe as a valid request; the ledger changes once when charge.refunded arrives, however often', async () => {
    assert.equal(await owed(), 3_000);
    const response = await call('POST', `/payments/${paymentId}/refunds`, staff, { amount: '20.00', reason: 'requested_by_customer' });
    assert.equal(response.status, 202);
    const refund = (await response.json()) as { id: string; stripeRefundId: string; status: string; amount: { amountMinor: number } };
    assert.match(refund.stripeRefundId, /^re_/);
    assert.equal(refund.amount.amountMinor, 2_000);
    const sent = fake.requests.filter((r) => r.method === 'POST' && r.path === '/v1/refunds');
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.valid, true, 'valid against Stripe\'s OpenAPI document');
    assert.equal(sent[0]!.idempotencyKey, `settle-refund-${refund.id}`);
    assert.deepEqual([sent[0]!.params.amount, sent[0]!.params.reason, (sent[0]!.params.metadata as Record<string, string>).settle_refund_id], [2_000, 'requested_by_customer', refund.id]);
    assert.equal(await owed(), 3_000, 'nothing changes before Stripe confirms');

    const refunded = fake.events.find((e) => e.type === 'charge.refunded')!;
    const outcomes = [];
    for (let i = 0; i < 3; i++) outcomes.push(((await (await deliver(refunded)).json()) as { outcome: string }).outcome);
    assert.deepEqual(outcomes, ['refund-posted', 'duplicate', 'duplicate']);
    assert.equal(await owed(), 5_000);
    const rows = await paymentRows(db(), h.practiceId, paymentId);
    assert.deepEqual(rows.outbox.map((o) => [o.kind, o.amount]), [['payment', 12_000], ['refund', 2_000]]);
    assert.equal(rows.entries.filter((e) => e.resource === 'Refund').length, 1);

    const shown = (await (await call('GET', `/payments/${paymentId}`, integration)).json()) as { status: string; refunded: { amountMinor: number }; refunds: { stripeRefundId: string }[] };
    assert.deepEqual([shown.status, shown.refunded.amountMinor, shown.refunds.map((r) => r.stripeRefundId)], ['partially_refunded', 2_000, [refund.stripeRefundId]]);
  });

  test('bad refunds are refused with a clear reason and nothing reaches Stripe', async () => {
    const before = fake.requests.length;
    const tooMuch = await call('POST', `/payments/${paymentId}/refunds`, staff, { amount: '500.00' });
    assert.equal(tooMuch.status, 422);
    assert.match(((await tooMuch.json()) as { detail: string }).detail, /more than the 10000 left/);
    const malformed = await call('POST', `/payments/${paymentId}/refunds`, staff, { amount: '12.345' });
    assert.equal(malformed.status, 400);
    assert.equal((await call('POST', '/payments/00000000-0000-4000-8000-000000000000/refunds', staff, {})).status, 404);
    assert.equal((await call('POST', `/payments/${paymentId}/refunds`, integration, {})).status, 403);
    assert.equal(fake.requests.length, before);
  });

  test('GET /reconciliation matches the day\'s payment and refund with Stripe\'s balance transactions', async () => {
    const response = await call('GET', '/reconciliation?date=2026-03-02', integration);
    assert.equal(response.status, 200);
    const report = (await response.json()) as { movements: number; matched: number; mismatches: unknown[]; balanceTransactions: number };
    assert.deepEqual([report.movements, report.matched, report.mismatches], [2, 2, []]);
    assert.equal(report.balanceTransactions, 2);
    const bad = await call('GET', '/reconciliation?date=2026-02-30', integration);
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { code: string }).code, 'invalid_date');
  });

  test('GET /plans/{id} shows a plan and its installments, without Stripe customer or card ids', async () => {
    const total = await owed();
    const offer = offeredPlans(total, { minimumInstallmentCents: 1_000, maximumMonths: 3 }).find((o) => o.months === 3)!;
    const { planId } = await proposePlan({ db: db(), clock }, {
      practiceId: h.practiceId, guarantorId: h.guarantorId, balanceIds: [h.olderBalanceId, h.newerBalanceId], offer, timeZone: 'America/New_York',
    });
    const response = await call('GET', `/plans/${planId}`, staff);
    assert.equal(response.status, 200);
    const plan = (await response.json()) as Record<string, unknown> & { installments: { dueDate: string }[] };
    assert.equal(plan.status, 'pending');
    assert.equal(plan.hasSavedCard, false);
    assert.deepEqual(plan.installments.map((i) => i.dueDate), ['2026-03-02', '2026-04-02', '2026-05-02']);
    assert.doesNotMatch(JSON.stringify(plan), /cus_|pm_/);
    assert.equal((await call('GET', '/plans/00000000-0000-4000-8000-000000000000', staff)).status, 404);
  });

  test('Idempotency-Key: the same key and body return the first refund and Stripe gets one request; another body with that key is refused', async () => {
    const refundRequests = () => fake.requests.filter((r) => r.method === 'POST' && r.path === '/v1/refunds').length;
    const audited = async () => (await new AuditLog(db(), clock).list(h.practiceId)).filter((e) => e.action === 'payment.refund').length;
    const post = (key: string, body: unknown) =>
      fetch(`${api.url}/payments/${paymentId}/refunds`, {
        method: 'POST', headers: { authorization: `Bearer ${staff}`, 'content-type': 'application/json', 'idempotency-key': key }, body: JSON.stringify(body),
      });
    const [requestsBefore, auditBefore] = [refundRequests(), await audited()];

    const first = await post('refund-key-1', { amount: '10.00', reason: 'requested_by_customer' });
    assert.equal(first.status, 202);
    assert.equal(first.headers.get('idempotent-replayed'), null);
    const refund = (await first.json()) as { id: string; stripeRefundId: string };
    const again = await post('refund-key-1', { reason: 'requested_by_customer', amount: '10.00' });
    assert.equal(again.status, 202);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(await again.json(), refund, 'the first result, as it was answered');
    assert.equal(refundRequests(), requestsBefore + 1, 'the Stripe fake received exactly one refund request');
    assert.equal(await audited(), auditBefore + 1, 'a replay starts nothing, so audits nothing');

    const conflict = await post('refund-key-1', { amount: '11.00', reason: 'requested_by_customer' });
    assert.equal(conflict.status, 422);
    assert.match(conflict.headers.get('content-type') ?? '', /application\/problem\+json/);
    const problem = (await conflict.json()) as { code: string; detail: string };
    assert.equal(problem.code, 'refund_idempotency_conflict');
    assert.match(problem.detail, new RegExp(`already used for a different refund request \\(refund ${refund.id}\\)`));
    assert.equal(refundRequests(), requestsBefore + 1);

    // Two concurrent requests with a new key: one refund, one Stripe request, both answered with it.
    const [a, b] = await Promise.all([post('refund-key-2', { amount: '5.00' }), post('refund-key-2', { amount: '5.00' })]);
    assert.deepEqual([a.status, b.status], [202, 202]);
    assert.equal(((await a.json()) as { id: string }).id, ((await b.json()) as { id: string }).id);
    assert.equal(refundRequests(), requestsBefore + 2);

    // Still the first result after Stripe confirmed it and the ledger moved (nothing new is validated or started).
    const refunded = fake.events.filter((e) => e.type === 'charge.refunded').at(-1)!;
    assert.equal((await deliver(refunded)).status, 200);
    const later = await post('refund-key-1', { amount: '10.00', reason: 'requested_by_customer' });
    assert.deepEqual([later.status, ((await later.json()) as { id: string }).id], [202, refund.id]);
    assert.equal(refundRequests(), requestsBefore + 2);

    const malformed = await post('a key with spaces', { amount: '1.00' });
    assert.equal(malformed.status, 400);
    assert.equal(((await malformed.json()) as { code: string }).code, 'invalid_idempotency_key');
    assert.equal(refundRequests(), requestsBefore + 2);
  });
}, { skip: stripeSpecMissing() });
