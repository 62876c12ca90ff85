import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type Stripe from 'stripe';
import { ManualClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { installmentChargeParams, refundParams } from '../../src/payments/checkout.ts';
import { reconcile, type SettleMovement } from '../../src/payments/reconcile.ts';
import { startStripeFake, type StripeFake } from '../support/stripe-fake/server.ts';
import { stripeSpecMissing } from '../support/stripe-fake/spec.ts';

describe('daily reconciliation against the Stripe fake', { skip: stripeSpecMissing() }, () => {
  let fake: StripeFake;
  let stripe: Stripe;
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  const window = { from: new Date('2026-03-02T00:00:00Z'), to: new Date('2026-03-03T00:00:00Z') };
  before(async () => {
    fake = await startStripeFake({ clock });
    stripe = fake.client();
  });
  after(() => fake.close());

  async function charge(n: number, cents: number): Promise<Stripe.PaymentIntent> {
    const { params, idempotencyKey } = installmentChargeParams({
      paymentId: `pay_${n}`, guarantorId: 'gua_1', planId: 'plan_1', installment: n, attempt: 1, amount: money(cents, 'USD'), customer: 'cus_1', paymentMethod: 'pm_card_visa',
    });
    return stripe.paymentIntents.create(params, { idempotencyKey });
  }

  it('matches what agrees and lists every mismatch', async () => {
    const a = await charge(1, 2500);
    const b = await charge(2, 4000);
    const c = await charge(3, 1234); // Stripe has it, Settle lost it
    const r = refundParams({ refundId: 'ref_1', paymentIntent: a.id, amount: money(500, 'USD') });
    const refund = await stripe.refunds.create(r.params, { idempotencyKey: r.idempotencyKey });
    const at = clock.now();
    const movements: SettleMovement[] = [
      { id: 'pay_1', kind: 'payment', amountCents: 2500, currency: 'USD', stripeSource: String(a.latest_charge), writeback: 'delivered', at },
      { id: 'pay_2', kind: 'payment', amountCents: 4100, currency: 'USD', stripeSource: String(b.latest_charge), writeback: 'pending', at },
      { id: 'ref_1', kind: 'refund', amountCents: 500, currency: 'USD', stripeSource: refund.id, writeback: 'dead-letter', at },
      { id: 'pay_9', kind: 'payment', amountCents: 900, currency: 'USD', stripeSource: 'ch_never', writeback: 'none', at },
      { id: 'pay_sandbox', kind: 'payment', amountCents: 700, currency: 'USD', writeback: 'delivered', at },
      { id: 'pay_old', kind: 'payment', amountCents: 1, currency: 'USD', stripeSource: 'ch_old', writeback: 'delivered', at: new Date('2026-03-01T10:00:00Z') },
    ];
    const transactions = (await stripe.balanceTransactions.list({ limit: 100 })).data;
    const report = reconcile({ window, movements, balanceTransactions: transactions, asOf: new Date('2026-03-02T17:00:00Z') });
    assert.equal(report.movements, 5, 'pay_old is outside the window');
    assert.equal(report.balanceTransactions, 4);
    assert.equal(report.matched, 2, 'pay_1 and ref_1 agree with Stripe');
    const sorted = [...report.mismatches].map((m) => ({ ...m })).sort((x, y) => x.kind.localeCompare(y.kind));
    assert.deepEqual(sorted, [
      { kind: 'amount-mismatch', movement: 'pay_2', balanceTransaction: transactions.find((t) => t.source === b.latest_charge)!.id, settleCents: 4100, stripeCents: 4000 },
      { kind: 'not-in-settle', balanceTransaction: transactions.find((t) => t.source === c.latest_charge)!.id, stripeSource: String(c.latest_charge), amount: 1234 },
      { kind: 'not-in-stripe', movement: 'pay_9', stripeSource: 'ch_never' },
      { kind: 'writeback-dead', movement: 'ref_1' },
      { kind: 'writeback-late', movement: 'pay_2' },
      { kind: 'writeback-missing', movement: 'pay_9' },
    ]);
  });

  it('is clean when everything agrees, and flags a Stripe charge recorded twice', () => {
    const at = new Date('2026-03-02T12:00:00Z');
    const bt = { id: 'txn_1', type: 'charge', amount: 100, currency: 'usd', source: 'ch_1', created: at.getTime() / 1000 };
    const one: SettleMovement = { id: 'p1', kind: 'payment', amountCents: 100, currency: 'USD', stripeSource: 'ch_1', writeback: 'delivered', at };
    assert.deepEqual(reconcile({ window, movements: [one], balanceTransactions: [bt], asOf: at }).mismatches, []);
    const twice = reconcile({ window, movements: [one, { ...one, id: 'p2' }], balanceTransactions: [bt], asOf: at });
    assert.deepEqual(twice.mismatches, [{ kind: 'duplicate-in-settle', movements: ['p1', 'p2'], stripeSource: 'ch_1' }]);
    const eur = reconcile({ window, movements: [{ ...one, currency: 'EUR' }], balanceTransactions: [bt], asOf: at });
    assert.equal(eur.mismatches[0]?.kind, 'currency-mismatch');
    const fee = reconcile({ window, movements: [], balanceTransactions: [{ ...bt, id: 'txn_fee', type: 'stripe_fee', source: null }], asOf: at });
    assert.deepEqual(fee.mismatches, []);
  });
});
