/**
 * Payment plans and their installments. The installment rows are the schedule the due-installments sweep reads
 * (`next_attempt_at`), so a restart loses nothing; a sweep claims rows (`FOR UPDATE SKIP LOCKED` plus a
 * `claimed_until` lease) so two workers never charge the same installment at once.
 *
 * Writes that change a plan run inside the caller's transaction after `getForUpdate` locked the plan row:
 * pass the transaction client with `on(tx)`. Every row belongs to a practice and every read is scoped by it.
 */
import type { Clock } from '../domain/clock.ts';
import { chargeInstant, type Installment, type PlanOffer } from '../domain/payment-plan.ts';
import type { InstallmentStatus, PlanState, PlanStatus } from '../domain/payment-plan-state.ts';
import type { Queryable } from './database.ts';
import { isUuid } from './payments.ts';

/** A plan's status: `pending` until its first installment is paid at Checkout, then the state machine's. */
export type StoredPlanStatus = 'pending' | PlanStatus;

/** One installment as stored. */
export interface PlanInstallment {
  number: number;
  /** ISO date. */
  dueDate: string;
  amountMinor: number;
  status: InstallmentStatus;
  attempts: number;
  firstFailureOn: string | null;
  nextAttemptOn: string | null;
  /** When the sweep charges it next. */
  nextAttemptAt: Date | null;
  /** The Settle payment its charges are made under. */
  paymentId: string | null;
  lastFailureCode: string | null;
  paidAt: Date | null;
}

/** A payment plan with its installments (in order). */
export interface Plan {
  id: string;
  practiceId: string;
  guarantorId: string;
  balanceIds: string[];
  currency: string;
  totalMinor: number;
  months: number;
  terms: PlanOffer;
  timeZone: string;
  retryOffsetsDays: number[];
  status: StoredPlanStatus;
  stripe: { customer: string | null; paymentMethod: string | null };
  firstPaymentId: string | null;
  payoffPaymentId: string | null;
  createdAt: Date;
  activatedAt: Date | null;
  endedAt: Date | null;
  installments: PlanInstallment[];
}

/** What a new (pending) plan is made of. */
export interface NewPlan {
  practiceId: string;
  guarantorId: string;
  balanceIds: readonly string[];
  currency: string;
  terms: PlanOffer;
  timeZone: string;
  retryOffsetsDays: readonly number[];
  schedule: readonly Installment[];
}

/** An installment a sweep took to charge. */
export interface ClaimedInstallment {
  practiceId: string;
  planId: string;
  number: number;
}

interface PlanRow {
  id: string; practice_id: string; guarantor_id: string; balance_ids: string[]; currency: string; total_minor: string; months: number; terms: PlanOffer;
  time_zone: string; retry_offsets_days: number[]; status: StoredPlanStatus; stripe_customer_id: string | null; stripe_payment_method_id: string | null;
  first_payment_id: string | null; payoff_payment_id: string | null; created_at: Date; activated_at: Date | null; ended_at: Date | null;
}

interface InstallmentRow {
  number: number; due_date: string; amount_minor: string; status: InstallmentStatus; attempts: number; first_failure_on: string | null;
  next_attempt_on: string | null; next_attempt_at: Date | null; payment_id: string | null; last_failure_code: string | null; paid_at: Date | null;
}

const PLAN_COLUMNS = `id, practice_id, guarantor_id, balance_ids, currency, total_minor::text AS total_minor, months, terms, time_zone, retry_offsets_days,
  status, stripe_customer_id, stripe_payment_method_id, first_payment_id, payoff_payment_id, created_at, activated_at, ended_at`;
/** How each installment column is read. */
const INSTALLMENT_EXPRESSIONS: Record<keyof InstallmentRow, string> = {
  number: 'number', due_date: 'due_date::text', amount_minor: 'amount_minor::text', status: 'status', attempts: 'attempts', first_failure_on: 'first_failure_on::text',
  next_attempt_on: 'next_attempt_on::text', next_attempt_at: 'next_attempt_at', payment_id: 'payment_id', last_failure_code: 'last_failure_code', paid_at: 'paid_at',
};
/** The installment columns, each named `<prefix><column>`. */
const installmentColumns = (prefix: string) => Object.entries(INSTALLMENT_EXPRESSIONS).map(([name, expression]) => `${expression} AS ${prefix}${name}`).join(', ');
const INSTALLMENT_COLUMNS = installmentColumns('');
/** The prefix of the installment columns read beside a plan's (whose names they share: practice_id, status). */
const JOINED = 'i_';

