/**
 * Daily reconciliation, pure: Settle's payments and refunds vs their write-backs vs Stripe's balance
 * transactions, with every mismatch listed. The caller loads one day's movements and Stripe's balance
 * transactions for a slightly wider window (lookups use everything given; only items inside `window` must
 * match), so a payment posted at 23:59 whose balance transaction is stamped 00:01 is not a false alarm.
 */

/** A payment or refund as Settle recorded it. */
export interface SettleMovement {
  /** Settle's payment or refund id. */
  readonly id: string;
  readonly kind: 'payment' | 'refund';
  /** Positive minor units. */
  readonly amountCents: number;
  /** ISO 4217, upper case. */
  readonly currency: string;
  /** The Stripe object that moved the money: `ch_…`/`py_…` for a payment, `re_…` for a refund. Absent for sandbox payments. */
  readonly stripeSource?: string;
  readonly writeback: 'delivered' | 'pending' | 'failed' | 'dead-letter' | 'none';
  readonly at: Date;
}

/** The fields of a Stripe balance transaction reconciliation reads (`stripe.balanceTransactions.list`). */
export interface StripeBalanceTransactionLike {
  readonly id: string;
  readonly type: string;
  /** Signed minor units: charges positive, refunds negative. */
  readonly amount: number;
  /** Lower case, as Stripe sends it. */
  readonly currency: string;
  readonly source: string | { readonly id: string } | null;
  /** Unix seconds. */
  readonly created: number;
}

export type Mismatch =
  | { readonly kind: 'not-in-stripe'; readonly movement: string; readonly stripeSource: string }
  | { readonly kind: 'not-in-settle'; readonly balanceTransaction: string; readonly stripeSource: string; readonly amount: number }
  | { readonly kind: 'amount-mismatch'; readonly movement: string; readonly balanceTransaction: string; readonly settleCents: number; readonly stripeCents: number }
  | { readonly kind: 'currency-mismatch'; readonly movement: string; readonly balanceTransaction: string; readonly settle: string; readonly stripe: string }
  | { readonly kind: 'duplicate-in-settle'; readonly movements: readonly string[]; readonly stripeSource: string }
  | { readonly kind: 'writeback-missing' | 'writeback-dead' | 'writeback-late'; readonly movement: string };

export interface ReconciliationReport {
  readonly window: { readonly from: Date; readonly to: Date };
  readonly movements: number;
  readonly balanceTransactions: number;
  readonly matched: number;
  readonly mismatches: readonly Mismatch[];
}

export interface ReconcileInput {
  readonly window: { readonly from: Date; readonly to: Date };
  readonly movements: readonly SettleMovement[];
  readonly balanceTransactions: readonly StripeBalanceTransactionLike[];
  /** When reconciliation runs (for write-back lateness). */
  readonly asOf: Date;
  /** A write-back still pending this long after its payment is late (default 1 hour). */
  readonly writebackGraceMs?: number;
}

/** Balance-transaction types that correspond to a Settle movement; fees, payouts and the like are not compared. */
const MONEY_IN = new Set(['charge', 'payment']);
const MONEY_OUT = new Set(['refund', 'payment_refund']);

const sourceId = (s: StripeBalanceTransactionLike['source']) => (s === null ? undefined : typeof s === 'string' ? s : s.id);
const inWindow = (t: number, window: ReconcileInput['window']) => t >= window.from.getTime() && t < window.to.getTime();

/** Compares Settle's movements, their write-backs and Stripe's balance transactions. */
export function reconcile(input: ReconcileInput): ReconciliationReport {
  const { window, asOf } = input;
  const grace = input.writebackGraceMs ?? 60 * 60 * 1000;
  const mismatches: Mismatch[] = [];
  const bySource = new Map<string, StripeBalanceTransactionLike>();
  for (const bt of input.balanceTransactions) {
    const source = sourceId(bt.source);
    if (source && (MONEY_IN.has(bt.type) || MONEY_OUT.has(bt.type))) bySource.set(source, bt);
  }
  const movementsBySource = new Map<string, SettleMovement[]>();
  for (const m of input.movements) {
    if (!m.stripeSource) continue;
    const list = movementsBySource.get(m.stripeSource) ?? [];
    list.push(m);
    movementsBySource.set(m.stripeSource, list);
  }

  let matched = 0;
  const considered = input.movements.filter((m) => inWindow(m.at.getTime(), window));
  for (const m of considered) {
    if (m.writeback === 'none') mismatches.push({ kind: 'writeback-missing', movement: m.id });
    else if (m.writeback === 'dead-letter') mismatches.push({ kind: 'writeback-dead', movement: m.id });
    else if (m.writeback !== 'delivered' && asOf.getTime() - m.at.getTime() > grace) mismatches.push({ kind: 'writeback-late', movement: m.id });
    if (!m.stripeSource) continue; // sandbox or non-Stripe payment: nothing to compare
    const bt = bySource.get(m.stripeSource);
    if (!bt) {
      mismatches.push({ kind: 'not-in-stripe', movement: m.id, stripeSource: m.stripeSource });
      continue;
    }
    const expected = m.kind === 'payment' ? m.amountCents : -m.amountCents;
    if (bt.currency.toUpperCase() !== m.currency) {
      mismatches.push({ kind: 'currency-mismatch', movement: m.id, balanceTransaction: bt.id, settle: m.currency, stripe: bt.currency.toUpperCase() });
    } else if (bt.amount !== expected) {
      mismatches.push({ kind: 'amount-mismatch', movement: m.id, balanceTransaction: bt.id, settleCents: expected, stripeCents: bt.amount });
    } else {
      matched++;
    }
  }
  for (const [source, list] of movementsBySource) {
    if (list.length > 1 && list.some((m) => inWindow(m.at.getTime(), window))) {
      mismatches.push({ kind: 'duplicate-in-settle', movements: list.map((m) => m.id), stripeSource: source });
    }
  }
  let balanceTransactions = 0;
  for (const bt of input.balanceTransactions) {
    if (!inWindow(bt.created * 1000, window)) continue;
    balanceTransactions++;
    const source = sourceId(bt.source);
    if (!source || !(MONEY_IN.has(bt.type) || MONEY_OUT.has(bt.type))) continue;
    if (!movementsBySource.has(source)) mismatches.push({ kind: 'not-in-settle', balanceTransaction: bt.id, stripeSource: source, amount: bt.amount });
  }
  return { window, movements: considered.length, balanceTransactions, matched, mismatches };
}
