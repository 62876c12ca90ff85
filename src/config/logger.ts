/**
 * The engine's JSON log, with PHI redaction applied to every entry.
 *
 * Logs carry ids, never names, phones, emails, addresses or dates of birth. Two layers enforce it:
 * - **keys**: a property whose name is known to carry PHI (`name`, `given`, `phone`, `telecom`, `email`,
 *   `address`, `line`, `city`, `postalCode`, `birthDate`, `ssn`, ... in any case, camelCase or snake_case)
 *   has its whole value replaced with `"[redacted]"`, however deep it sits;
 * - **values**: every string anywhere (messages, metadata, Error messages and stacks, even property names)
 *   is scrubbed of email addresses, phone numbers, calendar dates and street addresses.
 *
 * The log's own `timestamp` is added after redaction, so it always survives; a timestamp with a time of day
 * in metadata survives too, while a bare date (`1984-03-07`, `03/07/1984`) or a midnight timestamp (what a
 * birth date becomes as a `Date`) is treated as a possible birth date.
 */
import type { Writable } from 'node:stream';
import winston from 'winston';
import type { Settings } from './settings.ts';

/** The engine's logger (a winston logger writing one JSON object per line). */
export type Logger = winston.Logger;

/** What replaces the value of a property whose key is known to carry PHI. */
const REDACTED = '[redacted]';

/**
 * Property names (lower-cased, with `_`, `-` and other separators removed) whose values are PHI.
 * Covers FHIR (`HumanName.given`, `ContactPoint` via `telecom`, `Address.line`, `Reference.display`,
 * narrative `div`) as well as the usual flat names (`firstName`, `patient_phone`, `zipCode`, `dob`).
 */
const PHI_KEY = new RegExp(
  '^(?:' +
    [
      '(?:patient|guarantor|subscriber|insured|contact|given|family|first|last|middle|full|maiden|legal|preferred|nick|sur|display)?names?',
      'given',
      'family',
      'display',
      'div',
      'telecoms?',
      '[a-z0-9]*phones?(?:numbers?)?',
      '[a-z0-9]*e?mails?(?:address(?:es)?)?',
      'mobile',
      'fax',
      '[a-z0-9]*address(?:es)?(?:lines?)?[0-9]*',
      'lines?[0-9]*',
      'street[a-z0-9]*',
      'city',
      'district',
      'postalcode',
      'postcode',
      'zip(?:code)?[0-9]*',
      '[a-z0-9]*birth[a-z0-9]*',
      '[a-z0-9]*dob',
      '[a-z0-9]*ssn',
      'socialsecurity[a-z0-9]*',
    ].join('|') +
    ')$',
);