function safe(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new RangeError(`amount ${value} is beyond the safe integer range`);
  return n;
}

function toInstallment(r: InstallmentRow): PlanInstallment {
  return {
    number: r.number, dueDate: r.due_date, amountMinor: safe(r.amount_minor), status: r.status, attempts: r.attempts, firstFailureOn: r.first_failure_on,
    nextAttemptOn: r.next_attempt_on, nextAttemptAt: r.next_attempt_at, paymentId: r.payment_id, lastFailureCode: r.last_failure_code, paidAt: r.paid_at,
  };
}

function toPlan(r: PlanRow, installments: PlanInstallment[]): Plan {
  return {
    id: r.id, practiceId: r.practice_id, guarantorId: r.guarantor_id, balanceIds: r.balance_ids, currency: r.currency, totalMinor: safe(r.total_minor),
    months: r.months, terms: r.terms, timeZone: r.time_zone, retryOffsetsDays: r.retry_offsets_days, status: r.status,
    stripe: { customer: r.stripe_customer_id, paymentMethod: r.stripe_payment_method_id }, firstPaymentId: r.first_payment_id,
    payoffPaymentId: r.payoff_payment_id, createdAt: r.created_at, activatedAt: r.activated_at, endedAt: r.ended_at, installments,
  };
}

/** The state machine's view of a stored plan (a pending plan reads as active with nothing paid). */
export function planState(plan: Plan): PlanState {
  return {
    planId: plan.id,
    currency: plan.currency,
    status: plan.status === 'pending' ? 'active' : plan.status,
    retryOffsetsDays: plan.retryOffsetsDays,
    installments: plan.installments.map((i) => ({
      number: i.number, dueDate: i.dueDate, amountCents: i.amountMinor, status: i.status, attempts: i.attempts,
      ...(i.firstFailureOn ? { firstFailureOn: i.firstFailureOn } : {}),
      ...(i.nextAttemptOn ? { nextAttemptOn: i.nextAttemptOn } : {}),
    })),
  };
}

/** Reads and writes payment plans. */
export class PlanRepository {
  readonly #db: Queryable;
  readonly #clock: Clock;

  constructor(db: Queryable, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
  }

