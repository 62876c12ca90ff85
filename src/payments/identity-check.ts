/**
 * The light identity check behind a pay link: before any balance detail is shown, the visitor types the
 * guarantor's birth date or 5-digit ZIP code. Texts reach wrong numbers; this keeps a stranger from seeing
 * someone's balance, and the attempt limiter keeps them from guessing.
 *
 * Birth-date input, decided:
 * - ISO `1984-03-07`;
 * - US month-first `3/7/1984`, `03/07/1984`, `03-07-1984`, `03.07.1984`, and 8 digits `03071984`;
 * - a two-digit year (`3/7/84`) is accepted and compared with the last two digits of the stored year. The
 *   guess space barely shrinks (people's ages span under a century) and patients type it that way;
 * - day-first (`07/03/1984`) is NOT accepted: the pay page labels the field "MM/DD/YYYY" (Spanish: "MM/DD/AAAA"),
 *   and trying both orders would double a guesser's chances.
 * Nothing here ever logs or returns the typed or stored value.
 */
import { timingSafeEqual } from 'node:crypto';

/** A calendar date without time zone. */
export interface CalendarDate {
  readonly year: number;
  readonly month: number;
  readonly day: number;
}

/** A typed birth date: full year, or two digits when `twoDigitYear`. */
export interface TypedBirthDate extends CalendarDate {
  readonly twoDigitYear: boolean;
}

function validDate(year: number, month: number, day: number): boolean {
  if (month < 1 || month > 12 || day < 1) return false;
  const days = new Date(Date.UTC(year < 100 ? 2000 + year : year, month, 0)).getUTCDate();
  return day <= days;
}

/** Parses typed birth-date text, or `undefined` when it is not one of the accepted forms or not a real date. */
export function parseTypedBirthDate(text: unknown): TypedBirthDate | undefined {
  if (typeof text !== 'string') return undefined;
  const t = text.trim();
  let year: number, month: number, day: number, twoDigitYear = false;
  let m = /^(\d{4})-(\d{1,2})-(\d{1,2})$/.exec(t);
  if (m) {
    [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  } else if ((m = /^(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})$/.exec(t))) {
    [month, day, year] = [Number(m[1]), Number(m[3]), Number(m[4])];
    twoDigitYear = m[4]!.length === 2;
  } else if ((m = /^(\d{2})(\d{2})(\d{4})$/.exec(t))) {
    [month, day, year] = [Number(m[1]), Number(m[2]), Number(m[3])];
  } else {
    return undefined;
  }
  if (!twoDigitYear && (year < 1850 || year > 2999)) return undefined;
  if (!validDate(year, month, day)) return undefined;
  return { year, month, day, twoDigitYear };
}

/** Parses a stored ISO birth date (`1984-03-07`, FHIR `Patient.birthDate` at day precision). */
export function parseStoredBirthDate(iso: string): CalendarDate | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso);
  if (!m) return undefined;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return validDate(year, month, day) ? { year, month, day } : undefined;
}

/** The first five digits of a US ZIP or ZIP+4 (`"12345"`, `"12345-6789"`, `"123456789"`), or `undefined`. */
export function zip5(text: unknown): string | undefined {
  if (typeof text !== 'string') return undefined;
  const m = /^\s*(\d{5})(?:-?\d{4})?\s*$/.exec(text);
  return m ? m[1] : undefined;
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a), y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** What the visitor typed. */
export type IdentityAnswer = { readonly kind: 'birth-date'; readonly text: string } | { readonly kind: 'zip'; readonly text: string };

/** What the server holds for the guarantor (either may be missing). */
export interface IdentityOnFile {
  /** ISO date `YYYY-MM-DD`. */
  readonly birthDate?: string;
  /** 5-digit ZIP or ZIP+4. */
  readonly zip?: string;
}

/**
 * Compares an answer with what is on file: `match`, `mismatch`, `invalid` (the text is not a date or ZIP: tell
 * the visitor the format, do not count it) or `unavailable` (nothing of that kind on file: offer the other).
 */
