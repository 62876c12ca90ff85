/**
 * Staff API for payments, plans, refunds and reconciliation (API key; every read scoped to the key's practice):
 *
 *   GET  /payments/{id}            one payment: amount, status, how it was split, Stripe ids, refunds started
 *   POST /payments/{id}/refunds    start a refund (all that is left, or `amount` "12.34"); the ledger changes
 *                                  when Stripe's charge.refunded webhook arrives
 *   GET  /plans/{id}               one payment plan with its installments
 *   POST /plans/{id}/payoff        pay the plan off early with the saved card (the unpaid remainder)
 *   GET  /reconciliation?date=     the day's reconciliation report (run now when the daily job has not yet)
 */
import type { Logger } from 'winston';
import { ApiError } from '../api/problem.ts';
import type { AnyRoute, JsonSchema, RouteContext } from '../api/routes.ts';
import type { Clock } from '../domain/clock.ts';
import { formatMoney, MoneyError, parseMoney, type Money } from '../domain/money.ts';
import { AuditLog } from '../store/audit.ts';
import type { Database } from '../store/database.ts';
import { PaymentRepository, type Payment } from '../store/payments.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { planState, PlanRepository, type Plan } from '../store/plans.ts';
import type { GatewayFor, PaymentGateway } from './gateway.ts';
import { payOffPlan, PayoffError } from './plan-jobs.ts';
import { planRemainingCents } from '../domain/payment-plan-state.ts';
import { reconcileDay, ReconcileDateError, storedReconciliation } from './reconcile-job.ts';
import { isIdempotencyKey, refundsOfPayment, RefundError, startRefund, type RefundReason, type RefundRecord } from './refund-service.ts';

/** What the routes need. */
export interface PaymentAdminRouteDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly cipher: PhiCipher;
  readonly logger: Pick<Logger, 'info' | 'warn'>;
  /** The practice's gateway; absent: refunds, payoffs and reconciliation runs answer 503. */
  readonly gatewayFor?: GatewayFor | undefined;
}

const MONEY: JsonSchema = { type: 'object', required: ['amountMinor', 'currency', 'display'], properties: { amountMinor: { type: 'integer' }, currency: { type: 'string' }, display: { type: 'string' } } };
const REFUND: JsonSchema = {
  type: 'object',
  properties: { id: { type: 'string' }, paymentId: { type: 'string' }, amount: MONEY, reason: { type: ['string', 'null'] }, stripeRefundId: { type: ['string', 'null'] }, status: { type: 'string' }, createdAt: { type: 'string' } },
};
const PAYMENT: JsonSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' }, guarantorId: { type: 'string' }, status: { type: 'string' }, amount: MONEY, refunded: MONEY, reversed: MONEY,
    balanceIds: { type: 'array', items: { type: 'string' } },
    allocations: { type: 'array', items: { type: 'object', properties: { balanceId: { type: 'string' }, amountMinor: { type: 'integer' } } } },
    stripe: { type: 'object' }, failureCode: { type: ['string', 'null'] }, succeededAt: { type: ['string', 'null'] }, createdAt: { type: 'string' },
    refunds: { type: 'array', items: REFUND },
  },
};
const PLAN: JsonSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' }, guarantorId: { type: 'string' }, status: { type: 'string' }, total: MONEY, remaining: MONEY, months: { type: 'integer' },
    balanceIds: { type: 'array', items: { type: 'string' } }, hasSavedCard: { type: 'boolean' },
    installments: { type: 'array', items: { type: 'object' } },
  },
};

const view = (m: Money) => ({ amountMinor: m.amount, currency: m.currency, display: formatMoney(m) });
const iso = (d: Date | null) => (d ? d.toISOString() : null);

function refundView(r: RefundRecord) {
  return { id: r.id, paymentId: r.paymentId, amount: view(r.amount), reason: r.reason, stripeRefundId: r.stripeRefundId, status: r.status, createdAt: r.createdAt.toISOString() };
}

function paymentView(p: Payment, refunds: RefundRecord[]) {
  const c = p.amount.currency;
  return {
    id: p.id, guarantorId: p.guarantorId, status: p.status, amount: view(p.amount), refunded: view({ amount: p.refundedMinor, currency: c }),
    reversed: view({ amount: p.reversedMinor, currency: c }), balanceIds: p.balanceIds, allocations: p.allocations, stripe: p.stripe,
    failureCode: p.failureCode, succeededAt: iso(p.succeededAt), createdAt: p.createdAt.toISOString(), refunds: refunds.map(refundView),
  };
}

