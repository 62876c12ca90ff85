/**
 * HL7v2 text: bytes → text by the character set declared in MSH-18, escape sequences, and exact amounts.
 *
 * MSH-18 is read from the raw bytes before anything is decoded: everything up to MSH-18 is ASCII in every
 * character set Settle accepts, so the declaration can be found without knowing it yet.
 */
import { MoneyError, parseMoney } from '../../domain/money.ts';

/** A character set Settle decodes, by the name it is stored under. */
export type Hl7Charset = 'UTF-8' | 'ISO-8859-1';

/** Why text could not be decoded or a value could not be read. */
export type Hl7TextErrorCode = 'unsupported_charset' | 'invalid_bytes' | 'invalid_amount';

/** Thrown by the functions of this module; the message never quotes message content beyond the bad value's shape. */
export class Hl7TextError extends Error {
  readonly code: Hl7TextErrorCode;
  constructor(code: Hl7TextErrorCode, message: string) {
    super(message);
    this.name = 'Hl7TextError';
    this.code = code;
  }
}

/** MSH-18 values (HL7 table 0211 and common variants), upper-cased, and the charset each means. */
const CHARSETS: Record<string, Hl7Charset> = {
  'UNICODE UTF-8': 'UTF-8',
  'UTF-8': 'UTF-8',
  UTF8: 'UTF-8',
  ASCII: 'UTF-8', // ASCII is a subset of UTF-8
  'US-ASCII': 'UTF-8',
  '8859/1': 'ISO-8859-1',
  'ISO-8859-1': 'ISO-8859-1',
  'ISO8859-1': 'ISO-8859-1',
  ISO_8859_1: 'ISO-8859-1',
  'ISO_8859-1': 'ISO-8859-1',
  LATIN1: 'ISO-8859-1',
  'LATIN-1': 'ISO-8859-1',
};

const NODE_ENCODING: Record<Hl7Charset, BufferEncoding> = { 'UTF-8': 'utf8', 'ISO-8859-1': 'latin1' };

/** The Node.js encoding that reads and writes a charset. */
export function nodeEncoding(charset: Hl7Charset): BufferEncoding {
  return NODE_ENCODING[charset];
}

/**
 * Reads MSH-18 (first repetition) from the raw bytes of a message.
 * @returns the declared value, trimmed; undefined when the message does not start with MSH or has no MSH-18.
 */
export function readMsh18(bytes: Buffer): string | undefined {
  let start = 0;
  while (start < bytes.length && (bytes[start] === 0x0d || bytes[start] === 0x0a || bytes[start] === 0x20)) start++;
  if (bytes.toString('latin1', start, start + 3) !== 'MSH' || bytes.length < start + 8) return undefined;
  let end = start;
  while (end < bytes.length && bytes[end] !== 0x0d && bytes[end] !== 0x0a) end++;
  const line = bytes.toString('latin1', start, end);
  const fieldSeparator = line[3];
  const repetitionSeparator = line[5];
  // fields[0] = "MSH", fields[1] = MSH-2, so fields[k] = MSH-(k+1).
  const fields = line.split(fieldSeparator);
  const value = fields[17]?.split(repetitionSeparator)[0]?.trim();
  return value ? value : undefined;
}

/**
 * Which charset an MSH-18 value names.
 * @param declared - MSH-18 as sent, or undefined when absent.
 * @param fallback - the connector's charset, used when MSH-18 is empty.
 * @throws Hl7TextError `unsupported_charset` for a character set Settle does not decode.
 */
export function charsetOf(declared: string | undefined, fallback: Hl7Charset): Hl7Charset {
  if (declared === undefined || declared === '') return fallback;
  const charset = CHARSETS[declared.toUpperCase()];
  if (!charset) throw new Hl7TextError('unsupported_charset', `MSH-18 character set "${declared.slice(0, 40)}" is not supported (UTF-8 and ISO-8859-1 are)`);
  return charset;
}

