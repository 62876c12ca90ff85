/**
 * Time, injected. Stage logic never reads `Date.now()` itself, so cadences, aging, quiet hours and plans
 * can be tested and demonstrated across months in seconds.
 */
import { DateTime } from 'luxon';

/** A source of the current time. */
export interface Clock {
  now(): Date;
}

/** The real wall clock. */
export const systemClock: Clock = { now: () => new Date() };

/** A clock that stands still until moved: for tests and the demo. */
export class ManualClock implements Clock {
  private current: number;
  constructor(start: Date) {
    this.current = start.getTime();
  }
  now(): Date {
    return new Date(this.current);
  }
  /** Moves the clock forward by `ms` milliseconds. */
  advance(ms: number): void {
    this.current += ms;
  }
  /** Sets the clock to `to`. */
  set(to: Date): void {
    this.current = to.getTime();
  }
}

/**
 * The calendar date (`YYYY-MM-DD`) of an instant in a time zone: "today" for a practice is `localDate(clock.now(),
 * practice.timeZone)`.
 * @param timeZone an IANA zone (`America/New_York`); absent: UTC.
 */
export function localDate(at: Date, timeZone: string | null | undefined): string {
  return DateTime.fromJSDate(at, { zone: timeZone ?? 'UTC' }).toISODate()!;
}
