import assert from 'node:assert/strict';
import { it, mock } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { StripeEventError } from '../../src/payments/stripe-events.ts';
import { StripeEventBatcher } from '../../src/payments/webhook-batcher.ts';
import type { StripeEventHandlerDeps } from '../../src/payments/webhook-handler.ts';
import { PaymentRepository } from '../../src/store/payments.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { cipher, paymentRows, pendingPayment, sandboxCheckoutEvents, seedHousehold, silentLogger, stripeEvent } from './webhook-fixtures.ts';

describeOnEachDatabase('StripeEventBatcher (webhook deliveries arriving together)', (db) => {
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  let n = 0;
  const setUp = async () => {
    const household = await seedHousehold(db(), clock, `wh-batch-${++n}`);
    const deps: StripeEventHandlerDeps = { db: db(), clock, practiceId: household.practiceId, cipher, logger: silentLogger };
    return { household, deps, batcher: new StripeEventBatcher(deps) };
  };

  it('posts each payment once, sharing transactions on the embedded database, and answers retries with a read', async () => {
    const { household, deps, batcher } = await setUp();
    const paid = await Promise.all(Array.from({ length: 6 }, () => pendingPayment(db(), clock, household, money(500, 'USD'))));
    const events = paid.flatMap((payment) => sandboxCheckoutEvents(clock, payment));
    const outcomes = (await Promise.all(events.map((event) => batcher.handle(event)))).map((r) => r.outcome).sort();
    assert.deepEqual(outcomes, [...Array(6).fill('payment-already-posted'), ...Array(6).fill('payment-posted')]);
    for (const payment of paid) {
      const rows = await paymentRows(db(), household.practiceId, payment.id);
      assert.deepEqual(rows.outbox.map((o) => o.kind), ['payment'], 'one write-back per payment');
      assert.equal((await new PaymentRepository(db().pool, clock).get(household.practiceId, payment.id))?.status, 'succeeded');
    }
    if (deps.db.kind === 'embedded') {
      // The first event starts alone; the eleven that arrived meanwhile go in far fewer transactions than events.
      assert.ok(batcher.transactions >= 2 && batcher.transactions <= 3, `${batcher.transactions} transactions for 12 events`);
    } else {
      assert.equal(batcher.transactions, 0, 'on a server each event keeps its own transaction');
    }
    const before = batcher.transactions;
    const retries = await Promise.all(events.map((event) => batcher.handle(event)));
    assert.ok(retries.every((r) => r.outcome === 'duplicate'));
    assert.equal(batcher.transactions, before, 'a retry is answered by one read, with no transaction');
  });

  it('fails only the event the store refuses; the others of its batch are committed', async () => {
    const { household, batcher } = await setUp();
    const paid = await Promise.all(Array.from({ length: 4 }, () => pendingPayment(db(), clock, household, money(300, 'USD'))));
    const events = paid.map((payment) => sandboxCheckoutEvents(clock, payment)[1]!);
    const refused = events[2]!.id;
    const original = PaymentRepository.prototype.finishEvent;
    const finish = mock.method(PaymentRepository.prototype, 'finishEvent', function (this: PaymentRepository, ...args: Parameters<PaymentRepository['finishEvent']>) {
      if (args[1].id === refused) throw new Error('the database refused this one');
      return original.apply(this, args);
    });
    let settled: PromiseSettledResult<unknown>[];
    try {
      settled = await Promise.allSettled(events.map((event) => batcher.handle(event)));
    } finally {
      finish.mock.restore();
    }
    assert.deepEqual(settled.map((s) => s.status), ['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    assert.match(String((settled[2] as PromiseRejectedResult).reason), /refused this one/);
    const status = async (i: number) => (await new PaymentRepository(db().pool, clock).get(household.practiceId, paid[i]!.id))?.status;
    assert.deepEqual([await status(0), await status(1), await status(2), await status(3)], ['succeeded', 'succeeded', 'pending', 'succeeded']);
    assert.equal((await batcher.handle(events[2]!)).outcome, 'payment-posted', 'Stripe\'s retry of the refused event posts it');
    await assert.rejects(batcher.handle(stripeEvent('charge.refunded', { id: 'ch_unreadable' })), StripeEventError, 'an unreadable event is refused for its own request');
  });
});
