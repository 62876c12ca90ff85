/**
 * Daily reconciliation: one practice-local day of Settle's payments and staff refunds, their write-back states,
 * and the gateway's balance transactions, compared by `reconcile.ts`; the report is stored (one per practice
 * and day, a re-run replaces it) and logged by counts and ids only.
 *
 * Settle's side is loaded for a day either side of the window and Stripe's for the same span, so a payment
 * at 23:59 whose balance transaction is stamped 00:01 matches; only movements inside the day must match.
 */
import { DateTime } from 'luxon';
import type { Logger } from 'winston';
import type { Clock } from '../domain/clock.ts';
import type { Database } from '../store/database.ts';
import { PracticeRepository } from '../store/practices.ts';
import type { JobDefinition } from '../scheduler/scheduler.ts';
import type { GatewayFor } from './gateway.ts';
import { reconcile, type Mismatch, type ReconciliationReport, type SettleMovement, type StripeBalanceTransactionLike } from './reconcile.ts';
import { refundsBetween } from './refund-service.ts';

/** The job name. */
export const RECONCILE_JOB = 'payments.reconcile';

/** A stored report: the day it covers and what reconcile found. */
export interface DailyReconciliation {
  readonly practiceId: string;
  /** Practice-local `YYYY-MM-DD`. */
  readonly date: string;
  readonly window: { readonly from: string; readonly to: string };
  readonly movements: number;
  readonly balanceTransactions: number;
  readonly matched: number;
  readonly mismatches: readonly Mismatch[];
  /** When it ran. */
  readonly asOf: string;
  /** True for the sandbox: no balance transactions exist, so only write-backs are checked. */
  readonly sandbox: boolean;
}

export interface ReconcileDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly gatewayFor: GatewayFor;
  readonly logger: Pick<Logger, 'info' | 'warn'>;
}

/** Why a date cannot be reconciled. */
export class ReconcileDateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReconcileDateError';
  }
}

const WRITEBACK: Record<string, SettleMovement['writeback']> = { delivered: 'delivered', pending: 'pending', failed: 'failed', dead: 'dead-letter' };
const stripeId = (id: string | null, prefix: RegExp) => (id && prefix.test(id) && !id.includes('sandbox') ? id : undefined);

/** The practice-local day `date` as a UTC window. @throws ReconcileDateError for a malformed date. */
export function dayWindow(date: string, timeZone: string): { from: Date; to: Date } {
  const start = DateTime.fromISO(date, { zone: timeZone });
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date) || !start.isValid) throw new ReconcileDateError(`"${date}" is not a date YYYY-MM-DD`);
  return { from: start.startOf('day').toJSDate(), to: start.plus({ days: 1 }).startOf('day').toJSDate() };
}

async function loadMovements(db: Database, practiceId: string, from: Date, to: Date): Promise<SettleMovement[]> {
  const { rows: payments } = await db.pool.query<{ id: string; amount: string; currency: string; charge: string | null; succeeded_at: Date; wb: string | null }>(
    `SELECT p.id, p.amount_minor::text AS amount, p.currency, p.stripe_charge_id AS charge, p.succeeded_at,
            (SELECT w.status FROM writeback_outbox w WHERE w.practice_id = p.practice_id AND w.writeback_id = 'payment-' || p.id::text) AS wb
     FROM payments p WHERE p.practice_id = $1 AND p.succeeded_at >= $2 AND p.succeeded_at < $3 ORDER BY p.succeeded_at`,
    [practiceId, from, to],
  );
  const movements: SettleMovement[] = payments.map((p) => ({
    id: p.id, kind: 'payment', amountCents: Number(p.amount), currency: p.currency, writeback: p.wb ? (WRITEBACK[p.wb] ?? 'pending') : 'none', at: p.succeeded_at,
    ...(stripeId(p.charge, /^(ch|py)_/) ? { stripeSource: p.charge! } : {}),
  }));
  // A refund's write-back row is created when its webhook arrives: match each refund to a refund write-back of its
  // payment with the same amount, in order.
  const refunds = (await refundsBetween(db.pool, practiceId, from, to)).filter((r) => r.status !== 'failed');
  const { rows: refundWritebacks } = refunds.length
    ? await db.pool.query<{ payment_id: string; amount: string; status: string }>(
      `SELECT payment_id, amount_minor::text AS amount, status FROM writeback_outbox WHERE practice_id = $1 AND kind = 'refund' AND payment_id = ANY($2::uuid[]) ORDER BY seq`,
      [practiceId, [...new Set(refunds.map((r) => r.paymentId))]],
    )
    : { rows: [] };
  const unused = [...refundWritebacks];
  for (const r of refunds) {
    const at = unused.findIndex((w) => w.payment_id === r.paymentId && Number(w.amount) === r.amount.amount);
    const wb = at >= 0 ? unused.splice(at, 1)[0]! : undefined;
    movements.push({
      id: r.id, kind: 'refund', amountCents: r.amount.amount, currency: r.amount.currency, writeback: wb ? (WRITEBACK[wb.status] ?? 'pending') : 'none', at: r.createdAt,
      ...(stripeId(r.stripeRefundId, /^(re|pyr)_/) ? { stripeSource: r.stripeRefundId! } : {}),
    });
  }
  return movements;
}