/** Value patterns scrubbed from every string, in order (emails first: they may contain digits). */
const PATTERNS: ReadonlyArray<readonly [RegExp, string]> = [
  [/[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g, '[email]'],
  // YYYY-MM-DD or YYYY/MM/DD, optionally at midnight; a date with any other time of day is a timestamp and survives.
  [
    /(?<!\d)\d{4}[-/](?:0?[1-9]|1[0-2])[-/](?:0?[1-9]|[12]\d|3[01])(?:T00:00(?::00(?:\.0+)?)?(?:Z|[+-]00:?00)?)?(?![\d:]|T\d|\s\d{1,2}:)/g,
    '[date]',
  ],
  // MM/DD/YYYY or MM-DD-YYYY.
  [/(?<!\d)(?:0?[1-9]|1[0-2])[-/](?:0?[1-9]|[12]\d|3[01])[-/]\d{4}(?!\d)/g, '[date]'],
  // North American numbers: (617) 555-0134, 617-555-0134, 617.555.0134, 6175550134, +1 617 555 0134, 1-617-555-0134.
  [/(?<![\w+])(?:\+?1[ .-]?)?(?:\([2-9]\d{2}\)[ .-]?|[2-9]\d{2}[ .-]?)\d{3}[ .-]?\d{4}(?!\w)/g, '[phone]'],
  // Any other international number: +442079460958, +44 20 7946 0958.
  [/(?<![\w+])\+[1-9](?:[ .()-]{0,2}\d){7,14}(?!\w)/g, '[phone]'],
  // A house number, up to four capitalised words and a street suffix: 12 Elm Street, 400 N Main St.
  [
    /\b\d{1,6}\s+(?:[A-Z][A-Za-z'.-]*\s+){1,4}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|Circle|Cir|Highway|Hwy|Parkway|Pkwy|Square|Sq)\b\.?/g,
    '[address]',
  ],
];

/**
 * Returns a copy of `value` with PHI removed: values of PHI-named properties become `"[redacted]"`
 * (booleans and null are kept: they carry no PHI), and every string is scrubbed of emails, phone numbers,
 * dates and street addresses. Errors become plain `{ type, message, stack, ...props, cause }` objects,
 * objects with `toJSON` (Dates) are redacted in their JSON form, binary data is summarised by size and
 * circular references become `"[circular]"`. The input is never modified.
 * @param value - anything about to leave the process in a log line or an error report.
 * @returns the redacted copy, safe to serialise.
 */
export function redact(value: unknown): unknown {
  return redactValue(value, new WeakSet());
}

function redactValue(value: unknown, ancestors: WeakSet<object>): unknown {
  if (typeof value === 'string') return scrub(value);
  if (value === null || typeof value !== 'object') return value;
  if (ancestors.has(value)) return '[circular]';
  ancestors.add(value);
  try {
    if (value instanceof Error) return redactProperties(errorProperties(value), ancestors);
    if (ArrayBuffer.isView(value)) return `[${value.byteLength} bytes]`;
    if (Array.isArray(value)) return value.map((item) => redactValue(item, ancestors));
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') return redactValue(toJSON.call(value), ancestors);
    return redactProperties(value, ancestors);
  } finally {
    ancestors.delete(value);
  }
}

function redactProperties(object: object, ancestors: WeakSet<object>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(object)) {
    out[scrub(key)] = redactProperty(key, value, ancestors);
  }
  return out;
}

function redactProperty(key: string, value: unknown, ancestors: WeakSet<object>): unknown {
  const carriesNothing = value === null || value === undefined || typeof value === 'boolean';
  if (!carriesNothing && PHI_KEY.test(key.toLowerCase().replace(/[^a-z0-9]/g, ''))) return REDACTED;
  return redactValue(value, ancestors);
}

function errorProperties(error: Error): Record<string, unknown> {
  // `type`, not `name`: `name` is a PHI key.
  const properties: Record<string, unknown> = { ...error, type: error.name, message: error.message, stack: error.stack };
  if (error.cause !== undefined) properties.cause = error.cause;
  if (error instanceof AggregateError) properties.errors = error.errors;
  return properties;
}

function scrub(text: string): string {
  let out = text;
  for (const [pattern, replacement] of PATTERNS) out = out.replace(pattern, replacement);
  return out;
}

/** Where winston keeps the arguments that fill `%s`-style placeholders (triple-beam's `SPLAT`). */
const SPLAT = Symbol.for('splat');
/** Where winston keeps an entry's level (triple-beam's `LEVEL`: `level` itself may be colourised). */
const LEVEL = Symbol.for('level');

/**
 * The winston format run before `splat`: redacts the arguments placeholders are filled from, so an object
 * logged with `%j` or `%o` loses its PHI-named properties too. Errors are left as they are: `splat` copies
 * their properties into the entry and {@link redaction} handles them there.
 */
const redactArguments = winston.format((info) => {
  const args = info[SPLAT];
  if (!Array.isArray(args)) return info;
  return { ...info, [SPLAT]: args.map((arg: unknown) => (arg instanceof Error ? arg : redact(arg))) };
});

/**
 * The winston format that redacts an entry: every string-keyed field through the key and value rules,
 * and the symbol-keyed internals through {@link redact}. It returns a new entry, so objects the caller
 * logged are never modified.
 */
const redaction = winston.format((info) => {
  const out = redactProperties(info, new WeakSet()) as winston.Logform.TransformableInfo;
  for (const symbol of Object.getOwnPropertySymbols(info)) out[symbol] = redact(info[symbol]);
  return out;
});

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Lowest level written. */
  level: Settings['logLevel'];
  /** Where the JSON lines go (tests pass a stream to capture them). Default: stdout. */
  stream?: Writable;
}

/**
 * Creates the engine's logger: one JSON object per line with `level`, `message`, the metadata and a
 * `timestamp`, PHI redacted from all of it. Errors, logged alone or as metadata, keep their (redacted)
 * message and stack; `%s`-style arguments are redacted before they are interpolated.
 * @param options - level and, optionally, the stream to write to.
 * @returns the logger.
 */
export function createLogger(options: LoggerOptions): Logger {
  const logger: Logger = winston.createLogger({
    level: options.level,
    format: winston.format.combine(
      // Winston runs the formats of every entry and leaves the level to the transport: an entry below the level is
      // dropped here, before redaction (the costliest format) looks at it.
      winston.format((info) => (logger.isLevelEnabled(String(info[LEVEL] ?? info.level)) ? info : false))(),
      winston.format.errors({ stack: true, cause: true }),
      redactArguments(),
      winston.format.splat(),
      redaction(),
      winston.format.timestamp(),
      winston.format.json(),
    ),
    transports: [new winston.transports.Stream({ stream: options.stream ?? process.stdout })],
  });
  return logger;
}

/**
 * A logger that writes nothing, for tests and tools that need a logger but no output.
 * @returns the silent logger.
 */
export function silentLogger(): Logger {
  return winston.createLogger({ silent: true });
}
