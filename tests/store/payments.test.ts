import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { withTransaction } from '../../src/store/database.ts';
import { isUuid, PaymentRepository } from '../../src/store/payments.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { seedHousehold, type Household } from '../payments/webhook-fixtures.ts';

describeOnEachDatabase('PaymentRepository', (db) => {
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  let h: Household;
  let repo: PaymentRepository;

  before(async () => {
    h = await seedHousehold(db(), clock, 'pay-repo');
    repo = new PaymentRepository(db().pool, clock);
  });

  it('creates pending payments with opaque uuid ids and finds them only within their practice', async () => {
    const payment = await repo.createPending({ practiceId: h.practiceId, guarantorId: h.guarantorId, balanceIds: [h.olderBalanceId], amount: money(1_050, 'USD') });
    assert.ok(isUuid(payment.id));
    assert.equal(payment.status, 'pending');
    assert.deepEqual(payment.amount, { amount: 1_050, currency: 'USD' });
    assert.deepEqual(payment.balanceIds, [h.olderBalanceId]);
    assert.equal((await repo.get(h.practiceId, payment.id))?.id, payment.id);
    const other = (await new PracticeRepository(db().pool).create({ slug: 'pay-repo-other', name: 'Other' })).id;
    assert.equal(await repo.get(other, payment.id), undefined);
    assert.equal(await repo.get(h.practiceId, 'not-a-uuid'), undefined);
    await repo.update(h.practiceId, payment.id, { stripe: { paymentIntent: 'pi_1', charge: 'ch_1' } });
    const byCharge = await withTransaction(db(), (tx) => repo.on(tx).findForUpdate(h.practiceId, { charge: 'ch_1' }));
    assert.equal(byCharge?.id, payment.id);
    assert.equal(byCharge?.stripe.paymentIntent, 'pi_1');
    await assert.rejects(repo.createPending({ practiceId: h.practiceId, guarantorId: h.guarantorId, balanceIds: [], amount: money(1, 'USD') }), RangeError);
    await assert.rejects(repo.createPending({ practiceId: h.practiceId, guarantorId: h.guarantorId, balanceIds: [h.olderBalanceId], amount: money(0, 'USD') }), RangeError);
  });

  it('records each Stripe event id once per practice and account', async () => {
    const event = { id: 'evt_repo_1', type: 'payment_intent.succeeded' };
    assert.equal(await repo.recordEvent(h.practiceId, event), true);
    assert.equal(await repo.recordEvent(h.practiceId, event), false);
    assert.equal(await repo.recordEvent(h.practiceId, { ...event, account: 'acct_1' }), true, 'another connected account is another event');
    await repo.finishEvent(h.practiceId, event, 'payment-posted');
    const stored = await repo.getEvent(h.practiceId, event.id);
    assert.equal(stored?.outcome, 'payment-posted');
    assert.deepEqual(stored?.processedAt, clock.now());
  });

  it('queues a write-back once per stable write-back id', async () => {
    const payment = await repo.createPending({ id: randomUUID(), practiceId: h.practiceId, guarantorId: h.guarantorId, balanceIds: [h.olderBalanceId], amount: money(500, 'USD') });
    const row = { practiceId: h.practiceId, paymentId: payment.id, kind: 'payment' as const, writebackId: `payment-${payment.id}`, amount: payment.amount, allocations: [{ balanceId: h.olderBalanceId, amountMinor: 500 }] };
    assert.equal(await repo.enqueueWriteback(row), true);
    assert.equal(await repo.enqueueWriteback(row), false);
    const rows = await repo.writebacks(h.practiceId, payment.id);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.status, 'pending');
    assert.equal(rows[0]!.attempts, 0);
    assert.deepEqual(rows[0]!.nextAttemptAt, clock.now());
    assert.deepEqual(rows[0]!.allocations, row.allocations);
    // A write-back belongs to a payment of the same practice.
    const other = (await new PracticeRepository(db().pool).create({ slug: 'pay-repo-fk', name: 'Other' })).id;
    await assert.rejects(repo.enqueueWriteback({ ...row, practiceId: other, writebackId: 'x' }));
  });
});
