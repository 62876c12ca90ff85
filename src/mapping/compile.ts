/**
 * Compiles a mapping file once into a function from a source record to what Settle makes of it: patient and
 * guarantor contact, the account, and the ledger lines (balance events). FHIRPath is parsed at load
 * (`parseFhirPath`), HL7 paths and code tables are checked at load; a problem names the file, the JSON
 * pointer and, for FHIRPath, the column in the expression.
 *
 * Field names with a meaning (everything else is free, for use in checks and tests):
 * - `patientIdentifier`, `patientIdentifierSystem`, `patientName`, `patientFamilyName`, `patientGivenName`, `patientPhone`,
 *   `patientEmail`, `patientAddressLine`, `patientCity`, `patientState`, `patientPostalCode`, `patientCountry`,
 *   `patientLanguage`, `patientBirthDate`, and the same with `guarantor` (no guarantor: the patient is their own);
 * - `accountIdentifier`, `accountIdentifierSystem`, `accountName`;
 * - `serviceDate` (events without their own), `recordStatus` (`void` or `pending`: the record contributes nothing),
 *   `statementBalance` (money the record's lines must add up to).
 */
import { evalFhirPathTyped, parseFhirPath, toTypedValue, type Hl7Segment, type TypedValue } from '@medplum/core';
import type { DataFileProblem } from '../config/data-files.ts';
import type { PersonContact, PersonIdentifier } from '../domain/contact.ts';
import { balanceEffect, ENTRY_KINDS, PAYER_KINDS, type LedgerLine } from '../domain/ledger.ts';
import { formatMoney, MoneyError, sumMoney, type Money } from '../domain/money.ts';
import type { SourceRecord, SourceTransport } from '../domain/source-record.ts';
import { compileFhirPathAst, type CompiledPath } from './fhirpath-compile.ts';
import { Hl7Record, isHl7Body, parseHl7Path } from './hl7.ts';
import { compileEventMapper, type CompiledEvent, type ForEach } from './events.ts';
import { specialize } from './specialize.ts';
import { describe as describeValue, toDate, toIsoDateTime, toMoney, TransformError } from './transforms.ts';

/** A mapping file as loaded (see `loadDataFiles`). */
export interface MappingFile {
  name: string;
  /** Path relative to the configuration directory, as problems name it. */
  file: string;
  data: Record<string, unknown>;
}

/** A mapping file that cannot be compiled; carries every problem. */
export class MappingCompileError extends Error {
  readonly problems: DataFileProblem[];
  constructor(problems: DataFileProblem[]) {
    super(`Invalid mapping:\n${problems.map((p) => `  ${p.file}: ${p.path}: ${p.message}`).join('\n')}`);
    this.name = 'MappingCompileError';
    this.problems = problems;
  }
}

/** One reason a record could not be mapped. */
export interface MappingIssue {
  /** JSON pointer into the mapping file of the field or event that failed. */
  path: string;
  /** `required`, `invalid-amount`, `too-many-decimals`, `invalid-date`, `unknown-code`, `negative-amount`, `zero-amount`, `currency-mismatch`, `balance-mismatch`, `missing-patient`, `wrong-source`, `invalid` */
  code: string;
  message: string;
  /** The 1-based item of a `forEach`, when the issue is about one. */
  item?: number;
}

/** A person as a record names them. */
export interface MappedPerson {
  identifier: PersonIdentifier;
  contact: PersonContact;
}

/** What a record maps to. */
export interface MappedRecord {
  mapping: string;
  /** Every record-level field's value (money as `Money`, dates as ISO text). */
  values: Record<string, unknown>;
  patient: MappedPerson | null;
  /** Null: the patient is their own guarantor (or the account's guarantor applies). */
  guarantor: MappedPerson | null;
  account: { identifier: PersonIdentifier; name: string | null } | null;
  /** True when `recordStatus` says the record contributes nothing (its earlier lines are reversed). */
  void: boolean;
  lines: LedgerLine[];
}

/** The result of mapping one record. */
export type MapResult = { ok: true; record: MappedRecord } | { ok: false; issues: MappingIssue[] };

/** Options of {@link CompiledMapping.map}. */
export interface MapOptions {
  /** Time zone of dates without offset and of calendar dates of date-times (the practice's); default UTC. */
  timeZone?: string;
}

