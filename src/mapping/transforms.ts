/**
 * Value transforms of mapping fields: money (exact), dates and date-times (luxon, with time zone).
 */
import { DateTime } from 'luxon';
import { fromFhirMoney, MoneyError, parseMoney, type Money } from '../domain/money.ts';

/** A value a transform could not convert; the message says why, never quoting more than the value. */
export class TransformError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'TransformError';
    this.code = code;
  }
}

/**
 * Money from a source value: FHIR Money (`{value, currency}`), a JSON number, or decimal text (`"1,234.50"`
 * and `"(12.00)"` accounting negatives are accepted from CSV; `"$"` is stripped).
 * @param currency - the currency when the value carries none.
 */
export function toMoney(value: unknown, currency: string | undefined): Money {
  try {
    if (typeof value === 'object' && value !== null && 'value' in value) return fromFhirMoney(value as { value?: unknown; currency?: unknown }, currency);
    if (currency === undefined) throw new MoneyError('invalid-currency', 'the amount has no currency and the mapping gives none');
    if (typeof value === 'number') return fromFhirMoney({ value }, currency);
    if (typeof value === 'string') {
      let text = value.trim().replace(/^\$|(?<=^[-+(])\$/, '');
      let negative = false;
      if (/^\(.*\)$/.test(text)) {
        negative = true;
        text = text.slice(1, -1).replace(/^\$/, '');
      }
      if (/^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$/.test(text)) text = text.replaceAll(',', '');
      const parsed = parseMoney(text, currency);
      return negative ? { amount: parsed.amount === 0 ? 0 : -parsed.amount, currency } : parsed;
    }
  } catch (error) {
    if (error instanceof MoneyError) throw new TransformError(error.code, error.message);
    throw error;
  }
  throw new TransformError('invalid-amount', `expected an amount, got ${describe(value)}`);
}

const HL7_DATE = /^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2}(?:\.\d{1,4})?)?([+-]\d{4})?$/;

/**
 * A date-time from FHIR (`2017-01-25T08:00:00+01:00`, `2017-01-25`), HL7 (`20170125080000-0500`) or a
 * luxon `format`; a value without offset is read in `timeZone`.
 */
export function toDateTime(value: unknown, timeZone: string, format?: string): DateTime {
  if (typeof value !== 'string' || value.trim() === '') throw new TransformError('invalid-date', `expected a date, got ${describe(value)}`);
  const text = value.trim();
  let parsed: DateTime;
  if (format) parsed = DateTime.fromFormat(text, format, { zone: timeZone, setZone: true });
  else if (/^\d{4}-\d{2}(-\d{2})?($|T)/.test(text)) parsed = DateTime.fromISO(text, { zone: timeZone, setZone: true });
  else {
    const m = HL7_DATE.exec(text);
    if (!m) throw new TransformError('invalid-date', `"${text}" is not a date (expected ISO 8601 or HL7 YYYYMMDD[HHMM[SS]][+ZZZZ])`);
    const [, y, mo = '01', d = '01', h = '00', mi = '00', s = '00', offset] = m;
    const iso = `${y}-${mo}-${d}T${h}:${mi}:${s.padStart(2, '0')}${offset ? `${offset.slice(0, 3)}:${offset.slice(3)}` : ''}`;
    parsed = DateTime.fromISO(iso, { zone: timeZone, setZone: true });
  }
  if (!parsed.isValid) throw new TransformError('invalid-date', `"${text}" is not a valid date: ${parsed.invalidExplanation ?? parsed.invalidReason}`);
  return parsed;
}

/**
 * Results of date conversions, by kind, time zone, format and input: sources repeat the same few dates (statement
 * and service dates). Looked up through nested maps of the strings as given, so a hit builds no key.
 */
const memo = new Map<string, Map<string, Map<string, Map<string, string>>>>();
let memoSize = 0;
function memoised(kind: string, value: unknown, timeZone: string, format: string | undefined, convert: () => string): string {
  if (typeof value !== 'string') return convert();
  const byValue = memo.get(kind)?.get(timeZone)?.get(format ?? '');
  const hit = byValue?.get(value);
  if (hit !== undefined) return hit;
  const result = convert();
  if (memoSize >= 10_000) {
    memo.clear();
    memoSize = 0;
  }
  let byZone = memo.get(kind);
  if (!byZone) memo.set(kind, (byZone = new Map()));
  let byFormat = byZone.get(timeZone);
  if (!byFormat) byZone.set(timeZone, (byFormat = new Map()));
  let results = byFormat.get(format ?? '');
  if (!results) byFormat.set(format ?? '', (results = new Map()));
  results.set(value, result);
  memoSize++;
  return result;
}

/** `YYYY-MM-DD`: a date as written, or the calendar date of a date-time in `timeZone`. */
export function toDate(value: unknown, timeZone: string, format?: string): string {
  return memoised('date', value, timeZone, format, () => convertDate(value, timeZone, format));
}

function convertDate(value: unknown, timeZone: string, format?: string): string {
  if (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(value.trim()) && !format) {
    const parsed = DateTime.fromISO(value.trim(), { zone: 'UTC' });
    if (!parsed.isValid) throw new TransformError('invalid-date', `"${value}" is not a valid date`);
    return value.trim();
  }
  if (typeof value === 'string' && /^\d{8}$/.test(value.trim()) && !format) {
    const t = value.trim();
    return convertDate(`${t.slice(0, 4)}-${t.slice(4, 6)}-${t.slice(6)}`, timeZone);
  }
  return toDateTime(value, timeZone, format).setZone(timeZone).toISODate()!;
}

/** An ISO 8601 date-time with offset, in `timeZone`. */
export function toIsoDateTime(value: unknown, timeZone: string, format?: string): string {
  return memoised('datetime', value, timeZone, format, () => toDateTime(value, timeZone, format).setZone(timeZone).toISO({ suppressMilliseconds: true })!);
}

/** A short, PHI-safe description of an unexpected value's type. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
