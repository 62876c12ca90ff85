/**
 * Payment-plan terms, pure: which plans a balance may have under the practice's policy, the exact schedule
 * of a chosen plan, what happens when an installment fails, and what paying off early costs.
 *
 * Money is integer cents throughout; there is never interest, so the installments of a plan sum exactly to the
 * balance and the payoff amount is exactly what is left unpaid.
 */
import { DateTime } from 'luxon';

/** The `planTerms` of a policy file (`policies/*.json`). */
export interface PlanTerms {
  /** No installment may be smaller than this (unless the whole balance is). */
  readonly minimumInstallmentCents: number;
  /** The longest plan offered, in monthly installments. */
  readonly maximumMonths: number;
}

/** Why plan input is unusable. */
export class PlanError extends Error {
  readonly code: 'invalid-amount' | 'invalid-months' | 'invalid-date' | 'invalid-terms' | 'not-offered';
  constructor(code: PlanError['code'], message: string) {
    super(message);
    this.name = 'PlanError';
    this.code = code;
  }
}

function assertCents(cents: number, what: string): void {
  if (!Number.isSafeInteger(cents) || cents <= 0) throw new PlanError('invalid-amount', `${what} must be a positive integer number of cents`);
}

function assertTerms(terms: PlanTerms): void {
  if (!Number.isSafeInteger(terms.minimumInstallmentCents) || terms.minimumInstallmentCents < 1) {
    throw new PlanError('invalid-terms', 'minimumInstallmentCents must be a positive integer');
  }
  if (!Number.isSafeInteger(terms.maximumMonths) || terms.maximumMonths < 1) throw new PlanError('invalid-terms', 'maximumMonths must be a positive integer');
}

/** Where the cents that do not divide evenly go. */
export type RemainderPlacement = 'first' | 'last';

/** One offered plan: `months` installments, `firstCents` once and `otherCents` the rest of the time. */
export interface PlanOffer {
  readonly months: number;
  readonly installmentCents: number;
  /** The installment that carries the remainder (equals `installmentCents` when the balance divides evenly). */
  readonly remainderInstallmentCents: number;
  readonly totalCents: number;
}

/**
 * Splits `totalCents` into `count` installments summing exactly to it: every installment is
 * `floor(total / count)` and the remainder (< count cents) is added to the first or the last one, so the
 * patient sees "$83.34 today, then 2 × $83.33".
 */
export function splitInstallments(totalCents: number, count: number, remainder: RemainderPlacement = 'first'): number[] {
  assertCents(totalCents, 'the amount');
  if (!Number.isSafeInteger(count) || count < 1) throw new PlanError('invalid-months', 'the number of installments must be a positive integer');
  if (count > totalCents) throw new PlanError('invalid-months', `${totalCents} cents cannot be split into ${count} non-zero installments`);
  const base = Math.floor(totalCents / count);
  const rest = totalCents - base * count;
  const parts = new Array<number>(count).fill(base);
  parts[remainder === 'first' ? 0 : count - 1]! += rest;
  return parts;
}

/**
 * The plans offered for a balance: every month count from 2 to `maximumMonths` whose regular installment
 * (`floor(balance / months)`) is at least the minimum, shortest first. A balance below twice the minimum gets
 * no plan (pay in full or in part).
 */
export function offeredPlans(balanceCents: number, terms: PlanTerms): PlanOffer[] {
  assertCents(balanceCents, 'the balance');
  assertTerms(terms);
  const offers: PlanOffer[] = [];
  for (let months = 2; months <= terms.maximumMonths; months++) {
    const base = Math.floor(balanceCents / months);
    if (base < terms.minimumInstallmentCents) break;
    // Same arithmetic as splitInstallments: the remainder rides on one installment.
    offers.push({ months, installmentCents: base, remainderInstallmentCents: balanceCents - base * (months - 1), totalCents: balanceCents });
  }
  return offers;
}

/** One scheduled installment. */
export interface Installment {
  /** 1-based. */
  readonly number: number;
  /** ISO calendar date `YYYY-MM-DD` on which it is charged (in the practice's time zone). */
  readonly dueDate: string;
  readonly amountCents: number;
}

export interface ScheduleInput {
  readonly balanceCents: number;
  readonly months: number;
  /** ISO date of the first installment (usually today: the first installment is paid at Checkout). */
  readonly startDate: string;
  readonly remainder?: RemainderPlacement;
  /** When given, the plan must be one of those offered under these terms. */
  readonly terms?: PlanTerms;
}

function parseIsoDate(iso: string): DateTime {
  const date = DateTime.fromISO(iso, { zone: 'UTC' });
  if (!/^\d{4}-\d{2}-\d{2}$/.test(iso) || !date.isValid) throw new PlanError('invalid-date', `"${iso}" is not an ISO date YYYY-MM-DD`);
  return date;
}