/** A compiled mapping. */
export interface CompiledMapping {
  name: string;
  file: string;
  transport: SourceTransport;
  /** FHIR resource type or HL7 message type it reads (the first, when it reads several). */
  accepts: string | null;
  /** Every FHIR resource type or HL7 message type it reads; empty for CSV. */
  acceptsAll: string[];
  /** CSV columns that identify a row across files (source id), when declared. */
  csvKey: string[] | null;
  produces: string[];
  /** What a field or event path (as in a {@link MappingIssue}) reads: its column, HL7 path or FHIRPath. */
  sourceOf(path: string): string | undefined;
  map(record: Pick<SourceRecord, 'transport' | 'resourceType' | 'body' | 'connector'>, options?: MapOptions): MapResult;
}

interface FieldSpec {
  fhirpath?: string;
  hl7?: string;
  column?: string;
  const?: string | number | boolean;
  transform?: 'string' | 'money' | 'date' | 'datetime' | 'code-table';
  currency?: string;
  currencyFrom?: string;
  timeZone?: string;
  format?: string;
  codeTable?: string;
  default?: string | number | boolean;
  required?: boolean;
  all?: boolean;
  sum?: boolean;
}

/** An event as a mapping file declares it. */
export interface EventSpec {
  name: string;
  forEach?: string;
  kind: string | FieldSpec;
  payer?: string | FieldSpec;
  amount: FieldSpec;
  serviceDate?: FieldSpec;
  serviceCode?: FieldSpec;
  description?: FieldSpec;
  negativeAmounts?: 'quarantine' | 'allow' | 'absolute' | 'balance-signed';
  zeroAmounts?: 'skip' | 'keep' | 'quarantine';
}

/** Where a getter reads from (shared with `events.ts`). */
export interface Context {
  record: Pick<SourceRecord, 'connector'>;
  /** The FHIR resource, as parsed JSON. */
  resource?: unknown;
  /** The current `forEach` item, as parsed JSON. */
  item?: unknown;
  /** The 1-based ordinal of the current `forEach` item (for HL7, of its segment). */
  ordinal?: number;
  /** Typed values for Medplum's evaluator, made on first need. */
  typed?: { resource: TypedValue; item?: TypedValue };
  /** The input collection of compiled FHIRPath (`[item ?? resource]`), made on first need. */
  focus?: readonly unknown[];
  hl7?: Hl7Record;
  segment?: Hl7Segment;
  row?: Record<string, unknown>;
  timeZone: string;
}

/**
 * A context with every property present, in one order, so that getters read every context (and its copies per
 * `forEach` item, made by spreading it) through one object shape.
 */
function context(record: Context['record'], timeZone: string, at: Pick<Context, 'resource' | 'hl7' | 'row'>): Context {
  return { record, resource: at.resource, item: undefined, ordinal: undefined, typed: undefined, focus: undefined, hl7: at.hl7, segment: undefined, row: at.row, timeZone };
}

type Getter = (ctx: Context) => readonly unknown[];
/** A compiled field: its value in a context (undefined when it has none, or an issue was recorded). */
export type FieldFn = (ctx: Context, issues: MappingIssue[], item?: number) => unknown;
/** A field's transform of its values; throws TransformError or MoneyError for a value it cannot convert. */
type Convert = (values: readonly unknown[], ctx: Context, issues: MappingIssue[], item: number | undefined) => unknown;
/** Records an issue of a field (of the `forEach` item, when given). */
type Fail = (issues: MappingIssue[], item: number | undefined, code: string, message: string) => undefined;

/** What a field function, copied by `specialize` (which sees no module scope), receives. */
interface FieldKit {
  present(values: readonly unknown[]): readonly unknown[];
  explain(error: unknown, phi: boolean): { code: string; message: string };
}

const fieldKit: FieldKit = {
  present,
  explain(error, phi) {
    // Contact fields are PHI: their values never reach an OperationOutcome, the quarantine or a log.
    if (error instanceof TransformError || error instanceof MoneyError) return { code: error.code, message: phi ? redact(error.message) : error.message };
    throw error;
  },
};