/** A plan as staff see it (no Stripe customer or card ids: whether a card is saved is enough). */
export function planView(p: Plan) {
  return {
    id: p.id, guarantorId: p.guarantorId, status: p.status, months: p.months, total: view({ amount: p.totalMinor, currency: p.currency }),
    remaining: view({ amount: p.status === 'active' || p.status === 'pending' ? planRemainingCents(planState(p)) : 0, currency: p.currency }),
    balanceIds: p.balanceIds, hasSavedCard: Boolean(p.stripe.customer && p.stripe.paymentMethod), createdAt: p.createdAt.toISOString(),
    activatedAt: iso(p.activatedAt), endedAt: iso(p.endedAt),
    installments: p.installments.map((i) => ({
      number: i.number, dueDate: i.dueDate, amount: view({ amount: i.amountMinor, currency: p.currency }), status: i.status, attempts: i.attempts,
      nextAttemptOn: i.nextAttemptOn, lastFailureCode: i.lastFailureCode, paymentId: i.paymentId, paidAt: iso(i.paidAt),
    })),
  };
}

const REFUND_STATUS: Record<RefundError['code'], number> = { 'not-found': 404, 'not-refundable': 409, 'invalid-amount': 422, refused: 422, 'idempotency-conflict': 422 };

/** The request's `Idempotency-Key`, if any. @throws ApiError 400 `invalid_idempotency_key` when malformed. */
function idempotencyKeyOf(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (!isIdempotencyKey(header)) throw new ApiError(400, 'invalid_idempotency_key', 'The Idempotency-Key header must be 1 to 255 visible ASCII characters (a UUID, for example).');
  return header;
}
const PAYOFF_STATUS: Record<PayoffError['code'], number> = { 'not-found': 404, 'not-active': 409, 'no-saved-card': 409 };

