import assert from 'node:assert/strict';
import { it, mock } from 'node:test';
import pg from 'pg';
import { ManualClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { SandboxGateway } from '../../src/payments/sandbox-gateway.ts';
import { startCheckout } from '../../src/payments/start-checkout.ts';
import { PaymentRepository } from '../../src/store/payments.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { seedHousehold, silentLogger } from './webhook-fixtures.ts';

describeOnEachDatabase('Starting a checkout', (db, engine) => {
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  let n = 0;

  it('stores the pending payment once, with its session id, after the gateway opened the session', async () => {
    const h = await seedHousehold(db(), clock, `start-co-${engine}-${++n}`);
    const gateway = new SandboxGateway({ db: db(), clock, practiceId: h.practiceId, logger: silentLogger, baseUrl: 'http://127.0.0.1:8080' });
    const query = mock.method(pg.Client.prototype, 'query');
    let started;
    try {
      started = await startCheckout({ db: db(), clock, gateway }, {
        practiceId: h.practiceId, guarantorId: h.guarantorId, balanceIds: [h.olderBalanceId, h.newerBalanceId], amount: money(15_000, 'USD'), baseUrl: 'http://127.0.0.1:8080',
      });
    } finally {
      query.mock.restore();
    }
    const sent = query.mock.calls.map((c) => String(typeof c.arguments[0] === 'string' ? c.arguments[0] : (c.arguments[0] as { text: string }).text).trim());
    assert.deepEqual(sent.map((text) => text.split(/\s+/).slice(0, 3).join(' ')), ['INSERT INTO payments'], 'one statement: the payment, complete');
    const payment = await new PaymentRepository(db().pool, clock).get(h.practiceId, started.paymentId);
    assert.equal(payment?.status, 'pending');
    assert.equal(payment?.stripe.checkoutSession, started.session.id);
    assert.deepEqual(payment?.balanceIds, [h.olderBalanceId, h.newerBalanceId]);
    assert.deepEqual(payment?.amount, money(15_000, 'USD'));
    assert.equal(started.request.params.metadata?.settle_payment_id, started.paymentId, 'the session names the stored payment');
    assert.equal(started.request.idempotencyKey, `settle-checkout-${started.paymentId}`);
    // The patient pays: the session's events find the payment and post it.
    const acks = await gateway.completeSessions([started.session.id]);
    assert.deepEqual(acks.map((a) => a.outcome), ['payment-posted', 'payment-already-posted']);
  });

  it('leaves no pending payment behind when the gateway refuses to open the session', async () => {
    const h = await seedHousehold(db(), clock, `start-co-${engine}-${++n}`);
    const gateway = new SandboxGateway({ db: db(), clock, practiceId: h.practiceId, logger: silentLogger, baseUrl: 'http://127.0.0.1:8080' });
    mock.method(gateway, 'createCheckoutSession', async () => {
      throw new Error('Stripe is unreachable');
    });
    await assert.rejects(startCheckout({ db: db(), clock, gateway }, {
      practiceId: h.practiceId, guarantorId: h.guarantorId, balanceIds: [h.olderBalanceId], amount: money(1_000, 'USD'), baseUrl: 'http://127.0.0.1:8080',
    }), /Stripe is unreachable/);
    const { rows } = await db().pool.query<{ n: number }>('SELECT count(*)::int AS n FROM payments WHERE practice_id = $1', [h.practiceId]);
    assert.equal(rows[0]!.n, 0);
  });
});