export function checkIdentityAnswer(answer: IdentityAnswer, onFile: IdentityOnFile): 'match' | 'mismatch' | 'invalid' | 'unavailable' {
  if (answer.kind === 'zip') {
    const typed = zip5(answer.text);
    if (typed === undefined) return 'invalid';
    const stored = onFile.zip === undefined ? undefined : zip5(onFile.zip);
    if (stored === undefined) return 'unavailable';
    return sameText(typed, stored) ? 'match' : 'mismatch';
  }
  const typed = parseTypedBirthDate(answer.text);
  if (!typed) return 'invalid';
  const stored = onFile.birthDate === undefined ? undefined : parseStoredBirthDate(onFile.birthDate);
  if (!stored) return 'unavailable';
  const year = typed.twoDigitYear ? stored.year % 100 : stored.year;
  const ok = (typed.year === year ? 1 : 0) & (typed.month === stored.month ? 1 : 0) & (typed.day === stored.day ? 1 : 0);
  return ok === 1 ? 'match' : 'mismatch';
}

/** Attempt-limiter policy. */
export interface AttemptPolicy {
  /** Failed attempts allowed within `windowMs` before the link locks (default 5). */
  readonly maxFailures: number;
  /** Rolling window for counting failures (default one hour). */
  readonly windowMs: number;
  /** How long a lock lasts (default 24 hours); staff can unlock sooner by resetting the state. */
  readonly lockMs: number;
}

export const DEFAULT_ATTEMPT_POLICY: AttemptPolicy = { maxFailures: 5, windowMs: 60 * 60 * 1000, lockMs: 24 * 60 * 60 * 1000 };

/** The limiter's state for one link, persisted with the link row (JSON-friendly: epoch milliseconds). */
export interface AttemptState {
  /** Times of failed attempts within the window, oldest first. */
  readonly failures: readonly number[];
  /** While set and in the future, every attempt is refused without comparing. */
  readonly lockedUntil: number | null;
}

export const INITIAL_ATTEMPT_STATE: AttemptState = { failures: [], lockedUntil: null };

export type AttemptOutcome =
  | { readonly result: 'verified' }
  | { readonly result: 'mismatch'; readonly remaining: number }
  | { readonly result: 'locked'; readonly until: number }
  | { readonly result: 'invalid' }
  | { readonly result: 'unavailable' };

/**
 * One identity attempt as a pure transition: (state, answer, on file, now) → (state, outcome).
 * - locked: refused, state unchanged (the answer is not even compared);
 * - match: verified, failures cleared;
 * - mismatch: recorded; the `maxFailures`-th failure within the window locks the link for `lockMs`
 *   (the outcome is then `locked`);
 * - invalid / unavailable: not counted (no information is revealed by them).
 */
export function attemptIdentity(
  state: AttemptState,
  answer: IdentityAnswer,
  onFile: IdentityOnFile,
  nowMs: number,
  policy: AttemptPolicy = DEFAULT_ATTEMPT_POLICY,
): { state: AttemptState; outcome: AttemptOutcome } {
  const recent = state.failures.filter((t) => t > nowMs - policy.windowMs && t <= nowMs);
  if (state.lockedUntil !== null && nowMs < state.lockedUntil) {
    return { state, outcome: { result: 'locked', until: state.lockedUntil } };
  }
  // A lock that has run out starts a fresh window.
  const live: AttemptState = state.lockedUntil !== null ? INITIAL_ATTEMPT_STATE : { failures: recent, lockedUntil: null };
  const checked = checkIdentityAnswer(answer, onFile);
  if (checked === 'match') return { state: INITIAL_ATTEMPT_STATE, outcome: { result: 'verified' } };
  if (checked === 'invalid' || checked === 'unavailable') return { state: live, outcome: { result: checked } };
  const failures = [...live.failures, nowMs];
  if (failures.length >= policy.maxFailures) {
    const until = nowMs + policy.lockMs;
    return { state: { failures, lockedUntil: until }, outcome: { result: 'locked', until } };
  }
  return { state: { failures, lockedUntil: null }, outcome: { result: 'mismatch', remaining: policy.maxFailures - failures.length } };
}