/** The staff routes for payments, plans, refunds and reconciliation. */
export function paymentAdminRoutes(deps: PaymentAdminRouteDeps): AnyRoute[] {
  const payments = new PaymentRepository(deps.db.pool, deps.clock);
  const plans = new PlanRepository(deps.db.pool, deps.clock);
  const audit = new AuditLog(deps.db, deps.clock);
  const gateway = async (practiceId: string): Promise<PaymentGateway> => {
    if (!deps.gatewayFor) throw new ApiError(503, 'payments_not_configured', 'Payments are not configured in this process.');
    return deps.gatewayFor(practiceId);
  };
  return [
    {
      method: 'get',
      path: '/payments/{id}',
      summary: 'One payment: amount, status, how it was split across balances, Stripe ids and the refunds started.',
      tag: 'payments',
      access: ['staff', 'integration'],
      responses: { 200: { description: 'The payment.', schema: PAYMENT }, 404: { description: 'No such payment in this practice.' } },
      async handler({ principal, params }) {
        const payment = await payments.get(principal!.practiceId, params.id!);
        if (!payment) throw new ApiError(404, 'not_found', `No payment ${params.id} in this practice.`);
        return paymentView(payment, await refundsOfPayment(deps.db.pool, principal!.practiceId, payment.id));
      },
    },
    {
      method: 'post',
      path: '/payments/{id}/refunds',
      summary: 'Refund a payment (all that is left, or `amount`); the ledger and the write-back follow Stripe\'s charge.refunded webhook. '
        + 'With an `Idempotency-Key` header, the same key and body again returns the first refund (header `Idempotent-Replayed: true`) and starts no second one.',
      tag: 'payments',
      access: ['staff'],
      body: {
        type: 'object',
        additionalProperties: false,
        properties: {
          amount: { type: 'string', pattern: '^[0-9]+(\\.[0-9]{1,2})?$', description: 'In the payment\'s currency, e.g. "12.34"; omitted: everything not yet refunded.' },
          reason: { enum: ['duplicate', 'requested_by_customer'] },
        },
      },
      responses: {
        202: { description: 'Stripe accepted the refund; the ledger changes when its webhook arrives.', schema: REFUND },
        404: { description: 'No such payment in this practice.' },
        400: { description: 'invalid_idempotency_key: the Idempotency-Key header is not 1–255 visible ASCII characters.', contentType: 'application/problem+json' },
        409: { description: 'The payment cannot be refunded (not succeeded, or nothing left).' },
        422: { description: 'The amount is more than is left, Stripe refused the refund, or refund_idempotency_conflict: the Idempotency-Key was used for a different request.' },
      },
      async handler({ req, res, principal, params, body }: RouteContext<{ amount?: string; reason?: RefundReason }, never>) {
        const practiceId = principal!.practiceId;
        const idempotencyKey = idempotencyKeyOf(req.get('idempotency-key'));
        const payment = await payments.get(practiceId, params.id!);
        if (!payment) throw new ApiError(404, 'not_found', `No payment ${params.id} in this practice.`);
        let amount: Money | undefined;
        if (body?.amount !== undefined) {
          try {
            amount = parseMoney(body.amount, payment.amount.currency);
          } catch (error) {
            if (error instanceof MoneyError) throw new ApiError(422, 'invalid_amount', `amount: ${error.message}`, [{ path: '/amount', message: error.message }]);
            throw error;
          }
        }
        try {
          const refund = await startRefund({ db: deps.db, clock: deps.clock, gateway: await gateway(practiceId) }, {
            practiceId, paymentId: payment.id, ...(amount ? { amount } : {}), ...(body?.reason ? { reason: body.reason } : {}), requestedBy: `apikey:${principal!.keyId}`,
            ...(idempotencyKey ? { idempotencyKey } : {}),
          });
          if (refund.replayed) {
            res.set('Idempotent-Replayed', 'true');
            return refundView(refund);
          }
          await audit.append({ practiceId, actor: `apikey:${principal!.keyId}`, action: 'payment.refund', entityType: 'payment', entityId: payment.id, detail: { refundId: refund.id, amountMinor: refund.amount.amount } });
          deps.logger.info('refund started', { paymentId: payment.id, refundId: refund.id, amountMinor: refund.amount.amount });
          return refundView(refund);
        } catch (error) {
          if (error instanceof RefundError) throw new ApiError(REFUND_STATUS[error.code], `refund_${error.code.replace(/-/g, '_')}`, error.message);
          throw error;
        }
      },
    },
    {
      method: 'get',
      path: '/plans/{id}',
      summary: 'One payment plan with its installments (status, attempts, next attempt).',
      tag: 'payments',
      access: ['staff', 'integration'],
      responses: { 200: { description: 'The plan.', schema: PLAN }, 404: { description: 'No such plan in this practice.' } },
      async handler({ principal, params }) {
        const plan = await plans.get(principal!.practiceId, params.id!);
        if (!plan) throw new ApiError(404, 'not_found', `No payment plan ${params.id} in this practice.`);
        return planView(plan);
      },
    },
    {
      method: 'post',
      path: '/plans/{id}/payoff',
      summary: 'Pay an active plan off early: the unpaid remainder is charged to the saved card, and the plan ends.',
      tag: 'payments',
      access: ['staff'],
      responses: {
        200: { description: 'Paid off: the plan as it is now.', schema: PLAN },
        402: { description: 'The card was declined (the plan continues as before).' },
        404: { description: 'No such plan in this practice.' },
        409: { description: 'The plan is not active, or has no saved card.' },
      },
      async handler({ principal, params }) {
        const practiceId = principal!.practiceId;
        try {
          const result = await payOffPlan({ db: deps.db, clock: deps.clock, gateway: await gateway(practiceId), cipher: deps.cipher, logger: deps.logger }, { practiceId, planId: params.id! });
          if (result.status === 'failed') throw new ApiError(result.transient ? 503 : 402, result.transient ? 'gateway_unavailable' : 'payoff_declined', `The payoff of ${formatMoney(result.amount)} was not charged: ${result.code}.`);
          await audit.append({ practiceId, actor: `apikey:${principal!.keyId}`, action: 'plan.payoff', entityType: 'plan', entityId: result.planId, detail: { paymentId: result.paymentId, amountMinor: result.amount.amount } });
          return planView((await plans.get(practiceId, result.planId))!);
        } catch (error) {
          if (error instanceof PayoffError) throw new ApiError(PAYOFF_STATUS[error.code], `payoff_${error.code.replace(/-/g, '_')}`, error.message);
          throw error;
        }
      },
    },
    {
      method: 'get',
      path: '/reconciliation',
      summary: 'The reconciliation of one practice-local day: payments and refunds vs write-backs vs Stripe balance transactions, every mismatch listed.',
      tag: 'payments',
      access: ['staff', 'integration'],
      query: { type: 'object', required: ['date'], additionalProperties: false, properties: { date: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}$' }, refresh: { type: 'boolean', default: false } } },
      responses: { 200: { description: 'The report (stored by the daily job, or run now).', schema: { type: 'object' } }, 400: { description: 'The date is not a date.' } },
      async handler({ principal, query }: { principal: { practiceId: string } | undefined; query: { date: string; refresh?: boolean } }) {
        const practiceId = principal!.practiceId;
        try {
          if (!query.refresh) {
            const stored = await storedReconciliation(deps.db, practiceId, query.date);
            if (stored) return stored;
          }
          return await reconcileDay({ db: deps.db, clock: deps.clock, logger: deps.logger, gatewayFor: gateway }, { practiceId, date: query.date });
        } catch (error) {
          if (error instanceof ReconcileDateError) throw new ApiError(400, 'invalid_date', error.message, [{ path: '?date', message: error.message }]);
          throw error;
        }
      },
    },
  ];
}
