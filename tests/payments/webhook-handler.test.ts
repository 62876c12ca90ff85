import assert from 'node:assert/strict';
import { before, it, mock } from 'node:test';
import pg from 'pg';
import { ManualClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { StripeEventError } from '../../src/payments/stripe-events.ts';
import { handleStripeEvent, returnSplit, type StripeEventHandlerDeps } from '../../src/payments/webhook-handler.ts';
import { AuditLog } from '../../src/store/audit.ts';
import { withTransaction } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { PaymentRepository } from '../../src/store/payments.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import {
  cipher, disputeEvent, paymentRows, pendingPayment, refundEvent, sandboxCheckoutEvents, seedHousehold, silentLogger, stripeEvent, type Household,
} from './webhook-fixtures.ts';

it('returnSplit takes back the youngest allocation first, after what was already returned', () => {
  const allocations = [{ balanceId: 'old', amountMinor: 100 }, { balanceId: 'new', amountMinor: 50 }];
  assert.deepEqual(returnSplit(allocations, 0, 70), [{ balanceId: 'new', amountMinor: 50 }, { balanceId: 'old', amountMinor: 20 }]);
  assert.deepEqual(returnSplit(allocations, 70, 30), [{ balanceId: 'old', amountMinor: 30 }]);
  assert.deepEqual(returnSplit(allocations, 150, 10), []);
});