/** A message decoded to text. */
export interface DecodedHl7 {
  text: string;
  /** The charset the bytes were read with. */
  charset: Hl7Charset;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/**
 * Decodes a message's bytes by its MSH-18, or `fallback` when it declares none.
 * @throws Hl7TextError `unsupported_charset`, or `invalid_bytes` when the bytes are not valid in that charset.
 */
export function decodeHl7Bytes(bytes: Buffer, fallback: Hl7Charset = 'UTF-8'): DecodedHl7 {
  const charset = charsetOf(readMsh18(bytes), fallback);
  if (charset === 'ISO-8859-1') return { text: bytes.toString('latin1'), charset };
  try {
    return { text: utf8.decode(bytes), charset };
  } catch {
    throw new Hl7TextError('invalid_bytes', 'the message bytes are not valid UTF-8 (declare ISO-8859-1 in MSH-18 if that is what is sent)');
  }
}

/** The delimiters a message declares in MSH-1 and MSH-2. */
export interface Hl7Delimiters {
  field: string;
  component: string;
  repetition: string;
  escape: string;
  subcomponent: string;
}

/** The standard delimiters `|^~\&`. */
export const DEFAULT_DELIMITERS: Hl7Delimiters = { field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&' };

/**
 * Replaces the escape sequences of a field value with what they stand for: `\F\ \S\ \T\ \R\ \E\` become the
 * declared delimiters and `\Xhh…\` the bytes it spells, read in the message's charset. Other sequences
 * (formatting such as `\H\`, `\.br\`, character-set switches) are left exactly as sent.
 * @param value - a field, component or subcomponent value as it appears in the message.
 */
export function decodeEscapes(value: string, delimiters: Hl7Delimiters = DEFAULT_DELIMITERS, charset: Hl7Charset = 'UTF-8'): string {
  const esc = delimiters.escape;
  if (!esc || !value.includes(esc)) return value;
  let out = '';
  let i = 0;
  while (i < value.length) {
    const start = value.indexOf(esc, i);
    if (start === -1) break;
    const end = value.indexOf(esc, start + 1);
    if (end === -1) break;
    out += value.slice(i, start);
    const body = value.slice(start + 1, end);
    const replacement = unescapeOne(body, delimiters, charset);
    if (replacement === undefined) {
      out += value.slice(start, end + 1);
    } else {
      out += replacement;
    }
    i = end + 1;
  }
  return out + value.slice(i);
}

function unescapeOne(body: string, d: Hl7Delimiters, charset: Hl7Charset): string | undefined {
  switch (body) {
    case 'F':
      return d.field;
    case 'S':
      return d.component;
    case 'T':
      return d.subcomponent;
    case 'R':
      return d.repetition;
    case 'E':
      return d.escape;
  }
  if (/^X(?:[0-9A-Fa-f]{2})+$/.test(body)) return Buffer.from(body.slice(1), 'hex').toString(nodeEncoding(charset));
  return undefined;
}

/**
 * Escapes text for use inside a field: the delimiters and the escape character become escape sequences, and
 * line breaks (which would end a segment) become `\X0D\` / `\X0A\`.
 */
export function escapeHl7(text: string, d: Hl7Delimiters = DEFAULT_DELIMITERS): string {
  let out = '';
  for (const ch of text) {
    if (ch === d.escape) out += `${d.escape}E${d.escape}`;
    else if (ch === d.field) out += `${d.escape}F${d.escape}`;
    else if (ch === d.component) out += `${d.escape}S${d.escape}`;
    else if (ch === d.subcomponent) out += `${d.escape}T${d.escape}`;
    else if (ch === d.repetition) out += `${d.escape}R${d.escape}`;
    else if (ch === '\r') out += `${d.escape}X0D${d.escape}`;
    else if (ch === '\n') out += `${d.escape}X0A${d.escape}`;
    else out += ch;
  }
  return out;
}

/** Digits after the decimal point of ISO 4217 currencies that do not use 2. */
/** HL7 NM: an optional sign, digits and an optional decimal point. No exponent, no separators. */
const HL7_NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)$/;

/**
 * Parses an HL7 NM amount exactly into integer minor units: `"150.00"` → 15000, `"-25.5"` → -2550,
 * `"+3"` → 300, `"0.10"` → 10, through the one money parser of the domain (never a float).
 * @param amount - the amount as sent (surrounding spaces allowed).
 * @param currency - ISO 4217 code that fixes the minor-unit digits (USD: 2, JPY: 0).
 * @throws Hl7TextError `invalid_amount` for anything else: thousands separators (`"1,000.00"`), exponents,
 *   more decimals than the currency has (unless they are zeros), empty text, an unknown currency, or a value
 *   beyond 2^53.
 */
export function parseAmountMinorUnits(amount: string, currency = 'USD'): number {
  const text = amount.trim();
  if (!HL7_NUMBER.test(text)) {
    throw new Hl7TextError('invalid_amount', `"${text.slice(0, 32)}" is not an amount (expected digits with an optional sign and decimal point, like 150.00)`);
  }
  try {
    return parseMoney(text, currency).amount + 0; // + 0 turns -0 into 0
  } catch (error) {
    if (error instanceof MoneyError) throw new Hl7TextError('invalid_amount', error.message);
    throw error;
  }
}

/** An amount read from a CP/MO field (`amount&currency`). */
export interface Hl7Amount {
  /** Integer minor units (cents for USD). */
  minorUnits: number;
  /** ISO 4217 code from the second sub-component, upper-cased; `fallbackCurrency` when absent. */
  currency: string;
}

/**
 * Reads the first component of a money field such as FT1-11 or FT1-12 (`150.00&USD^…`): the amount from its
 * first sub-component, the currency from its second.
 * @param field - the raw field value (components and sub-components still joined).
 * @param fallbackCurrency - used when the field names no currency.
 */
export function parseMoneyField(field: string, delimiters: Hl7Delimiters = DEFAULT_DELIMITERS, fallbackCurrency = 'USD'): Hl7Amount {
  const first = field.split(delimiters.repetition)[0].split(delimiters.component)[0];
  const [amount = '', currencyText = ''] = first.split(delimiters.subcomponent);
  const currency = (currencyText.trim() || fallbackCurrency).toUpperCase();
  if (!/^[A-Z]{3}$/.test(currency)) throw new Hl7TextError('invalid_amount', `"${currency.slice(0, 8)}" is not an ISO 4217 currency code`);
  return { minorUnits: parseAmountMinorUnits(amount, currency), currency };
}
