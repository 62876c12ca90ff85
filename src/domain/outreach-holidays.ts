/**
 * Public holidays for no-send days (`"holidays:US"` in a policy).
 *
 * Settle's intended source is the `date-holidays` package; until it is installed, {@link builtInHolidays}
 * knows the eleven US federal holidays (and treats `US-XX` regions as the federal list), which is what the
 * default policy asks for. Any other calendar is reported as unknown rather than silently ignored.
 */

/**
 * Whether a local calendar date is a public holiday of a calendar (`US`, `US-CA`…), or `undefined` when the
 * calendar is not known to this resolver.
 */
export type HolidayResolver = (calendar: string, isoDate: string) => boolean | undefined;

/** US federal holidays, on their actual and (for weekend ones) observed dates. */
export const builtInHolidays: HolidayResolver = (calendar, isoDate) => {
  if (calendar !== 'US' && !calendar.startsWith('US-')) return undefined;
  const year = Number(isoDate.slice(0, 4));
  return usFederalHolidays(year).has(isoDate) || usFederalHolidays(year + 1).has(isoDate);
};

const cache = new Map<number, Set<string>>();

/** The dates (`YYYY-MM-DD`) of a year's US federal holidays, including observed Friday/Monday dates. */
export function usFederalHolidays(year: number): Set<string> {
  const cached = cache.get(year);
  if (cached !== undefined) return cached;
  const fixed = [[1, 1], [6, 19], [7, 4], [11, 11], [12, 25]].map(([m, d]) => utc(year, m!, d!));
  const floating = [
    nthWeekday(year, 1, 1, 3), // Martin Luther King Jr. Day: third Monday of January
    nthWeekday(year, 2, 1, 3), // Washington's Birthday: third Monday of February
    lastWeekday(year, 5, 1), // Memorial Day: last Monday of May
    nthWeekday(year, 9, 1, 1), // Labor Day: first Monday of September
    nthWeekday(year, 10, 1, 2), // Columbus Day: second Monday of October
    nthWeekday(year, 11, 4, 4), // Thanksgiving: fourth Thursday of November
  ];
  const dates = new Set<string>();
  for (const date of [...fixed, ...floating]) {
    dates.add(iso(date));
    const weekday = date.getUTCDay();
    if (weekday === 6) dates.add(iso(new Date(date.getTime() - 86_400_000)));
    if (weekday === 0) dates.add(iso(new Date(date.getTime() + 86_400_000)));
  }
  cache.set(year, dates);
  return dates;
}

function utc(year: number, month: number, day: number): Date {
  return new Date(Date.UTC(year, month - 1, day));
}

function nthWeekday(year: number, month: number, weekday: number, n: number): Date {
  const first = utc(year, month, 1);
  return utc(year, month, 1 + ((weekday - first.getUTCDay() + 7) % 7) + 7 * (n - 1));
}

function lastWeekday(year: number, month: number, weekday: number): Date {
  const last = new Date(Date.UTC(year, month, 0));
  return utc(year, month, last.getUTCDate() - ((last.getUTCDay() - weekday + 7) % 7));
}

function iso(date: Date): string {
  return date.toISOString().slice(0, 10);
}