const ALWAYS_LIST = new Set(['GivenName', 'Phone', 'AddressLine']);
const LANGUAGE: Record<SourceTransport, keyof FieldSpec> = { 'fhir-r4': 'fhirpath', 'hl7v2-mllp': 'hl7', csv: 'column' };

/**
 * Compiles a mapping file.
 * @throws MappingCompileError listing every problem (bad FHIRPath with its column, an HL7 path or segment
 *   that is not one, a field in the wrong language, a code table that does not exist, an unknown event kind).
 */
export function compileMapping(input: MappingFile): CompiledMapping {
  const problems: DataFileProblem[] = [];
  const problem = (path: string, message: string) => problems.push({ file: input.file, path, message });
  const data = input.data;
  const source = (data.source ?? {}) as { transport?: SourceTransport; resourceType?: string; messageType?: string | string[]; key?: string[] };
  const transport = source.transport ?? 'fhir-r4';
  const codeTables = (data.codeTables ?? {}) as Record<string, Record<string, string>>;
  const name = String(data.name ?? input.name);

  const compileGetter = (path: string, key: 'fhirpath' | 'hl7' | 'column' | 'const', text: unknown): Getter | undefined => {
    if (key === 'const') return () => [text];
    if (key !== LANGUAGE[transport]) {
      problem(path, `reads with "${key}", but the source is ${transport}: use "${LANGUAGE[transport]}"`);
      return undefined;
    }
    if (key === 'fhirpath') {
      const expression = String(text);
      const evaluate = compileExpression(expression, path === '' ? '' : `${path}/fhirpath`, problem);
      return evaluate;
    }
    if (key === 'hl7') {
      const parsed = parseHl7Path(String(text));
      if (!parsed) {
        problem(`${path}/hl7`, `"${String(text)}" is not an HL7 path like "PID-18", "FT1-11.1" or "PID-3[2].1"`);
        return undefined;
      }
      return (ctx) => {
        const value = ctx.hl7?.get(parsed, ctx.segment);
        return value === undefined ? [] : [value];
      };
    }
    const column = String(text);
    return (ctx) => [ctx.row?.[column]];
  };

  const sources = new Map<string, string>();
  const compileField = (spec: FieldSpec, path: string, defaultTimeZone?: string): FieldFn | undefined => {
    const key = (['fhirpath', 'hl7', 'column', 'const'] as const).find((k) => spec[k] !== undefined);
    if (!key) {
      problem(path, `must read its value with "${LANGUAGE[transport]}" or give a "const"`);
      return undefined;
    }
    if (key !== 'const') sources.set(path, String(spec[key]));
    const get = compileGetter(path, key, spec[key]);
    const currencyGet =
      spec.currencyFrom === undefined ? undefined : compileGetter(`${path}/currencyFrom`, LANGUAGE[transport] as 'fhirpath', spec.currencyFrom);
    const transform = spec.transform ?? 'string';
    const phi = /^\/fields\/(patient|guarantor)/.test(path);
    const table = spec.codeTable === undefined ? undefined : codeTables[spec.codeTable];
    if (transform === 'code-table' && !table) problem(`${path}/codeTable`, `names no code table "${String(spec.codeTable)}"`);
    if (transform === 'money' && !spec.currency && !spec.currencyFrom && transport !== 'fhir-r4') {
      problem(`${path}/currency`, 'is required for money (or currencyFrom)');
    }
    if (!get || (spec.currencyFrom !== undefined && !currencyGet)) return undefined;
    const fail: Fail = (issues, item, code, message) => {
      issues.push(item === undefined ? { path, code, message } : { path, code, message, item });
      return undefined;
    };
    const missing = key === 'const' ? 'has no value' : `has no value (${String(spec[key])})`;
    const all = spec.all === true;
    const zoneOf = (ctx: Context) => spec.timeZone ?? defaultTimeZone ?? ctx.timeZone;
    const look = (v: unknown) => {
      const code = scalar(v).trim();
      const mapped = table?.[code] ?? table?.['*'];
      if (mapped === undefined) throw new TransformError('unknown-code', `code "${code}" is not in code table "${String(spec.codeTable)}"`);
      return mapped;
    };
    const text = (v: unknown) => scalar(v).trim();
    // The transform, chosen once.
    const convert: Convert =
      transform === 'money'
        ? (values, ctx, issues, item) => {
            const from = currencyGet ? (currencyGet(ctx).find((c) => typeof c === 'string' && c.trim() !== '') as string | undefined)?.trim() : undefined;
            const currency = from ?? spec.currency;
            if (values.length === 1) return toMoney(values[0], currency);
            const amounts: Money[] = [];
            for (const v of values) amounts.push(toMoney(v, currency));
            if (!spec.sum) return fail(issues, item, 'invalid', `has ${amounts.length} amounts; set "sum": true to add them`);
            return sumMoney(amounts);
          }
        : transform === 'date'
          ? (values, ctx) => (all ? values.map((v) => toDate(v, zoneOf(ctx), spec.format)) : toDate(values[0], zoneOf(ctx), spec.format))
          : transform === 'datetime'
            ? (values, ctx) => (all ? values.map((v) => toIsoDateTime(v, zoneOf(ctx), spec.format)) : toIsoDateTime(values[0], zoneOf(ctx), spec.format))
            : transform === 'code-table'
              ? (values) => (all ? values.map(look) : look(values[0]))
              : (values) => (all ? values.map(text) : text(values[0]));
    return specialize(
      (get: Getter, convert: Convert, fail: Fail, fallback: unknown, required: boolean, missing: string, phi: boolean, kit: FieldKit): FieldFn =>
        (ctx, issues, item) => {
          let values = kit.present(get(ctx));
          if (values.length === 0 && fallback !== undefined) values = [fallback];
          if (values.length === 0) return required ? fail(issues, item, 'required', missing) : undefined;
          try {
            return convert(values, ctx, issues, item);
          } catch (error) {
            const why = kit.explain(error, phi);
            return fail(issues, item, why.code, why.message);
          }
        },
    )(get, convert, fail, spec.default, spec.required === true, missing, phi, fieldKit);
  };

  // Record-level fields.
  const fieldSpecs = (data.fields ?? {}) as Record<string, FieldSpec>;
  const fields = new Map<string, FieldFn>();
  for (const [field, spec] of Object.entries(fieldSpecs)) {
    const part = /^(?:patient|guarantor)(.+)$/.exec(field)?.[1];
    const fn = compileField(part && ALWAYS_LIST.has(part) ? { ...spec, all: true } : spec, `/fields/${field}`);
    if (fn) fields.set(field, fn);
  }
  const recordValues = compileValues(fields);

  // Events.
  const eventSpecs = (Array.isArray(data.events) ? data.events : []) as EventSpec[];
  const constant = (value: string): FieldFn => () => value;
  const events: CompiledEvent[] = [];
  /** Events that iterate the same items share one `forEach` (and, in `map`, its items). */
  const forEachOf = new Map<string, ForEach>();
  const eventNames = new Set<string>();
  eventSpecs.forEach((spec, index) => {
    const path = `/events/${index}`;
    if (eventNames.has(spec.name)) problem(`${path}/name`, `repeats the name "${spec.name}" of another event (line keys must be unique)`);
    eventNames.add(spec.name);
    const optional = (key: 'serviceDate' | 'serviceCode' | 'description') => (spec[key] ? compileField(spec[key], `${path}/${key}`) : undefined);
    const choice = (key: 'kind' | 'payer', allowed: readonly string[], fallback?: string): FieldFn | undefined => {
      const value = spec[key] ?? fallback;
      if (typeof value === 'string') {
        if (!allowed.includes(value)) problem(`${path}/${key}`, `must be one of: ${allowed.join(', ')} (got "${value}")`);
        return constant(value);
      }
      if (value === undefined) return undefined;
      if (value.transform !== 'code-table') problem(`${path}/${key}`, `must be one of ${allowed.join(', ')}, or a field with a code table mapping to them`);
      const table = value.codeTable === undefined ? undefined : codeTables[value.codeTable];
      for (const [code, mapped] of Object.entries(table ?? {})) {
        if (!allowed.includes(mapped) && !(key === 'kind' && mapped === 'ignore')) {
          problem(`/codeTables/${String(value.codeTable)}/${code}`, `must be one of: ${allowed.join(', ')}${key === 'kind' ? ', ignore' : ''} (got "${mapped}")`);
        }
      }
      return compileField({ ...value, required: value.required ?? true }, `${path}/${key}`);
    };
    let forEach = spec.forEach === undefined ? undefined : forEachOf.get(spec.forEach);
    if (spec.forEach !== undefined && !forEach) {
      if (transport === 'fhir-r4') {
        const items = compileExpression(spec.forEach, `${path}/forEach`, problem);
        if (items) forEach = (ctx) => items(ctx).map((item, i) => ({ ...ctx, item, ordinal: i + 1, typed: undefined, focus: undefined }));
      } else if (transport === 'hl7v2-mllp') {
        if (!/^[A-Z][A-Z0-9]{2}$/.test(spec.forEach)) problem(`${path}/forEach`, `must be a segment name like "FT1" (got "${spec.forEach}")`);
        const segmentName = spec.forEach;
        forEach = (ctx) => (ctx.hl7?.segments(segmentName) ?? []).map(({ segment, ordinal }) => ({ ...ctx, segment, ordinal }));
      } else {
        problem(`${path}/forEach`, 'is not available for CSV: each row is one record');
      }
      if (forEach) forEachOf.set(spec.forEach, forEach);
    }
    const kind = choice('kind', ENTRY_KINDS);
    const payer = choice('payer', PAYER_KINDS, 'patient');
    const amount = spec.amount ? compileField({ ...spec.amount, required: spec.amount.required ?? true }, `${path}/amount`) : undefined;
    if (!spec.amount) problem(`${path}/amount`, 'is required');
    else if (spec.amount.transform !== 'money') problem(`${path}/amount/transform`, 'must be "money"');
    if (kind && payer) {
      const fields = { serviceDate: optional('serviceDate'), serviceCode: optional('serviceCode'), description: optional('description') };
      events.push({ spec, path, forEach, kind, payer, amount, ...fields, map: compileEventMapper() });
    }
  });

  const produces = (Array.isArray(data.produces) ? data.produces : []) as string[];
  if (produces.includes('balance-event') && events.length === 0 && problems.length === 0) {
    problem('/events', 'is required to produce balance-event: list the balance events the record makes');
  }
  if (problems.length > 0) throw new MappingCompileError(problems);

  const acceptsAll =
    transport === 'fhir-r4' ? [source.resourceType].filter((t) => t !== undefined) : transport === 'hl7v2-mllp' ? [source.messageType ?? []].flat() : [];
  const accepts = acceptsAll[0] ?? null;

  return {
    name,
    file: input.file,
    transport,
    accepts,
    acceptsAll,
    csvKey: Array.isArray(source.key) ? source.key : null,
    produces,
    sourceOf: (path) => sources.get(path),
    map(record, options = {}) {
      const issues: MappingIssue[] = [];
      const ctx = contextOf(record, transport, acceptsAll, options.timeZone ?? 'UTC', issues);
      if (!ctx) return { ok: false, issues };
      const values = recordValues(ctx, issues);
      const patient = person(values, 'patient', record.connector);
      const guarantor = person(values, 'guarantor', record.connector);
      const accountId = values.accountIdentifier;
      const account =
        typeof accountId === 'string'
          ? {
              identifier: { system: stringOr(values.accountIdentifierSystem, `urn:settle:connector:${record.connector}:account`), value: accountId },
              name: typeof values.accountName === 'string' ? values.accountName : null,
            }
          : null;
      const status = values.recordStatus;
      const isVoid = status === 'void' || status === 'pending';
      const lines: LedgerLine[] = [];
      const itemsOf = new Map<ForEach, Context[]>();
      if (!isVoid) {
        for (const event of events) {
          let items = [ctx];
          if (event.forEach) {
            items = itemsOf.get(event.forEach) ?? event.forEach(ctx);
            itemsOf.set(event.forEach, items);
          }
          for (const itemCtx of items) {
            const line = event.map(event, itemCtx, values, issues, itemCtx.ordinal);
            if (line) lines.push(line);
          }
        }
      }
      if (produces.includes('balance-event') && !patient && !isVoid) {
        issues.push({ path: '/fields/patientIdentifier', code: 'missing-patient', message: 'the record names no patient: balance events need one' });
      }
      const mixed = lines.some((l) => l.amount.currency !== lines[0]!.amount.currency);
      if (mixed) {
        const currencies = new Set(lines.map((l) => l.amount.currency));
        issues.push({ path: '/events', code: 'currency-mismatch', message: `the record mixes ${[...currencies].join(' and ')}: mixed currencies are an error, never converted` });
      }
      const expected = values.statementBalance as Money | undefined;
      if (expected && !mixed && issues.length === 0) {
        const total = sumMoney(lines.map((l) => ({ amount: balanceEffect(l.kind, l.amount.amount), currency: l.amount.currency })), expected.currency);
        if (total.amount !== expected.amount) {
          issues.push({
            path: '/fields/statementBalance',
            code: 'balance-mismatch',
            message: `the lines add up to ${formatMoney(total)} ${total.currency}, but the record's balance is ${formatMoney(expected)} ${expected.currency}`,
          });
        }
      }
      if (issues.length > 0) return { ok: false, issues };
      return { ok: true, record: { mapping: name, values, patient, guarantor, account, void: isVoid, lines } };
    },
  };
}

