/**
 * Money: an integer number of minor units (cents) and an ISO 4217 currency. Never a float.
 *
 * The amount is a JavaScript `number` held to `Number.isSafeInteger` (|amount| ≤ 9,007,199,254,740,991 minor
 * units, i.e. ninety trillion dollars): exact, JSON-friendly, fast, and what `pg` returns for a `bigint`
 * column once range-checked. Every operation that could leave the safe range throws instead of rounding.
 *
 * Decimal text is parsed digit by digit, never through `parseFloat`; a JSON number (FHIR `Money.value`)
 * is converted through its shortest round-trip string (`String(40.22)` is `"40.22"`), which is exactly the
 * decimal the sender wrote whenever that decimal fits a double.
 */

/** An amount of money in integer minor units. */
export interface Money {
  /** Minor units (cents for USD, yen for JPY, fils for BHD); a safe integer, may be negative. */
  readonly amount: number;
  /** ISO 4217 alphabetic code, upper case. */
  readonly currency: string;
}

/** Why a value is not valid money. */
export type MoneyErrorCode = 'invalid-amount' | 'too-many-decimals' | 'out-of-range' | 'invalid-currency' | 'currency-mismatch';

/** A value that is not money, or an operation mixing currencies. */
export class MoneyError extends Error {
  readonly code: MoneyErrorCode;
  constructor(code: MoneyErrorCode, message: string) {
    super(message);
    this.name = 'MoneyError';
    this.code = code;
  }
}

/** ISO 4217 minor-unit exponents that are not 2. */
const EXPONENTS: Readonly<Record<string, number>> = {
  BIF: 0, CLP: 0, DJF: 0, GNF: 0, ISK: 0, JPY: 0, KMF: 0, KRW: 0, PYG: 0, RWF: 0, UGX: 0, UYI: 0, VND: 0, VUV: 0, XAF: 0, XOF: 0, XPF: 0,
  BHD: 3, IQD: 3, JOD: 3, KWD: 3, LYD: 3, OMR: 3, TND: 3,
  CLF: 4, UYW: 4,
};

const KNOWN = new Set<string>([...Intl.supportedValuesOf('currency'), ...Object.keys(EXPONENTS)]);

/**
 * The number of minor-unit digits of a currency (ISO 4217): 0 for JPY, 2 for USD, 3 for BHD.
 * @throws MoneyError (`invalid-currency`) for a code that is not an ISO 4217 currency.
 */
export function currencyDigits(currency: string): number {
  if (currency === last?.currency) return last.digits;
  let digits = DIGITS.get(currency);
  if (digits === undefined) {
    assertCurrency(currency);
    digits = EXPONENTS[currency] ?? 2;
    DIGITS.set(currency, digits);
  }
  last = { currency, digits };
  return digits;
}

/** Checked currencies and their digits; `last` is the one most recently asked for (amounts come in runs of one currency). */
const DIGITS = new Map<string, number>();
let last: { currency: string; digits: number } | undefined;

/** Whether the code is an ISO 4217 currency this runtime knows. */
export function isCurrency(currency: unknown): currency is string {
  return typeof currency === 'string' && /^[A-Z]{3}$/.test(currency) && KNOWN.has(currency);
}

function assertCurrency(currency: string): void {
  if (!isCurrency(currency)) throw new MoneyError('invalid-currency', `"${String(currency)}" is not an ISO 4217 currency code`);
}

/**
 * Money from a safe integer of minor units.
 * @throws MoneyError when the amount is not a safe integer or the currency is unknown.
 */
export function money(amount: number, currency: string): Money {
  if (currency !== last?.currency && !DIGITS.has(currency)) assertCurrency(currency);
  if (!Number.isSafeInteger(amount)) throw new MoneyError('out-of-range', `${amount} is not a safe integer number of minor units`);
  return { amount: amount === 0 ? 0 : amount, currency };
}

const DECIMAL = /^([+-]?)(\d+)(?:\.(\d*))?$|^([+-]?)\.(\d+)$/;

/**
 * Parses decimal text exactly: `"150.00"` USD is 15000, `"-0.5"` USD is -50, `"1200"` JPY is 1200.
 * Accepts an optional sign, digits, an optional fraction, and an exponent (`"1.5e2"`, as JSON numbers may be written);
 * surrounding spaces are ignored; thousands separators and currency symbols are not accepted.
 * @throws MoneyError: `too-many-decimals` when more fraction digits than the currency has are non-zero
 *   (`"1.005"` USD; `"1.50"` JPY), `invalid-amount` for anything else that is not a decimal, `out-of-range`.
 */
export function parseMoney(text: string, currency: string): Money {
  const digits = currencyDigits(currency);
  const trimmed = String(text).trim();
  let [mantissa, exponentText] = trimmed.split(/[eE]/) as [string, string | undefined];
  const match = DECIMAL.exec(mantissa);
  if (!match || (exponentText !== undefined && !/^[+-]?\d{1,3}$/.test(exponentText))) {
    throw new MoneyError('invalid-amount', `"${trimmed}" is not a decimal amount`);
  }
  const sign = match[1] ?? match[4] ?? '';
  let whole = match[2] ?? '0';
  let fraction = match[3] ?? match[5] ?? '';
  // Shift the decimal point by the exponent, on the digit string.
  const exponent = exponentText === undefined ? 0 : Number(exponentText);
  if (exponent > 0) {
    const moved = fraction.padEnd(exponent, '0');
    whole += moved.slice(0, exponent);
    fraction = moved.slice(exponent);
  } else if (exponent < 0) {
    const moved = whole.padStart(-exponent + 1, '0');
    fraction = moved.slice(exponent) + fraction;
    whole = moved.slice(0, exponent);
  }
  const extra = fraction.slice(digits);
  if (/[1-9]/.test(extra)) {
    throw new MoneyError(
      'too-many-decimals',
      `"${trimmed}" has ${fraction.replace(/0+$/, '').length} decimal places; ${currency} has ${digits}`,
    );
  }
  const minor = `${whole}${fraction.slice(0, digits).padEnd(digits, '0')}`.replace(/^0+(?=\d)/, '');
  if (minor.length > 16 || !Number.isSafeInteger(Number(minor))) {
    throw new MoneyError('out-of-range', `"${trimmed}" ${currency} is beyond the largest amount Settle holds`);
  }
  const amount = Number(minor);
  return money(sign === '-' ? -amount : amount, currency);
}