  /** The same repository on another connection (a transaction client). */
  on(db: Queryable): PlanRepository {
    return new PlanRepository(db, this.#clock);
  }

  /** Stores a plan the patient chose, `pending` until Checkout pays its first installment (its installments in one statement). */
  async createPending(input: NewPlan): Promise<Plan> {
    const now = this.#clock.now();
    const { rows } = await this.#db.query<PlanRow>(
      `INSERT INTO payment_plans (practice_id, guarantor_id, balance_ids, currency, total_minor, months, terms, time_zone, retry_offsets_days, created_at, updated_at)
       VALUES ($1, $2, $3::uuid[], $4, $5, $6, $7::jsonb, $8, $9::int[], $10, $10) RETURNING ${PLAN_COLUMNS}`,
      [input.practiceId, input.guarantorId, input.balanceIds, input.currency, input.terms.totalCents, input.terms.months, JSON.stringify(input.terms),
        input.timeZone, input.retryOffsetsDays, now],
    );
    const plan = rows[0]!;
    const { rows: installments } = input.schedule.length === 0 ? { rows: [] } : await this.#db.query<InstallmentRow>(
      `INSERT INTO plan_installments (practice_id, plan_id, number, due_date, amount_minor, updated_at)
       SELECT $1, $2, u.number, u.due_date, u.amount_minor, $6 FROM unnest($3::int[], $4::date[], $5::bigint[]) AS u(number, due_date, amount_minor)
       RETURNING ${INSTALLMENT_COLUMNS}`,
      [input.practiceId, plan.id, input.schedule.map((i) => i.number), input.schedule.map((i) => i.dueDate), input.schedule.map((i) => i.amountCents), now],
    );
    return toPlan(plan, installments.map(toInstallment).sort((a, b) => a.number - b.number));
  }

  /** The plan row and its installments in one statement: one row per installment (none: one row with null installment columns). */
  async #load(practiceId: string, id: string, lock: boolean): Promise<Plan | undefined> {
    if (!isUuid(id)) return undefined;
    const { rows } = await this.#db.query<PlanRow & Record<string, unknown>>(
      `SELECT ${PLAN_COLUMNS}, i.* FROM payment_plans p
       LEFT JOIN LATERAL (SELECT ${installmentColumns(JOINED)} FROM plan_installments WHERE practice_id = p.practice_id AND plan_id = p.id) i ON true
       WHERE practice_id = $1 AND id = $2 ORDER BY i.${JOINED}number${lock ? ' FOR UPDATE OF p' : ''}`,
      [practiceId, id],
    );
    if (!rows[0]) return undefined;
    const installments = rows.flatMap((row) => (row[`${JOINED}number`] === null ? [] : [
      toInstallment(Object.fromEntries(Object.keys(INSTALLMENT_EXPRESSIONS).map((name) => [name, row[`${JOINED}${name}`]])) as unknown as InstallmentRow),
    ]));
    return toPlan(rows[0], installments);
  }

  /** A plan with its installments, or undefined. */
  get(practiceId: string, id: string): Promise<Plan | undefined> {
    return this.#load(practiceId, id, false);
  }

  /** The same, with the plan row locked until the caller's transaction ends. */
  getForUpdate(practiceId: string, id: string): Promise<Plan | undefined> {
    return this.#load(practiceId, id, true);
  }

  /** A guarantor's plans, newest first. */
  async forGuarantor(practiceId: string, guarantorId: string): Promise<Plan[]> {
    const { rows } = await this.#db.query<{ id: string }>('SELECT id FROM payment_plans WHERE practice_id = $1 AND guarantor_id = $2 ORDER BY created_at DESC', [practiceId, guarantorId]);
    const plans: Plan[] = [];
    for (const { id } of rows) plans.push((await this.get(practiceId, id))!);
    return plans;
  }

  /**
   * Writes the state machine's new state: the plan's status and every installment's status, attempts and next
   * attempt (at the practice's charge hour in the plan's time zone). Also records Stripe ids and payments given,
   * and gives back the claim on installment `release` (the one just charged; other claims are left alone).
   */
  async saveState(plan: Plan, state: PlanState, extra: { customer?: string; paymentMethod?: string; firstPaymentId?: string; payoffPaymentId?: string; failureCode?: { installment: number; code: string }; release?: number } = {}): Promise<void> {
    const now = this.#clock.now();
    const ended = state.status !== 'active';
    const column = <T>(pick: (i: PlanState['installments'][number]) => T) => state.installments.map(pick);
    // One statement: the plan row (a data-modifying CTE runs whether or not it is read) and its installments.
    await this.#db.query(
      `WITH plan AS (
         UPDATE payment_plans SET status = $3, stripe_customer_id = coalesce($4, stripe_customer_id), stripe_payment_method_id = coalesce($5, stripe_payment_method_id),
           first_payment_id = coalesce($6, first_payment_id), payoff_payment_id = coalesce($7, payoff_payment_id),
           activated_at = CASE WHEN status = 'pending' AND $3 <> 'pending' THEN $8 ELSE activated_at END,
           ended_at = CASE WHEN $9 AND ended_at IS NULL THEN $8 ELSE ended_at END, updated_at = $8
         WHERE practice_id = $1 AND id = $2)
       UPDATE plan_installments t SET status = u.status, attempts = u.attempts, first_failure_on = u.first_failure_on, next_attempt_on = u.next_attempt_on,
         next_attempt_at = u.next_attempt_at, claimed_until = CASE WHEN $10::int = t.number THEN NULL ELSE t.claimed_until END,
         last_failure_code = coalesce(u.failure_code, t.last_failure_code), paid_at = CASE WHEN u.status = 'paid' AND t.paid_at IS NULL THEN $8 ELSE t.paid_at END, updated_at = $8
       FROM unnest($11::int[], $12::text[], $13::int[], $14::date[], $15::date[], $16::timestamptz[], $17::text[])
         AS u(number, status, attempts, first_failure_on, next_attempt_on, next_attempt_at, failure_code)
       WHERE t.practice_id = $1 AND t.plan_id = $2 AND t.number = u.number`,
      [
        plan.practiceId, plan.id, state.status, extra.customer ?? null, extra.paymentMethod ?? null, extra.firstPaymentId ?? null, extra.payoffPaymentId ?? null, now, ended,
        extra.release ?? null, column((i) => i.number), column((i) => i.status), column((i) => i.attempts), column((i) => i.firstFailureOn ?? null),
        column((i) => i.nextAttemptOn ?? null),
        column((i) => (i.nextAttemptOn && (i.status === 'scheduled' || i.status === 'retrying') ? chargeInstant(i.nextAttemptOn, plan.timeZone) : null)),
        column((i) => (extra.failureCode?.installment === i.number ? extra.failureCode.code : null)),
      ],
    );
  }

  /** Records the saved Stripe customer and card (either event of a Checkout may carry them). */
  async recordStripe(practiceId: string, planId: string, ids: { customer?: string; paymentMethod?: string }): Promise<void> {
    await this.#db.query(
      `UPDATE payment_plans SET stripe_customer_id = coalesce($3, stripe_customer_id), stripe_payment_method_id = coalesce($4, stripe_payment_method_id), updated_at = $5
       WHERE practice_id = $1 AND id = $2`,
      [practiceId, planId, ids.customer ?? null, ids.paymentMethod ?? null, this.#clock.now()],
    );
  }

  /** Remembers the Settle payment an installment's charges are made under. */
  async setInstallmentPayment(practiceId: string, planId: string, number: number, paymentId: string): Promise<void> {
    await this.#db.query('UPDATE plan_installments SET payment_id = $4, updated_at = $5 WHERE practice_id = $1 AND plan_id = $2 AND number = $3', [practiceId, planId, number, paymentId, this.#clock.now()]);
  }

  /** Remembers the payment of an early payoff (so a second request reuses it, and its idempotency key). */
  async setPayoffPayment(practiceId: string, planId: string, paymentId: string): Promise<void> {
    await this.#db.query('UPDATE payment_plans SET payoff_payment_id = $3, updated_at = $4 WHERE practice_id = $1 AND id = $2', [practiceId, planId, paymentId, this.#clock.now()]);
  }

  /**
   * Claims installments of active plans due by now, up to `limit`, for `leaseMs`: rows another sweep holds
   * (locked, or claimed and not yet expired) are skipped.
   */
  async claimDue(limit: number, leaseMs: number): Promise<ClaimedInstallment[]> {
    const now = this.#clock.now();
    const { rows } = await this.#db.query<{ practice_id: string; plan_id: string; number: number }>(
      `UPDATE plan_installments i SET claimed_until = $2
       FROM (SELECT pi.plan_id, pi.number FROM plan_installments pi JOIN payment_plans p ON p.practice_id = pi.practice_id AND p.id = pi.plan_id
             WHERE pi.status IN ('scheduled', 'retrying') AND pi.next_attempt_at <= $1 AND (pi.claimed_until IS NULL OR pi.claimed_until < $1)
               AND p.status = 'active'
             ORDER BY pi.next_attempt_at, pi.plan_id, pi.number LIMIT $3 FOR UPDATE OF pi SKIP LOCKED) due
       WHERE i.plan_id = due.plan_id AND i.number = due.number
       RETURNING i.practice_id, i.plan_id, i.number`,
      [now, new Date(now.getTime() + leaseMs), limit],
    );
    return rows.map((r) => ({ practiceId: r.practice_id, planId: r.plan_id, number: r.number }));
  }

  /** Gives a claimed installment back, to be tried again at `retryAt` (a transient failure: same attempt). */
  async release(practiceId: string, planId: string, number: number, retryAt: Date): Promise<void> {
    await this.#db.query(
      'UPDATE plan_installments SET claimed_until = NULL, next_attempt_at = $4, updated_at = $5 WHERE practice_id = $1 AND plan_id = $2 AND number = $3',
      [practiceId, planId, number, retryAt, this.#clock.now()],
    );
  }
}
