/**
 * The period an analytics request covers: `from` and `to` as local calendar dates of the practice, both
 * inclusive. With neither given: the twelve calendar months up to and including today's.
 */
import { DateTime } from 'luxon';
import { type Clock, localDate } from '../domain/clock.ts';

/** A period that cannot be used; `path` names the query parameter (`?from`). */
export class PeriodError extends Error {
  readonly path: string;
  constructor(path: string, message: string) {
    super(message);
    this.name = 'PeriodError';
    this.path = path;
  }
}

/** The longest period one request may cover, in days (ten years). */
export const MAX_PERIOD_DAYS = 3660;

const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** The default period on `today` (`YYYY-MM-DD`): the first day of the month eleven months back, to today. */
export function defaultPeriod(today: string): { from: string; to: string } {
  const day = DateTime.fromISO(today, { zone: 'UTC' });
  return { from: day.startOf('month').minus({ months: 11 }).toISODate()!, to: today };
}

/**
 * The period asked for, defaults filled in from the clock in the practice's time zone.
 * @throws PeriodError naming the parameter when a date is not a real `YYYY-MM-DD` date, `from` is after `to`, or
 * the period is longer than {@link MAX_PERIOD_DAYS}.
 */
export function resolvePeriod(asked: { from?: string; to?: string }, clock: Clock, timeZone: string): { from: string; to: string } {
  for (const key of ['from', 'to'] as const) {
    const value = asked[key];
    if (value !== undefined && (!DATE.test(value) || !DateTime.fromISO(value, { zone: 'UTC' }).isValid)) {
      throw new PeriodError(`?${key}`, `must be a date as YYYY-MM-DD (got "${value}")`);
    }
  }
  const today = localDate(clock.now(), timeZone);
  const to = asked.to ?? (asked.from && asked.from > today ? asked.from : today);
  const from = asked.from ?? defaultPeriod(to).from;
  if (from > to) throw new PeriodError('?from', `must be on or before to (${from} is after ${to})`);
  const days = DateTime.fromISO(to, { zone: 'UTC' }).diff(DateTime.fromISO(from, { zone: 'UTC' }), 'days').days;
  if (days > MAX_PERIOD_DAYS) throw new PeriodError('?from', `the period may cover at most ${MAX_PERIOD_DAYS} days (got ${days + 1})`);
  return { from, to };
}