/**
 * Compiles the evaluation of the record-level fields into one function that stores each value under its name
 * written out as a (JSON) string literal, so the values object is built through one chain of object shapes
 * and each field's call is its own (see `specialize.ts`). Fields without a value are left out.
 */
function compileValues(fields: ReadonlyMap<string, FieldFn>): (ctx: Context, issues: MappingIssue[]) => Record<string, unknown> {
  const names = [...fields.keys()];
  const stores = names.map((name, i) => `value = f${i}(ctx, issues); if (value !== undefined) values[${JSON.stringify(name)}] = value;`);
  const source = `"use strict"; return function values(ctx, issues) { const values = {}; let value; ${stores.join('\n')} return values; };`;
  return new Function(...names.map((_, i) => `f${i}`), source)(...fields.values());
}

function contextOf(
  record: Pick<SourceRecord, 'transport' | 'resourceType' | 'body' | 'connector'>,
  transport: SourceTransport,
  accepts: readonly string[],
  timeZone: string,
  issues: MappingIssue[],
): Context | undefined {
  const wrong = (message: string) => {
    issues.push({ path: '/source', code: 'wrong-source', message });
    return undefined;
  };
  if (record.transport !== transport) return wrong(`the mapping reads ${transport} records, not ${record.transport}`);
  const body = record.body;
  if (transport === 'fhir-r4') {
    const resourceType = (body as { resourceType?: unknown } | null)?.resourceType;
    if (typeof resourceType !== 'string') return wrong('the record is not a FHIR resource (no resourceType)');
    if (accepts.length > 0 && !accepts.includes(resourceType)) return wrong(`the mapping reads ${accepts.join(', ')}, not ${resourceType}`);
    return context(record, timeZone, { resource: body });
  }
  if (transport === 'hl7v2-mllp') {
    if (!isHl7Body(body)) return wrong('the record body has no HL7 message');
    let hl7: Hl7Record;
    try {
      hl7 = new Hl7Record(body);
    } catch (error) {
      return wrong(`the HL7 message cannot be read: ${(error as Error).message}`);
    }
    const msh = hl7.message.getSegment('MSH');
    const type = msh ? `${msh.getComponent(9, 1)}^${msh.getComponent(9, 2)}` : '';
    if (accepts.length > 0 && !accepts.includes(type)) return wrong(`the mapping reads ${accepts.join(', ')} messages, not ${type || 'a message without MSH-9'}`);
    return context(record, timeZone, { hl7 });
  }
  const row = typeof body === 'object' && body !== null && 'row' in body ? (body as { row: unknown }).row : body;
  if (typeof row !== 'object' || row === null) return wrong('the record body is not a CSV row');
  return context(record, timeZone, { row: row as Record<string, unknown> });
}

