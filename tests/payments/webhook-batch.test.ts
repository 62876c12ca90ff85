import assert from 'node:assert/strict';
import { it, mock } from 'node:test';
import pg from 'pg';
import { ManualClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { signSandboxEvent } from '../../src/payments/sandbox.ts';
import { StripeEventError } from '../../src/payments/stripe-events.ts';
import { handleStripeEvents, settleStripeEvents } from '../../src/payments/webhook-batch.ts';
import type { StripeEventHandlerDeps } from '../../src/payments/webhook-handler.ts';
import { processStripeWebhook } from '../../src/payments/webhook-route.ts';
import { AuditLog } from '../../src/store/audit.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { PaymentRepository, type Payment } from '../../src/store/payments.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { cipher, paymentRows, pendingPayment, refundEvent, sandboxCheckoutEvents, seedHousehold, silentLogger, stripeEvent, type Household } from './webhook-fixtures.ts';

const SECRET = 'whsec_batch_test';

/** The SQL text of every statement sent while `work` runs. */
async function statementsOf<T>(work: () => Promise<T>): Promise<{ result: T; sent: string[] }> {
  const query = mock.method(pg.Client.prototype, 'query');
  try {
    const result = await work();
    const sent = query.mock.calls.map((c) => String(typeof c.arguments[0] === 'string' ? c.arguments[0] : (c.arguments[0] as { text: string }).text).trim());
    return { result, sent };
  } finally {
    query.mock.restore();
  }
}

/** A statement's first words (what it does and to which table), to compare statement sequences. */
const statementKind = (sql: string): string => sql.split(/\s+/).slice(0, 3).join(' ');

describeOnEachDatabase('Stripe webhook batches', (db, engine) => {
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  let n = 0;
  const ledger = () => new LedgerRepository(db().pool, cipher, clock);
  const payments = () => new PaymentRepository(db().pool, clock);
  /** Households of one practice, each a guarantor owing $100.00 (older) and $50.00 (newer). */
  const households = async (count: number): Promise<Household[]> => {
    const out: Household[] = [];
    for (let i = 0; i < count; i++) out.push(await seedHousehold(db(), clock, `wh-b-${engine}-${++n}`));
    return out;
  };
  const depsOf = (h: Household): StripeEventHandlerDeps => ({ db: db(), clock, practiceId: h.practiceId, cipher, logger: silentLogger });

  /** `count` guarantors of the household's practice, each owing $40.00 on one balance, with a pending payment each. */
  const guarantorPayments = async (h: Household, count: number): Promise<Payment[]> => {
    const repo = ledger();
    const out: Payment[] = [];
    for (let i = 0; i < count; i++) {
      const key = `G-${++n}`;
      const patientId = await repo.upsertPatient(h.practiceId, { system: 'urn:mrn', value: key });
      const guarantorId = await repo.ensureGuarantor(h.practiceId, { selfPatientId: patientId });
      const accountId = await repo.ensureAccount(h.practiceId, { identifier: { system: 'urn:acct', value: key }, patientId });
      const result = await repo.postSource(h.practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: key, versionId: '1', lastUpdated: null },
        { accountId, guarantorId, patientId }, [{ lineKey: 'l0', kind: 'charge', amount: money(4_000, 'USD'), serviceDate: '2026-01-01', payer: 'patient', serviceCode: null, description: null }]);
      out.push(await payments().createPending({ practiceId: h.practiceId, guarantorId, balanceIds: result.balanceIds, amount: money(1_000 + i, 'USD') }));
    }
    return out;
  };

  /** Each payment posted once: its entries, its write-back, its balance's amount and entries agree. */
  const assertPostedOnce = async (h: Household, paid: readonly Payment[]) => {
    for (const p of paid) {
      const rows = await paymentRows(db(), h.practiceId, p.id);
      assert.deepEqual(rows.outbox.map((o) => [o.kind, o.amount]), [['payment', p.amount.amount]]);
      assert.equal(rows.entries.reduce((sum, e) => sum + e.effect, 0), -p.amount.amount);
      for (const id of p.balanceIds) {
        const check = await ledger().verifyBalance(id);
        assert.equal(check.stored, check.fromEntries);
      }
    }
  };

  it('handles a batch with a fixed number of statements: one read, BEGIN, one claim, the ledger\'s posting once, one finish, COMMIT', async () => {
    const [h] = await households(1);
    const paid = await guarantorPayments(h!, 3);
    const declined = await pendingPayment(db(), clock, h!, money(700, 'USD'));
    const events = [...paid.flatMap((p) => sandboxCheckoutEvents(clock, p)), ...sandboxCheckoutEvents(clock, declined, 'card_declined')];
    const { result, sent } = await statementsOf(() => handleStripeEvents(depsOf(h!), [...events, events[0]!, stripeEvent('customer.created', { id: 'cus_1' })]));
    assert.deepEqual(result.map((r) => r.outcome), [...Array(3).fill(['payment-posted', 'payment-already-posted']).flat(), 'payment-failed', 'duplicate', 'ignored']);
    assert.match(sent[0]!, /^SELECT account, event_id FROM stripe_events/);
    assert.deepEqual([sent[1], sent.at(-1)], ['BEGIN', 'COMMIT']);
    assert.match(sent[2]!, /^WITH req AS[\s\S]*INSERT INTO stripe_events[\s\S]*FOR UPDATE/);
    const posting = sent.slice(3, -2);
    // The ledger's posting, once for the batch: the same statements as for a batch of one payment (their number is
    // the ledger's, `LedgerBatch.postSources`).
    const [single] = await guarantorPayments(h!, 1);
    const one = await statementsOf(() => handleStripeEvents(depsOf(h!), sandboxCheckoutEvents(clock, single!)));
    assert.deepEqual(posting.map(statementKind), one.sent.slice(3, -2).map(statementKind), posting.join('\n'));
    assert.ok(posting.length > 0 && posting.every((sql) => !/audit_|stripe_events|payments/.test(sql)), posting.join('\n'));
    assert.match(sent.at(-2)!, /UPDATE payments[\s\S]*INSERT INTO writeback_outbox[\s\S]*UPDATE stripe_events[\s\S]*audit_append/);
    assert.equal(sent.length, 5 + posting.length, sent.join('\n'));
    assert.equal((await payments().get(h!.practiceId, declined.id))?.status, 'failed');
    await assertPostedOnce(h!, paid);
    const chain = await new AuditLog(db(), clock).check(h!.practiceId);
    assert.deepEqual([chain.broken, chain.events], [undefined, 5], 'the batch\'s 4 and the single payment\'s');
    // Stripe's retries of all of them: the one read, nothing else.
    const again = await statementsOf(() => handleStripeEvents(depsOf(h!), events));
    assert.deepEqual(again.result.map((r) => r.outcome), Array(events.length).fill('duplicate'));
    assert.equal(again.sent.length, 1, again.sent.join('\n'));
  });

  it('posts a burst of concurrent webhook deliveries, duplicates of one event id among them, in one batch: each once', async () => {
    const [h] = await households(1);
    const paid = await guarantorPayments(h!, 8);
    const events = paid.flatMap((p) => sandboxCheckoutEvents(clock, p));
    const deliveries = [...events, ...events.slice(0, 5), events[0]!].map((event) => signSandboxEvent(event, { clock, secret: SECRET }));
    const deps = { ...depsOf(h!), secrets: SECRET };
    const { result: acks, sent } = await statementsOf(() => Promise.all(deliveries.map(({ payload, header }) => processStripeWebhook(deps, Buffer.from(payload), header))));
    const count = (outcome: string) => acks.filter((a) => a.outcome === outcome).length;
    assert.deepEqual([count('payment-posted'), count('payment-already-posted'), count('duplicate')], [8, 8, 6]);
    assert.equal(sent.filter((sql) => sql === 'BEGIN').length, 1, 'one transaction for the burst');
    await assertPostedOnce(h!, paid);
    for (const p of paid) assert.equal((await ledger().getBalance(p.balanceIds[0]!))?.patientAmount.amount, 4_000 - p.amount.amount);
    const chain = await new AuditLog(db(), clock).check(h!.practiceId);
    assert.deepEqual([chain.broken, chain.events], [undefined, 8]);
  });

  it('posts payments of one guarantor in one batch as in turn: the second, sharing balances, alone after it', async () => {
    const [h] = await households(1);
    const pending = [await pendingPayment(db(), clock, h!, money(1_000, 'USD')), await pendingPayment(db(), clock, h!, money(2_000, 'USD'))];
    const results = await handleStripeEvents(depsOf(h!), pending.flatMap((p) => sandboxCheckoutEvents(clock, p)));
    assert.deepEqual(results.map((r) => r.outcome), ['payment-posted', 'payment-already-posted', 'payment-posted', 'payment-already-posted']);
    assert.equal((await ledger().getBalance(h!.olderBalanceId))?.patientAmount.amount, 7_000, 'both on the older balance, oldest first');
    await assertPostedOnce(h!, pending);
  });

  it('handles a refund alone, and a bad event without failing the others of its batch', async () => {
    const [h, other] = await households(2);
    const first = await pendingPayment(db(), clock, h!, money(1_000, 'USD'));
    await handleStripeEvents(depsOf(h!), sandboxCheckoutEvents(clock, first).slice(0, 1));
    const stored = (await payments().get(h!.practiceId, first.id))!;
    // A payment of this practice whose balances are another practice's: its posting throws (the batch fails).
    const foreign = await payments().createPending({ practiceId: h!.practiceId, guarantorId: h!.guarantorId, balanceIds: [other!.olderBalanceId], amount: money(500, 'USD') });
    // An event id the database refuses (longer than 255 characters).
    const refused = { ...sandboxCheckoutEvents(clock, await pendingPayment(db(), clock, other!, money(300, 'USD')))[0]!, id: `evt_${'x'.repeat(300)}` };
    const second = await pendingPayment(db(), clock, h!, money(2_000, 'USD'));
    const batch = [
      refundEvent(stored.stripe.charge!, stored.stripe.paymentIntent!, 1_000, 400), ...sandboxCheckoutEvents(clock, foreign).slice(0, 1), refused,
      ...sandboxCheckoutEvents(clock, second), stripeEvent('charge.refunded', { id: 'ch_unreadable' }),
    ];
    const settled = await settleStripeEvents(depsOf(h!), batch);
    const outcomes = settled.map((s) => ('result' in s ? s.result.outcome : s.error instanceof StripeEventError ? 'invalid' : 'error'));
    assert.deepEqual(outcomes, ['refund-posted', 'error', 'error', 'payment-posted', 'payment-already-posted', 'invalid']);
    assert.equal(await payments().getEvent(h!.practiceId, batch[1]!.id), undefined, 'the failed event is not recorded: Stripe retries it');
    assert.equal(await payments().getEvent(h!.practiceId, batch[5]!.id), undefined);
    assert.equal((await payments().get(h!.practiceId, foreign.id))?.status, 'pending');
    assert.deepEqual((await paymentRows(db(), h!.practiceId, first.id)).outbox.map((o) => [o.kind, o.amount]), [['payment', 1_000], ['refund', 400]]);
    assert.equal((await payments().get(h!.practiceId, second.id))?.status, 'succeeded');
    await assert.rejects(handleStripeEvents(depsOf(h!), [batch[5]!]), StripeEventError);
    const chain = await new AuditLog(db(), clock).check(h!.practiceId);
    assert.equal(chain.broken, undefined);
    assert.equal(chain.events, 3, 'first payment, its refund, second payment');
  });

  it('runs concurrent batches on the server without deadlock, each event once', { skip: engine === 'pglite' ? 'PGlite runs one transaction at a time' : undefined }, async () => {
    // Guarantors with several payments each (sharing balances), their events delivered to four processes at once,
    // each batch in a different order.
    const [h] = await households(1);
    const paid = await guarantorPayments(h!, 8);
    paid.push(...await Promise.all(paid.slice(0, 4).map((p) => payments().createPending({ practiceId: h!.practiceId, guarantorId: p.guarantorId, balanceIds: p.balanceIds, amount: money(500, 'USD') }))));
    const events = paid.flatMap((p) => sandboxCheckoutEvents(clock, p));
    const orders = [events, [...events].reverse(), events.filter((_, i) => i % 2 === 0).concat(events.filter((_, i) => i % 2 === 1)), [...events].sort((a, b) => (a.id < b.id ? -1 : 1))];
    const results = (await Promise.all(orders.map((batch) => handleStripeEvents(depsOf(h!), batch)))).flat();
    assert.equal(results.filter((r) => r.outcome === 'payment-posted').length, paid.length);
    assert.equal(results.filter((r) => r.outcome === 'duplicate').length, events.length * 3);
    for (const p of paid) {
      const rows = await paymentRows(db(), h!.practiceId, p.id);
      assert.deepEqual(rows.outbox.map((o) => o.amount), [p.amount.amount]);
    }
    for (const id of new Set(paid.flatMap((p) => p.balanceIds))) {
      const check = await ledger().verifyBalance(id);
      assert.equal(check.stored, check.fromEntries);
    }
    const chain = await new AuditLog(db(), clock).check(h!.practiceId);
    assert.deepEqual([chain.broken, chain.events], [undefined, paid.length]);
  });
});
