/**
 * Refunds started by staff (API `POST /payments/{id}/refunds`, CLI `settle payments refund`): the request is
 * recorded, sent to the gateway with `refundParams` (idempotency key `settle-refund-<refund id>`), and the
 * Stripe refund id kept for reconciliation. The ledger does NOT change here: it changes when Stripe's
 * `charge.refunded` webhook arrives (once, however often it is delivered), like every movement of money.
 *
 * A request may carry the client's idempotency key (the API's `Idempotency-Key` header, the CLI's
 * `--idempotency-key`): the key is stored with the request and what it asked (payment, amount, reason), so the
 * same key again returns the first request's record (`replayed`) and starts no second refund, whatever happened
 * to the payment since; the same key with a different request is refused (`idempotency-conflict`). A request
 * still in flight (or interrupted before Stripe answered) is returned as it stands, `requested`.
 */
import { createHash } from 'node:crypto';
import type { Clock } from '../domain/clock.ts';
import type { Money } from '../domain/money.ts';
import type { Database, Queryable } from '../store/database.ts';
import { isUuid, PaymentRepository } from '../store/payments.ts';
import { refundParams } from './checkout.ts';
import type { PaymentGateway } from './gateway.ts';

/** Why a refund cannot be started. */
export class RefundError extends Error {
  readonly code: 'not-found' | 'not-refundable' | 'invalid-amount' | 'refused' | 'idempotency-conflict';
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

/** What {@link startRefund} returns: the refund request, and whether it is an earlier one replayed by its idempotency key. */
export interface StartedRefund extends RefundRecord {
  replayed: boolean;
}

interface RefundRow {
  id: string; payment_id: string; amount_minor: string; currency: string; reason: RefundReason | null; requested_by: string;
  stripe_refund_id: string | null; status: string; created_at: Date; request_hash?: string | null;
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

/** Whether a client idempotency key is acceptable: 1–255 visible ASCII characters (a UUID is the usual choice). */
export function isIdempotencyKey(key: string): boolean {
  return /^[\x21-\x7e]{1,255}$/.test(key);
}

/** The fingerprint of what a refund request asked, compared when its idempotency key comes again. */
function requestHash(input: { paymentId: string; amount?: Money; reason?: RefundReason }): string {
  const asked = [input.paymentId.toLowerCase(), input.amount?.amount ?? null, input.amount?.currency ?? null, input.reason ?? null];
  return createHash('sha256').update(JSON.stringify(asked)).digest('hex');
}

/** The request an idempotency key already started, as {@link startRefund} answers a replay; undefined when none. */
async function replay(db: Queryable, practiceId: string, key: string, hash: string): Promise<StartedRefund | undefined> {
  const { rows } = await db.query<RefundRow>(`SELECT ${COLUMNS}, request_hash FROM payment_refunds WHERE practice_id = $1 AND idempotency_key = $2`, [practiceId, key]);
  const row = rows[0];
  if (!row) return undefined;
  if (row.request_hash !== hash) {
    throw new RefundError('idempotency-conflict', `the Idempotency-Key was already used for a different refund request (refund ${row.id}): use a new key for a new request`);
  }
  if (row.status === 'failed') throw new RefundError('refused', `refund ${row.id}, the first request with this Idempotency-Key, was refused`);
  return { ...toRecord(row), replayed: true };
}

/**
 * Asks the gateway to refund (part of) a succeeded payment.
 * @param input.amount - omitted: everything not yet refunded.
 * @param input.idempotencyKey - the client's key: the same key and request again returns the first record
 *   (`replayed: true`) without a second refund.
 * @throws RefundError: `not-found` (no such payment in the practice), `not-refundable` (not succeeded, nothing
 *   left, or never reached Stripe), `invalid-amount` (wrong currency, zero, or more than is left), `refused`
 *   (the gateway said no: its message; also a replay of a refused request), `idempotency-conflict` (the key
 *   was used for a different request).
 */
export async function startRefund(
  deps: { db: Database; clock: Clock; gateway: PaymentGateway },
  input: { practiceId: string; paymentId: string; amount?: Money; reason?: RefundReason; requestedBy: string; idempotencyKey?: string },
): Promise<StartedRefund> {
  const key = input.idempotencyKey;
  const hash = requestHash(input);
  if (key !== undefined) {
    const earlier = await replay(deps.db.pool, input.practiceId, key, hash);
    if (earlier) return earlier;
  }
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
    `INSERT INTO payment_refunds (practice_id, payment_id, amount_minor, currency, reason, requested_by, idempotency_key, request_hash, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
     ON CONFLICT (practice_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING ${COLUMNS}`,
    [input.practiceId, payment.id, amount.amount, amount.currency, input.reason ?? null, input.requestedBy, key ?? null, key === undefined ? null : hash, now],
  );
  // Another request with the same key got in first (concurrently): answer as its replay.
  if (!rows[0]) return (await replay(deps.db.pool, input.practiceId, key!, hash))!;
  const record = toRecord(rows[0]);
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
  return { ...record, stripeRefundId: refund.id, status: refund.status, replayed: false };
}