const PERSON_PARTS = ['Identifier', 'IdentifierSystem', 'Name', 'FamilyName', 'GivenName', 'Phone', 'Email', 'AddressLine', 'City', 'State', 'PostalCode', 'Country', 'Language', 'BirthDate'] as const;
/** The field names of a person's parts, by role (`patientFamilyName`), made once. */
const PERSON_FIELDS = {
  patient: Object.fromEntries(PERSON_PARTS.map((part) => [part, `patient${part}`])),
  guarantor: Object.fromEntries(PERSON_PARTS.map((part) => [part, `guarantor${part}`])),
} as Record<'patient' | 'guarantor', Record<(typeof PERSON_PARTS)[number], string>>;

function person(values: Record<string, unknown>, role: 'patient' | 'guarantor', connector: string): MappedPerson | null {
  const fields = PERSON_FIELDS[role];
  const get = (part: (typeof PERSON_PARTS)[number]) => values[fields[part]];
  const id = get('Identifier');
  if (typeof id !== 'string') return null;
  const contact: PersonContact = {};
  const family = get('FamilyName') as string | undefined;
  const given = get('GivenName') as string[] | undefined;
  const text = get('Name') as string | undefined;
  if (family || given || text) contact.name = { ...(family ? { family } : {}), ...(given ? { given } : {}), ...(text ? { text } : {}) };
  if (get('Phone')) contact.phones = get('Phone') as string[];
  if (get('Email')) contact.email = get('Email') as string;
  const lines = get('AddressLine') as string[] | undefined;
  const city = get('City') as string | undefined;
  const state = get('State') as string | undefined;
  const postalCode = get('PostalCode') as string | undefined;
  const country = get('Country') as string | undefined;
  if (lines || city || state || postalCode || country) {
    contact.address = { ...(lines ? { lines } : {}), ...(city ? { city } : {}), ...(state ? { state } : {}), ...(postalCode ? { postalCode } : {}), ...(country ? { country } : {}) };
  }
  if (get('Language')) contact.language = get('Language') as string;
  if (get('BirthDate')) contact.birthDate = get('BirthDate') as string;
  return { identifier: { system: stringOr(get('IdentifierSystem'), `urn:settle:connector:${connector}:${role}`), value: id }, contact };
}