/**
 * The exact schedule: installment k is due k−1 calendar months after the start date, each computed from the
 * start (not chained), so a plan started on 31 January is charged on 28/29 February, 31 March, 30 April, 31 May.
 * @throws PlanError when the plan is not valid (or, with `terms`, not offered).
 */
export function planSchedule(input: ScheduleInput): Installment[] {
  const { balanceCents, months, startDate, remainder = 'first', terms } = input;
  assertCents(balanceCents, 'the balance');
  const start = parseIsoDate(startDate);
  if (terms && !offeredPlans(balanceCents, terms).some((offer) => offer.months === months)) {
    throw new PlanError('not-offered', `a ${months}-month plan is not offered for this balance under the practice's terms`);
  }
  return splitInstallments(balanceCents, months, remainder).map((amountCents, i) => ({
    number: i + 1,
    dueDate: start.plus({ months: i }).toISODate()!,
    amountCents,
  }));
}

/** Today's ISO date in a time zone (the practice's), from the injected clock: a plan's usual start date. */
export function localDate(now: Date, timeZone: string): string {
  const date = DateTime.fromJSDate(now, { zone: timeZone });
  if (!date.isValid) throw new PlanError('invalid-date', `"${timeZone}" is not a time zone`);
  return date.toISODate()!;
}

/**
 * The instant an installment due on `dueDate` is charged: `hour`:00 local time in the practice's zone
 * (default 10:00, inside business hours so a declined patient can call). Across DST changes luxon keeps the
 * local wall-clock hour; on a spring-forward gap it moves forward to the next valid time.
 */
export function chargeInstant(dueDate: string, timeZone: string, hour = 10): Date {
  if (!Number.isInteger(hour) || hour < 0 || hour > 23) throw new PlanError('invalid-date', 'hour must be 0–23');
  const day = DateTime.fromISO(dueDate, { zone: timeZone });
  if (!/^\d{4}-\d{2}-\d{2}$/.test(dueDate) || !day.isValid) throw new PlanError('invalid-date', `"${dueDate}" in "${timeZone}" is not a valid date`);
  return day.set({ hour, minute: 0, second: 0, millisecond: 0 }).toJSDate();
}

/** Days after an installment's first failure on which it is retried (issue 7: +1, +3, +7). */
export const DEFAULT_RETRY_OFFSETS_DAYS: readonly number[] = [1, 3, 7];

/** What to do after a failed charge. */
export type FailureDecision =
  | {
      readonly action: 'retry';
      /** ISO date of the next attempt. */
      readonly retryOn: string;
      /** 1-based number of the retry about to be scheduled. */
      readonly retry: number;
      /** `authentication_required`: the bank wants the patient present; send an on-session pay link too. */
      readonly askPatientToAuthenticate: boolean;
    }
  | { readonly action: 'default'; readonly askPatientToAuthenticate: boolean };

/**
 * Decides the next step after an installment charge fails.
 * @param firstFailureDate - ISO date of the installment's first failed attempt (offsets count from it).
 * @param failuresSoFar - failed attempts including this one (1 after the first failure).
 * @param declineCode - Stripe's `code` / `decline_code`, when known.
 * After `offsets.length` retries have failed the plan defaults and the balance returns to its cadence.
 */
export function onInstallmentFailure(
  firstFailureDate: string,
  failuresSoFar: number,
  declineCode?: string,
  offsets: readonly number[] = DEFAULT_RETRY_OFFSETS_DAYS,
): FailureDecision {
  if (!Number.isSafeInteger(failuresSoFar) || failuresSoFar < 1) throw new PlanError('invalid-months', 'failuresSoFar counts this failure and starts at 1');
  const askPatientToAuthenticate = declineCode === 'authentication_required';
  const retry = failuresSoFar; // the n-th failure schedules the n-th retry
  if (retry > offsets.length) return { action: 'default', askPatientToAuthenticate };
  return { action: 'retry', retryOn: parseIsoDate(firstFailureDate).plus({ days: offsets[retry - 1]! }).toISODate()!, retry, askPatientToAuthenticate };
}

/**
 * What paying off early costs now: the sum of the installments not yet paid (no interest, no fee).
 * @param paidNumbers - numbers of the installments already paid.
 */
export function payoffAmountCents(schedule: readonly Installment[], paidNumbers: Iterable<number>): number {
  const paid = new Set(paidNumbers);
  return schedule.reduce((sum, installment) => (paid.has(installment.number) ? sum : sum + installment.amountCents), 0);
}