/**
 * Money from a JSON number as decimal (FHIR `Money.value`), through its shortest round-trip string, exactly.
 * @throws MoneyError as {@link parseMoney}; `invalid-amount` for NaN and infinities.
 */
export function moneyFromNumber(value: number, currency: string): Money {
  if (!Number.isFinite(value)) throw new MoneyError('invalid-amount', `${value} is not an amount`);
  // Fast path, exact: when the double nearest to k / 10^digits is the value itself, and doubles there are far
  // closer together than one minor unit (|k| < 2^43), that decimal is the value's shortest representation.
  const scale = SCALES[currencyDigits(currency)]!;
  const k = Math.round(value * scale);
  if (Math.abs(k) < 2 ** 43 && k / scale === value) return money(k, currency);
  return parseMoney(String(value), currency);
}

const SCALES = [1, 10, 100, 1000, 10000];

/**
 * Money from FHIR `Money` (`{value, currency}`), its value a JSON number or decimal string.
 * @param fallbackCurrency - used when the FHIR Money carries no currency.
 * @throws MoneyError when the value is missing or not exact in the currency, or there is no currency.
 */
export function fromFhirMoney(fhir: { value?: unknown; currency?: unknown }, fallbackCurrency?: string): Money {
  const currency = typeof fhir.currency === 'string' && fhir.currency !== '' ? fhir.currency : fallbackCurrency;
  if (currency === undefined) throw new MoneyError('invalid-currency', 'the amount has no currency and the mapping gives none');
  if (typeof fhir.value === 'number') return moneyFromNumber(fhir.value, currency);
  if (typeof fhir.value === 'string') return parseMoney(fhir.value, currency);
  throw new MoneyError('invalid-amount', 'the Money has no value');
}

/** FHIR `Money` with its value as a JSON number (exact: at most 15 significant digits reach here as minor units). */
export function toFhirMoney(m: Money): { value: number; currency: string } {
  return { value: Number(formatMoney(m)), currency: m.currency };
}

/** Throws unless both amounts have the same currency. */
export function assertSameCurrency(a: Money, b: Money): void {
  if (a.currency !== b.currency) {
    throw new MoneyError('currency-mismatch', `cannot combine ${a.currency} and ${b.currency}: mixed currencies are an error, never converted`);
  }
}

/** a + b. @throws MoneyError on mixed currencies or when the sum is not a safe integer. */
export function addMoney(a: Money, b: Money): Money {
  assertSameCurrency(a, b);
  return money(a.amount + b.amount, a.currency);
}

/** a − b. @throws MoneyError on mixed currencies or when the difference is not a safe integer. */
export function subtractMoney(a: Money, b: Money): Money {
  assertSameCurrency(a, b);
  return money(a.amount - b.amount, a.currency);
}

/** −a. */
export function negateMoney(a: Money): Money {
  return money(-a.amount, a.currency);
}

/**
 * The exact sum of amounts of one currency (`sum()` is missing from Medplum's FHIRPath; money is added here).
 * @param currency - the currency of an empty list's zero; when given, every part must have it.
 * @throws MoneyError on mixed currencies, an empty list without a currency, or overflow.
 */
export function sumMoney(parts: readonly Money[], currency?: string): Money {
  const first = currency ?? parts[0]?.currency;
  if (first === undefined) throw new MoneyError('invalid-currency', 'the sum of no amounts needs a currency');
  if (first !== last?.currency && !DIGITS.has(first)) assertCurrency(first);
  // addMoney per part, without a Money per partial sum: every part's currency is checked and every partial sum
  // must stay a safe integer (a sum of safe integers within range is exact).
  let total = 0;
  for (const part of parts) {
    if (part.currency !== first) assertSameCurrency({ amount: total, currency: first }, part);
    total += part.amount;
    if (!Number.isSafeInteger(total)) break; // money() below reports it out of range
  }
  return money(total, first);
}

/** Whether two amounts are equal (same currency and minor units). */
export function moneyEquals(a: Money, b: Money): boolean {
  return a.currency === b.currency && a.amount === b.amount;
}

/**
 * Plain decimal text with exactly the currency's digits, no symbol, no grouping: `"150.00"`, `"-0.05"`, `"1200"` (JPY).
 * `parseMoney(formatMoney(m), m.currency)` is `m`.
 */
export function formatMoney(m: Money): string {
  const digits = currencyDigits(m.currency);
  const text = String(Math.abs(m.amount)).padStart(digits + 1, '0');
  const sign = m.amount < 0 ? '-' : '';
  return digits === 0 ? `${sign}${text}` : `${sign}${text.slice(0, -digits)}.${text.slice(-digits)}`;
}

/**
 * Localised display text (`$150.00`, `150,00 €`), for statements and messages. Goes through the decimal
 * string, so no float arithmetic is involved and the digits shown are exactly the minor units held.
 */
export function displayMoney(m: Money, locale = 'en-US'): string {
  const digits = currencyDigits(m.currency);
  return new Intl.NumberFormat(locale, {
    style: 'currency',
    currency: m.currency,
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  }).format(formatMoney(m) as unknown as number);
}