/** The values that are there: not undefined, null or blank text (the collection itself when all are). */
function present(values: readonly unknown[]): readonly unknown[] {
  for (const v of values) {
    if (v === undefined || v === null || (typeof v === 'string' && v.trim() === '')) {
      return values.filter((w) => w !== undefined && w !== null && !(typeof w === 'string' && w.trim() === ''));
    }
  }
  return values;
}

function stringOr(value: unknown, fallback: string): string {
  return typeof value === 'string' && value !== '' ? value : fallback;
}

function scalar(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new TransformError('invalid', `expected text, got ${describeValue(value)}`);
}

/** `invalid FHIRPath at column C: reason`, the column taken from the parser or, when it gives none, the end. */
function fhirPathProblem(expression: string, message: string): string {
  const column = /column (\d+)/.exec(message)?.[1];
  const reason = message.replace(/\s*\(line \d+, column \d+\)/, '').replace(/^Parse error at /, 'unexpected ');
  // Medplum counts columns from 0; people (and editors) from 1.
  if (column) return `invalid FHIRPath at column ${Number(column) + 1} of "${expression}": ${reason}`;
  return `invalid FHIRPath at column ${expression.length + 1} (end) of "${expression}": the expression is incomplete (${reason})`;
}

/**
 * Parses a FHIRPath expression once and compiles it to a closure over JSON where the compiler handles it,
 * else to Medplum's evaluator on the parsed AST. A parse error is reported with its column.
 */
function compileExpression(expression: string, path: string, problem: (path: string, message: string) => void): ((ctx: Context) => readonly unknown[]) | undefined {
  let atom;
  try {
    atom = parseFhirPath(expression);
  } catch (error) {
    problem(path, fhirPathProblem(expression, (error as Error).message));
    return undefined;
  }
  const fast = compileFhirPathAst(atom);
  if (fast) return specialize((fast: CompiledPath) => (ctx: Context) => (ctx.resource === undefined ? [] : fast((ctx.focus ??= [ctx.item ?? ctx.resource]), ctx.resource)))(fast);
  return (ctx) => {
    if (ctx.resource === undefined) return [];
    ctx.typed ??= { resource: toTypedValue(ctx.resource) };
    if (ctx.item !== undefined) ctx.typed.item ??= toTypedValue(ctx.item);
    const variables = { '%resource': ctx.typed.resource, '%context': ctx.typed.resource };
    return evalFhirPathTyped(atom, [ctx.typed.item ?? ctx.typed.resource], variables).map((v) => v.value);
  };
}

/** A message without the quoted source values in it. */
function redact(message: string): string {
  return message.replace(/"[^"]*"/g, 'the value');
}
