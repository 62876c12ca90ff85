/**
 * Refunds started by staff (API `POST /payments/{id}/refunds`, CLI `settle payments refund`): the request is
 * recorded, sent to the gateway with `refundParams` (idempotency key `settle-refund-<refund id>`), and the
 * Stripe refund id kept for reconciliation. The ledger does NOT change here: it changes when Stripe's
 * `charge.refunded` webhook arrives (once, however often it is delivered), like every movement of money.
 */
import type { Clock } from '../domain/clock.ts';
import type { Money } from '../domain/money.ts';
import type { Database, Queryable } from '../store/database.ts';
import { isUuid, PaymentRepository } from '../store/payments.ts';
import { refundParams } from './checkout.ts';
import type { PaymentGateway } from './gateway.ts';

/** Why a refund cannot be started. */
export class RefundError extends Error {
  readonly code: 'not-found' | 'not-refundable' | 'invalid-amount' | 'refused';
  constructor(code: RefundError['code'], message: string) {
    super(message);
    this.name = 'RefundError';
    this.code = code;
  }
}

export type RefundReason = 'duplicate' | 'requested_by_customer';

/** A refund request as recorded. */
export interface RefundRecord {
  id: string;
  paymentId: string;
  amount: Money;
  reason: RefundReason | null;
  requestedBy: string;
  stripeRefundId: string | null;
  /** `requested`, then Stripe's status (`succeeded`, `pending`, …), or `failed` when the gateway refused. */
  status: string;
  createdAt: Date;
}

interface RefundRow {
  id: string; payment_id: string; amount_minor: string; currency: string; reason: RefundReason | null; requested_by: string;
  stripe_refund_id: string | null; status: string; created_at: Date;
}

const toRecord = (r: RefundRow): RefundRecord => ({
  id: r.id, paymentId: r.payment_id, amount: { amount: Number(r.amount_minor), currency: r.currency }, reason: r.reason, requestedBy: r.requested_by,
  stripeRefundId: r.stripe_refund_id, status: r.status, createdAt: r.created_at,
});

const COLUMNS = 'id, payment_id, amount_minor::text AS amount_minor, currency, reason, requested_by, stripe_refund_id, status, created_at';

/** A payment's refund requests, oldest first. */
export async function refundsOfPayment(db: Queryable, practiceId: string, paymentId: string): Promise<RefundRecord[]> {
  if (!isUuid(paymentId)) return [];
  const { rows } = await db.query<RefundRow>(`SELECT ${COLUMNS} FROM payment_refunds WHERE practice_id = $1 AND payment_id = $2 ORDER BY created_at, id`, [practiceId, paymentId]);
  return rows.map(toRecord);
}

/** Refund requests created in [from, to) (for reconciliation). */
export async function refundsBetween(db: Queryable, practiceId: string, from: Date, to: Date): Promise<RefundRecord[]> {
  const { rows } = await db.query<RefundRow>(`SELECT ${COLUMNS} FROM payment_refunds WHERE practice_id = $1 AND created_at >= $2 AND created_at < $3 ORDER BY created_at, id`, [practiceId, from, to]);
  return rows.map(toRecord);
}

/**
 * Asks the gateway to refund (part of) a succeeded payment.
 * @param input.amount - omitted: everything not yet refunded.
 * @throws RefundError: `not-found` (no such payment in the practice), `not-refundable` (not succeeded, nothing
 *   left, or never reached Stripe), `invalid-amount` (wrong currency, zero, or more than is left), `refused`
 *   (the gateway said no: its message).
 */
export async function startRefund(
  deps: { db: Database; clock: Clock; gateway: PaymentGateway },
  input: { practiceId: string; paymentId: string; amount?: Money; reason?: RefundReason; requestedBy: string },
): Promise<RefundRecord> {
  const payment = await new PaymentRepository(deps.db.pool, deps.clock).get(input.practiceId, input.paymentId);
  if (!payment) throw new RefundError('not-found', `no payment ${input.paymentId} in this practice`);
  if (payment.status !== 'succeeded' && payment.status !== 'partially_refunded') throw new RefundError('not-refundable', `payment ${payment.id} is ${payment.status}: only succeeded payments are refunded`);
  if (!payment.stripe.paymentIntent) throw new RefundError('not-refundable', `payment ${payment.id} has no payment intent to refund`);
  const left = payment.amount.amount - payment.refundedMinor - payment.reversedMinor;
  if (left <= 0) throw new RefundError('not-refundable', `payment ${payment.id} has nothing left to refund`);
  const amount = input.amount ?? { amount: left, currency: payment.amount.currency };
  if (amount.currency !== payment.amount.currency) throw new RefundError('invalid-amount', `the refund is in ${amount.currency}; payment ${payment.id} is in ${payment.amount.currency}`);
  if (!Number.isSafeInteger(amount.amount) || amount.amount <= 0) throw new RefundError('invalid-amount', 'the refund amount must be more than zero');
  if (amount.amount > left) throw new RefundError('invalid-amount', `the refund of ${amount.amount} minor units is more than the ${left} left on payment ${payment.id}`);
  const now = deps.clock.now();
  const { rows } = await deps.db.pool.query<RefundRow>(
    `INSERT INTO payment_refunds (practice_id, payment_id, amount_minor, currency, reason, requested_by, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING ${COLUMNS}`,
    [input.practiceId, payment.id, amount.amount, amount.currency, input.reason ?? null, input.requestedBy, now],
  );
  const record = toRecord(rows[0]!);
  const request = refundParams({
    refundId: record.id, paymentIntent: payment.stripe.paymentIntent,
    ...(input.amount ? { amount } : {}), ...(input.reason ? { reason: input.reason } : {}),
  });
  const update = (status: string, stripeRefundId: string | null) =>
    deps.db.pool.query('UPDATE payment_refunds SET status = $3, stripe_refund_id = coalesce($4, stripe_refund_id), updated_at = $5 WHERE practice_id = $1 AND id = $2', [
      input.practiceId, record.id, status, stripeRefundId, deps.clock.now(),
    ]);
  let refund;
  try {
    refund = await deps.gateway.refund(request);
  } catch (error) {
    await update('failed', null);
    const err = error as { type?: string; code?: string; message?: string };
    if (err.type === 'StripeInvalidRequestError' || err.type === 'StripeCardError' || err.code === 'amount_too_large' || err.code === 'resource_missing') {
      throw new RefundError('refused', `the refund was refused: ${err.message ?? err.code}`);
    }
    throw error;
  }
  await update(refund.status, refund.id);
  return { ...record, stripeRefundId: refund.id, status: refund.status };
}