/**
 * Reconciles one practice-local day and stores the report.
 * @throws ReconcileDateError for a malformed date; gateway errors as they are (nothing stored).
 */
export async function reconcileDay(deps: ReconcileDeps, input: { practiceId: string; date: string }): Promise<DailyReconciliation> {
  const { rows } = await deps.db.pool.query<{ time_zone: string }>('SELECT time_zone FROM practices WHERE id = $1', [input.practiceId]);
  if (!rows[0]) throw new ReconcileDateError(`no practice ${input.practiceId}`);
  const window = dayWindow(input.date, rows[0].time_zone);
  const day = 86_400_000;
  const wide = { from: new Date(window.from.getTime() - day), to: new Date(window.to.getTime() + day) };
  const gateway = await deps.gatewayFor(input.practiceId);
  const movements = await loadMovements(deps.db, input.practiceId, wide.from, wide.to);
  const balanceTransactions: StripeBalanceTransactionLike[] = [];
  for await (const bt of gateway.listBalanceTransactions(wide)) balanceTransactions.push(bt);
  const asOf = deps.clock.now();
  const report: ReconciliationReport = reconcile({ window, movements, balanceTransactions, asOf });
  const stored: DailyReconciliation = {
    practiceId: input.practiceId, date: input.date, window: { from: window.from.toISOString(), to: window.to.toISOString() },
    movements: report.movements, balanceTransactions: report.balanceTransactions, matched: report.matched, mismatches: report.mismatches,
    asOf: asOf.toISOString(), sandbox: gateway.sandbox,
  };
  await deps.db.pool.query(
    `INSERT INTO reconciliation_reports (practice_id, day, report, mismatches, created_at) VALUES ($1, $2::date, $3::jsonb, $4, $5)
     ON CONFLICT (practice_id, day) DO UPDATE SET report = excluded.report, mismatches = excluded.mismatches, created_at = excluded.created_at`,
    [input.practiceId, input.date, JSON.stringify(stored), report.mismatches.length, asOf],
  );
  const log = report.mismatches.length ? deps.logger.warn.bind(deps.logger) : deps.logger.info.bind(deps.logger);
  log('daily reconciliation', {
    practiceId: input.practiceId, date: input.date, movements: report.movements, balanceTransactions: report.balanceTransactions,
    matched: report.matched, mismatches: report.mismatches.length, kinds: [...new Set(report.mismatches.map((m) => m.kind))],
  });
  return stored;
}

/** The stored report of a day, or undefined. */
export async function storedReconciliation(db: Database, practiceId: string, date: string): Promise<DailyReconciliation | undefined> {
  dayWindow(date, 'UTC'); // throws for a malformed date
  const { rows } = await db.pool.query<{ report: DailyReconciliation }>('SELECT report FROM reconciliation_reports WHERE practice_id = $1 AND day = $2::date', [practiceId, date]);
  return rows[0]?.report;
}

/** Yesterday in a time zone, by the clock: the day the daily job reconciles. */
export function yesterday(clock: Clock, timeZone: string): string {
  return DateTime.fromJSDate(clock.now(), { zone: timeZone }).minus({ days: 1 }).toISODate()!;
}

/** The daily `payments.reconcile` job: yesterday, for every practice. */
export function reconcileJob(deps: ReconcileDeps): JobDefinition<{ date?: string }> {
  return {
    name: RECONCILE_JOB,
    concurrency: 1,
    async run(data) {
      for (const practice of await new PracticeRepository(deps.db.pool).list()) {
        await reconcileDay(deps, { practiceId: practice.id, date: data?.date ?? yesterday(deps.clock, practice.timeZone) });
      }
    },
  };
}