describeOnEachDatabase('handleStripeEvent', (db, engine) => {
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  let n = 0;
  let h: Household;
  let deps: StripeEventHandlerDeps;
  const ledger = () => new LedgerRepository(db().pool, cipher, clock);
  const payments = () => new PaymentRepository(db().pool, clock);

  before(async () => {
    h = await seedHousehold(db(), clock, 'wh-handler');
    deps = { db: db(), clock, practiceId: h.practiceId, cipher, logger: silentLogger };
  });

  /** A fresh household per test keeps balances independent. */
  const fresh = async () => {
    const household = await seedHousehold(db(), clock, `wh-h-${++n}`);
    return { household, deps: { ...deps, practiceId: household.practiceId } };
  };

  it('posts a sandbox payment once, however often and in whichever order its events arrive', async () => {
    const payment = await pendingPayment(db(), clock, h, money(3_000, 'USD'));
    const [succeeded, completed] = sandboxCheckoutEvents(clock, payment);
    assert.equal(succeeded!.type, 'payment_intent.succeeded');
    assert.equal(completed!.type, 'checkout.session.completed');
    const first = await handleStripeEvent(deps, completed!);
    assert.equal(first.outcome, 'payment-posted');
    assert.equal(first.ledgerEntries, 1);
    assert.deepEqual(first.writebacks, [`payment-${payment.id}`]);
    // Oldest balance first: all $30 goes to the January balance.
    assert.deepEqual(first.allocations, [{ balanceId: h.olderBalanceId, amountMinor: 3_000 }]);
    for (let i = 0; i < 3; i++) assert.equal((await handleStripeEvent(deps, completed!)).outcome, 'duplicate');
    assert.equal((await handleStripeEvent(deps, succeeded!)).outcome, 'payment-already-posted');
    assert.equal((await handleStripeEvent(deps, succeeded!)).outcome, 'duplicate');
    const rows = await paymentRows(db(), h.practiceId, payment.id);
    assert.equal(rows.entries.length, 1);
    assert.deepEqual(rows.outbox, [{ kind: 'payment', writeback_id: `payment-${payment.id}`, amount: 3_000 }]);
    const stored = await payments().get(h.practiceId, payment.id);
    assert.equal(stored?.status, 'succeeded');
    assert.match(stored?.stripe.paymentIntent ?? '', /^pi_sandbox_/);
    assert.match(stored?.stripe.charge ?? '', /^ch_sandbox_/);
    assert.equal((await ledger().getBalance(h.olderBalanceId))?.patientAmount.amount, 7_000);
    assert.equal((await payments().getEvent(h.practiceId, completed!.id))?.outcome, 'payment-posted');
    const audited = await db().pool.query<{ actor: string; action: string; entity_id: string }>(
      "SELECT actor, action, entity_id FROM audit_events WHERE practice_id = $1 AND entity_type = 'payment' AND entity_id = $2",
      [h.practiceId, payment.id],
    );
    assert.deepEqual(audited.rows, [{ actor: 'system:stripe', action: 'payment.payment-posted', entity_id: payment.id }], 'the payment is audited once, not per duplicate delivery');
  });

  it('handles concurrent deliveries of one event exactly once', async () => {
    const { household, deps: d } = await fresh();
    const payment = await pendingPayment(db(), clock, household, money(12_000, 'USD'));
    const [succeeded] = sandboxCheckoutEvents(clock, payment);
    const results = await Promise.all([1, 2, 3].map(() => handleStripeEvent(d, succeeded!)));
    assert.deepEqual(results.map((r) => r.outcome).sort(), ['duplicate', 'duplicate', 'payment-posted']);
    const rows = await paymentRows(db(), household.practiceId, payment.id);
    // $120 across two balances, oldest first: $100 + $20.
    assert.deepEqual(rows.entries.map((e) => [e.balance_id, e.effect]), [[household.olderBalanceId, -10_000], [household.newerBalanceId, -2_000]]);
    assert.equal(rows.outbox.length, 1);
    assert.equal((await ledger().getBalance(household.olderBalanceId))?.status, 'paid');
  });

  it('answers a retry of a handled event with one read, before any transaction', async () => {
    const { household, deps: d } = await fresh();
    const [succeeded] = sandboxCheckoutEvents(clock, await pendingPayment(db(), clock, household, money(2_000, 'USD')));
    assert.equal((await handleStripeEvent(d, succeeded!)).outcome, 'payment-posted');
    const query = mock.method(pg.Client.prototype, 'query');
    try {
      assert.equal((await handleStripeEvent(d, succeeded!)).outcome, 'duplicate');
      const sent = query.mock.calls.map((c) => String(typeof c.arguments[0] === 'string' ? c.arguments[0] : (c.arguments[0] as { text: string }).text));
      assert.equal(sent.length, 1, sent.join('\n'));
      assert.match(sent[0]!, /^SELECT .* FROM stripe_events/);
    } finally {
      query.mock.restore();
    }
  });

  it('posts a payment with one claim and one finish around the ledger\'s posting: balances, date and audit event ride on them', async () => {
    const { household, deps: d } = await fresh();
    const [succeeded, completed] = sandboxCheckoutEvents(clock, await pendingPayment(db(), clock, household, money(2_000, 'USD')));
    const query = mock.method(pg.Client.prototype, 'query');
    const sent = () => query.mock.calls.map((c) => String(typeof c.arguments[0] === 'string' ? c.arguments[0] : (c.arguments[0] as { text: string }).text).trim());
    let first: string[], second: string[];
    try {
      assert.equal((await handleStripeEvent(d, succeeded!)).outcome, 'payment-posted');
      first = sent();
      query.mock.resetCalls();
      assert.equal((await handleStripeEvent(d, completed!)).outcome, 'payment-already-posted');
      second = sent();
    } finally {
      query.mock.restore();
    }
    // The retry check, BEGIN, the claim, then only the ledger's posting statements, the finish and COMMIT.
    assert.match(first[0]!, /^SELECT .* FROM stripe_events/);
    assert.deepEqual([first[1], first.at(-1)], ['BEGIN', 'COMMIT']);
    assert.match(first[2]!, /^WITH req AS[\s\S]*INSERT INTO stripe_events[\s\S]*FOR UPDATE/);
    assert.match(first.at(-2)!, /UPDATE stripe_events[\s\S]*audit_append/, 'the audit event is written with the event marked processed');
    const posting = first.slice(3, -2);
    assert.ok(posting.length > 0 && posting.every((sql) => !/practices|audit_|pg_advisory|stripe_events|payments/.test(sql)), posting.join('\n'));
    // The ledger: its source (new), its balance (locked without a new version, then read: it exists), the lines with
    // their version and the balance's new sums, the balance.
    assert.equal(posting.length, 5, posting.join('\n'));
    assert.match(posting[1]!, /INSERT INTO balances[\s\S]*DO UPDATE SET updated_at = balances\.updated_at WHERE false/);
    assert.match(posting[2]!, /^SELECT b\.id[\s\S]*JOIN balances b/);
    assert.match(posting[3]!, /INSERT INTO ledger_source_versions[\s\S]*INSERT INTO ledger_entries[\s\S]*FROM balances b/);
    assert.equal(second.length, 5, second.join('\n'));
  });

  it('posts payments of one guarantor arriving at once, each once, and keeps the audit chain one line', async () => {
    const { household, deps: d } = await fresh();
    const pending = await Promise.all([1_000, 2_000, 3_000].map((amount) => pendingPayment(db(), clock, household, money(amount, 'USD'))));
    const results = await Promise.all(pending.flatMap((p) => sandboxCheckoutEvents(clock, p)).map((event) => handleStripeEvent(d, event)));
    assert.deepEqual(results.map((r) => r.outcome).sort(), [...Array(3).fill('payment-already-posted'), ...Array(3).fill('payment-posted')]);
    assert.equal((await ledger().getBalance(household.olderBalanceId))?.patientAmount.amount, 4_000, 'all $60 on the older balance');
    for (const id of [household.olderBalanceId, household.newerBalanceId]) {
      const check = await ledger().verifyBalance(id);
      assert.equal(check.stored, check.fromEntries);
    }
    const chain = await new AuditLog(db(), clock).check(household.practiceId);
    assert.equal(chain.broken, undefined);
    assert.equal(chain.events, 3);
  });

  it('finds the payment an event names by Settle\'s id before its payment intent, and by its charge last', async () => {
    const { household, deps: d } = await fresh();
    const first = await pendingPayment(db(), clock, household, money(1_000, 'USD'));
    await handleStripeEvent(d, sandboxCheckoutEvents(clock, first)[0]!);
    const paid = (await payments().get(household.practiceId, first.id))!;
    // A second payment's event that carries the first one's payment intent is still the second payment's.
    const second = await pendingPayment(db(), clock, household, money(2_000, 'USD'));
    const [event] = sandboxCheckoutEvents(clock, second);
    const object = event!.data!.object!;
    const posted = await handleStripeEvent(d, { ...event!, data: { object: { ...object, id: paid.stripe.paymentIntent } } });
    assert.equal(posted.outcome, 'payment-posted');
    assert.equal(posted.paymentId, second.id);
    // A dispute naming an unknown payment intent is found by its charge.
    const opened = await handleStripeEvent(d, disputeEvent('charge.dispute.created', paid.stripe.charge!, 'pi_unknown', 1_000, 'needs_response'));
    assert.equal(opened.outcome, 'dispute-opened');
    assert.equal(opened.paymentId, first.id);
  });

  it('posts a refund after a payment: refund entries and a second outbox row, once', async () => {
    const { household, deps: d } = await fresh();
    const payment = await pendingPayment(db(), clock, household, money(12_000, 'USD'));
    const [succeeded] = sandboxCheckoutEvents(clock, payment);
    await handleStripeEvent(d, succeeded!);
    const stored = (await payments().get(household.practiceId, payment.id))!;
    const partial = refundEvent(stored.stripe.charge!, stored.stripe.paymentIntent!, 12_000, 3_000);
    const refunded = await handleStripeEvent(d, partial);
    assert.equal(refunded.outcome, 'refund-posted');
    // The youngest allocation is taken back first: $20 from the newer balance, $10 from the older.
    assert.deepEqual(refunded.allocations, [{ balanceId: household.newerBalanceId, amountMinor: 2_000 }, { balanceId: household.olderBalanceId, amountMinor: 1_000 }]);
    assert.equal((await handleStripeEvent(d, partial)).outcome, 'duplicate');
    let rows = await paymentRows(db(), household.practiceId, payment.id);
    assert.deepEqual(rows.entries.filter((e) => e.resource === 'Refund').map((e) => e.effect), [2_000, 1_000]);
    assert.deepEqual(rows.outbox.map((o) => [o.kind, o.amount]), [['payment', 12_000], ['refund', 3_000]]);
    assert.equal((await payments().get(household.practiceId, payment.id))?.status, 'partially_refunded');
    assert.equal((await ledger().getBalance(household.olderBalanceId))?.status, 'open', 'money owed again reopens the balance');
    // An older cumulative figure arriving late changes nothing; the full refund takes back the rest.
    assert.equal((await handleStripeEvent(d, refundEvent(stored.stripe.charge!, stored.stripe.paymentIntent!, 12_000, 1_000))).outcome, 'noop');
    assert.equal((await handleStripeEvent(d, refundEvent(stored.stripe.charge!, stored.stripe.paymentIntent!, 12_000, 12_000))).outcome, 'refund-posted');
    rows = await paymentRows(db(), household.practiceId, payment.id);
    assert.equal(rows.entries.reduce((sum, e) => sum + e.effect, 0), 0, 'payment and refunds cancel out');
    assert.deepEqual(rows.outbox.map((o) => [o.kind, o.amount]), [['payment', 12_000], ['refund', 3_000], ['refund', 9_000]]);
    assert.equal((await payments().get(household.practiceId, payment.id))?.status, 'refunded');
    assert.equal((await ledger().getBalance(household.olderBalanceId))?.patientAmount.amount, 10_000);
    assert.equal((await ledger().getBalance(household.newerBalanceId))?.patientAmount.amount, 5_000);
  });

  it('holds a dispute\'s balances in the ledger\'s lock order, so a posting to the same balances waits instead of deadlocking', { skip: engine === 'pglite' ? 'PGlite runs one transaction at a time' : undefined }, async () => {
    const { household, deps: d } = await fresh();
    // Two accounts of one guarantor; the older charge on the account that sorts second, so the payment's allocations
    // (oldest first) run against the order postings lock balances in (guarantor, then account).
    const ledgerRepo = ledger();
    const accounts = await Promise.all(['X', 'Y'].map((v) => ledgerRepo.ensureAccount(household.practiceId, { identifier: { system: 'urn:acct', value: `lock-${v}` }, guarantorId: household.guarantorId })));
    const [low, high] = [...accounts].sort();
    const post = (accountId: string, date: string) => withTransaction(db(), (tx) => ledgerRepo.on(tx).postSource(household.practiceId,
      { connector: 'ehr', resourceType: 'Invoice', sourceId: `lock-${accountId}`, versionId: '1', lastUpdated: null }, { accountId, guarantorId: household.guarantorId, patientId: null },
      [{ lineKey: 'l0', kind: 'charge', amount: money(1_000, 'USD'), serviceDate: date, payer: 'patient', serviceCode: null, description: null }]));
    const older = (await post(high!, '2026-01-02')).balanceIds[0]!;
    const newer = (await post(low!, '2026-02-02')).balanceIds[0]!;
    const payment = await new PaymentRepository(db().pool, clock).createPending({ practiceId: household.practiceId, guarantorId: household.guarantorId, balanceIds: [older, newer], amount: money(2_000, 'USD') });
    const [succeeded] = sandboxCheckoutEvents(clock, payment);
    assert.deepEqual((await handleStripeEvent(d, succeeded!)).allocations?.map((a) => a.balanceId), [older, newer]);
    const stored = (await payments().get(household.practiceId, payment.id))!;
    // Another transaction posting to both balances holds the first one (in lock order) while the dispute starts.
    const other = await db().pool.connect();
    try {
      await other.query('BEGIN');
      await other.query('SELECT id FROM balances WHERE id = $1 FOR UPDATE', [newer]);
      const dispute = handleStripeEvent(d, disputeEvent('charge.dispute.created', stored.stripe.charge!, stored.stripe.paymentIntent!, 2_000, 'needs_response'));
      await new Promise((resolve) => setTimeout(resolve, 300));
      // Then it takes the second: the dispute must not be holding it (it waits for the first), or this deadlocks.
      await other.query(`SET LOCAL lock_timeout = '3s'`);
      await other.query('SELECT id FROM balances WHERE id = $1 FOR UPDATE', [older]);
      await other.query('COMMIT');
      assert.equal((await dispute).outcome, 'dispute-opened');
    } finally {
      other.release();
    }
    for (const id of [older, newer]) assert.equal((await ledger().getBalance(id))?.status, 'disputed');
  });

  it('puts the paid balances on hold (disputed) when a dispute opens, and lifts the hold when it is won', async () => {
    const { household, deps: d } = await fresh();
    const payment = await pendingPayment(db(), clock, household, money(4_000, 'USD'));
    const [succeeded] = sandboxCheckoutEvents(clock, payment);
    await handleStripeEvent(d, succeeded!);
    const stored = (await payments().get(household.practiceId, payment.id))!;
    const opened = await handleStripeEvent(d, disputeEvent('charge.dispute.created', stored.stripe.charge!, stored.stripe.paymentIntent!, 4_000, 'needs_response'));
    assert.equal(opened.outcome, 'dispute-opened');
    const held = await ledger().getBalance(household.olderBalanceId);
    assert.equal(held?.status, 'disputed');
    assert.equal(held?.outreachEligible, false);
    assert.equal((await ledger().getBalance(household.newerBalanceId))?.status, 'open', 'a balance the payment did not touch is not held');
    assert.equal((await payments().get(household.practiceId, payment.id))?.status, 'disputed');
    const history = await ledger().statusHistory(household.olderBalanceId);
    assert.equal(history.at(-1)?.actor, 'system:stripe');
    const won = await handleStripeEvent(d, disputeEvent('charge.dispute.closed', stored.stripe.charge!, stored.stripe.paymentIntent!, 4_000, 'won'));
    assert.equal(won.outcome, 'dispute-won');
    assert.equal((await ledger().getBalance(household.olderBalanceId))?.status, 'open');
    assert.equal((await payments().get(household.practiceId, payment.id))?.status, 'succeeded');
    const rows = await paymentRows(db(), household.practiceId, payment.id);
    assert.equal(rows.entries.length, 1);
    assert.equal(rows.outbox.length, 1);
  });

  it('reverses the payment when a dispute is lost: reversal entries, a reversal write-back, hold lifted', async () => {
    const { household, deps: d } = await fresh();
    const payment = await pendingPayment(db(), clock, household, money(15_000, 'USD'));
    const [succeeded] = sandboxCheckoutEvents(clock, payment);
    await handleStripeEvent(d, succeeded!);
    assert.equal((await ledger().getBalance(household.olderBalanceId))?.status, 'paid');
    const stored = (await payments().get(household.practiceId, payment.id))!;
    await handleStripeEvent(d, disputeEvent('charge.dispute.created', stored.stripe.charge!, stored.stripe.paymentIntent!, 15_000, 'needs_response'));
    const lost = await handleStripeEvent(d, disputeEvent('charge.dispute.closed', stored.stripe.charge!, stored.stripe.paymentIntent!, 15_000, 'lost'));
    assert.equal(lost.outcome, 'dispute-lost');
    const rows = await paymentRows(db(), household.practiceId, payment.id);
    assert.deepEqual(rows.outbox.map((o) => [o.kind, o.amount]), [['payment', 15_000], ['reversal', 15_000]]);
    assert.equal(rows.entries.reduce((sum, e) => sum + e.effect, 0), 0);
    for (const id of [household.olderBalanceId, household.newerBalanceId]) {
      const balance = await ledger().getBalance(id);
      assert.equal(balance?.status, 'open');
      const check = await ledger().verifyBalance(id);
      assert.equal(check.stored, check.fromEntries);
    }
  });

  it('marks a declined payment failed, and a later success still posts it', async () => {
    const { household, deps: d } = await fresh();
    const payment = await pendingPayment(db(), clock, household, money(1_000, 'USD'));
    const [failed] = sandboxCheckoutEvents(clock, payment, 'card_declined');
    assert.equal(failed!.type, 'payment_intent.payment_failed');
    assert.equal((await handleStripeEvent(d, failed!)).outcome, 'payment-failed');
    const stored = await payments().get(household.practiceId, payment.id);
    assert.equal(stored?.status, 'failed');
    assert.equal(stored?.failureCode, 'card_declined');
    assert.deepEqual((await paymentRows(db(), household.practiceId, payment.id)).entries, []);
    const [succeeded] = sandboxCheckoutEvents(clock, payment);
    assert.equal((await handleStripeEvent(d, succeeded!)).outcome, 'payment-posted');
    assert.equal((await payments().get(household.practiceId, payment.id))?.status, 'succeeded');
  });

  it('records but does not act on events for no known payment, and refuses unreadable ones without storing them', async () => {
    const foreign = stripeEvent('payment_intent.succeeded', { id: 'pi_x', amount: 100, currency: 'usd', metadata: {} });
    assert.equal((await handleStripeEvent(deps, foreign)).outcome, 'ignored');
    const unknown = stripeEvent('payment_intent.succeeded', { id: 'pi_y', amount: 100, currency: 'usd', metadata: { settle_payment_id: '00000000-0000-4000-8000-000000000000' } });
    assert.equal((await handleStripeEvent(deps, unknown)).outcome, 'unknown-payment');
    const notUuid = stripeEvent('payment_intent.succeeded', { id: 'pi_z', amount: 100, currency: 'usd', metadata: { settle_payment_id: 'pay_not_a_uuid' } });
    assert.equal((await handleStripeEvent(deps, notUuid)).outcome, 'unknown-payment');
    assert.equal((await payments().getEvent(h.practiceId, unknown.id))?.outcome, 'unknown-payment');
    const broken = stripeEvent('charge.refunded', { id: 'ch_1' });
    await assert.rejects(handleStripeEvent(deps, broken), StripeEventError);
    assert.equal(await payments().getEvent(h.practiceId, broken.id), undefined);
  });
});
