/**
 * Loads the data folders — `connectors/`, `mappings/`, `policies/`, `fhir-profiles/` — and checks every file
 * against the JSON Schema Settle ships beside its own copy of that folder, then across files (names, references).
 *
 * Every problem in every file is collected, each naming the file, the JSON pointer and what was expected, so
 * `settle config check` and engine start-up report a broken configuration in one pass.
 */
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative, sep } from 'node:path';
import { getSystemErrorMessage } from 'node:util';

/** A data file that parsed and matched its schema. */
export interface DataFile {
  /** The `name` of a connector, mapping or policy, or the `id` of a profile. */
  name: string;
  /** Path relative to the configuration directory, with `/` separators, as problems name it. */
  file: string;
  /** Absolute path of the file. */
  absolutePath: string;
  /** The parsed document, shaped as its schema describes. */
  data: Record<string, unknown>;
}

/** One thing wrong with the configuration. */
export interface DataFileProblem {
  /** File or folder relative to the configuration directory, with `/` separators. */
  file: string;
  /** JSON pointer to the offending value; `""` for the whole document. */
  path: string;
  /** What was expected, phrased to follow the path (`"is required"`, `"must be one of: …"`). */
  message: string;
}

/** Everything under a configuration directory. */
export interface DataFiles {
  connectors: DataFile[];
  mappings: DataFile[];
  policies: DataFile[];
  profiles: DataFile[];
  /** Every problem found, grouped by file; empty when the configuration is usable. */
  problems: DataFileProblem[];
}

/** Thrown by the engine to refuse to start on a broken configuration; carries every problem. */
export class DataFilesError extends Error {
  readonly problems: DataFileProblem[];
  constructor(problems: DataFileProblem[]) {
    super(`Invalid configuration files:\n${problems.map((p) => `  ${formatProblem(p)}`).join('\n')}`);
    this.name = 'DataFilesError';
    this.problems = problems;
  }
}

/**
 * Renders a problem as `file: /json/path: message` (just `file: message` when it concerns the whole file).
 * @param problem - a problem from {@link loadDataFiles}.
 */
export function formatProblem(problem: DataFileProblem): string {
  return `${problem.file}: ${problem.path === '' ? '' : `${problem.path}: `}${problem.message}`;
}

const KINDS = {
  connectors: { folder: 'connectors', schema: 'connector.schema.json', nameKey: 'name' },
  mappings: { folder: 'mappings', schema: 'mapping.schema.json', nameKey: 'name' },
  policies: { folder: 'policies', schema: 'policy.schema.json', nameKey: 'name' },
  profiles: { folder: 'fhir-profiles', schema: 'fhir-profile.schema.json', nameKey: 'id' },
} as const;
type Kind = keyof typeof KINDS;

const ajv = new Ajv2020({ allErrors: true, verbose: true, strict: true, strictRequired: false, allowUnionTypes: true });
addFormats.default(ajv, ['uri', 'date']);
ajv.addFormat('time-zone', isTimeZone);
ajv.addKeyword('errorMessage');
const validators = Object.fromEntries(
  Object.entries(KINDS).map(([kind, { folder, schema }]) => [
    kind,
    ajv.compile(JSON.parse(readFileSync(new URL(`../../${folder}/${schema}`, import.meta.url), 'utf8'))),
  ]),
) as Record<Kind, ValidateFunction>;

/** A file that parsed as JSON, valid or not. */
interface Parsed {
  kind: Kind;
  file: string;
  data: unknown;
}

/**
 * Reads every `*.json` file (not `*.schema.json`, not hidden, subfolders included) in the four data folders
 * of a configuration directory. A missing folder is simply empty. The schemas are always Settle's own.
 * @param configDir - the directory holding the data folders (`settings.configDir`).
 * @returns the files that match their schema, and every problem; files with schema problems are left out.
 */
export function loadDataFiles(configDir: string): DataFiles {
  const problems: DataFileProblem[] = [];
  const loaded: DataFiles = { connectors: [], mappings: [], policies: [], profiles: [], problems };
  if (statSync(configDir, { throwIfNoEntry: false })?.isDirectory() !== true) {
    problems.push({ file: configDir, path: '', message: 'is not a directory' });
    return loaded;
  }
  const parsed: Parsed[] = [];
  for (const kind of Object.keys(KINDS) as Kind[]) {
    for (const absolutePath of listJsonFiles(configDir, KINDS[kind].folder, problems)) {
      const file = relative(configDir, absolutePath).split(sep).join('/');
      const data = readJson(file, absolutePath, problems);
      if (data === undefined) continue;
      parsed.push({ kind, file, data });
      const found = schemaProblems(validators[kind], data);
      problems.push(...found.map((p) => ({ file, ...p })));
      if (found.length === 0) {
        const document = data as Record<string, unknown>;
        loaded[kind].push({ name: document[KINDS[kind].nameKey] as string, file, absolutePath, data: document });
      }
    }
  }
  problems.push(...nameProblems(parsed), ...referenceProblems(parsed));
  problems.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  return loaded;
}

function listJsonFiles(configDir: string, folder: string, problems: DataFileProblem[]): string[] {
  const dir = join(configDir, folder);
  try {
    return readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((entry) => !entry.isDirectory() && entry.name.endsWith('.json') && !entry.name.endsWith('.schema.json'))
      .map((entry) => join(entry.parentPath, entry.name))
      .filter((path) => !relative(dir, path).split(sep).some((part) => part.startsWith('.')))
      .sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      problems.push({ file: folder, path: '', message: `cannot read the folder: ${systemMessage(error)}` });
    }
    return [];
  }
}

function readJson(file: string, absolutePath: string, problems: DataFileProblem[]): unknown {
  let text: string;
  try {
    text = readFileSync(absolutePath, 'utf8').replace(/^\uFEFF/, '');
  } catch (error) {
    problems.push({ file, path: '', message: `cannot read the file: ${systemMessage(error)}` });
    return undefined;
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    problems.push({ file, path: '', message: jsonSyntaxMessage(text, (error as Error).message) });
    return undefined;
  }
}

function systemMessage(error: unknown): string {
  const { errno, code, message } = error as NodeJS.ErrnoException;
  return errno === undefined ? message : `${getSystemErrorMessage(errno)} (${code})`;
}

/** `invalid JSON at line L, column C: reason`, the reason being V8's without its position or excerpt. */
function jsonSyntaxMessage(text: string, message: string): string {
  const offset = syntaxErrorOffset(text, message);
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - before.lastIndexOf('\n');
  const reason = message.replace(/ in JSON at position.*$/s, '').replace(/, .*is not valid JSON$/s, '');
  const trailingComma = /,\s*$/.test(before) && /^[\]}]/.test(text.slice(offset));
  return `invalid JSON at line ${line}, column ${column}: ${reason}${trailingComma ? ' (JSON allows no trailing comma)' : ''}`;
}

function syntaxErrorOffset(text: string, message: string): number {
  const position = /at position (\d+)/.exec(message);
  if (position) return Number(position[1]);
  if (message.includes('end of JSON input')) return text.length;
  // V8 quotes the unexpected token without its position: the shortest prefix that fails ends just after it.
  let good = 0;
  let bad = text.length;
  while (bad - good > 1) {
    const middle = (good + bad) >>> 1;
    if (failsBeforeEnd(text.slice(0, middle))) bad = middle;
    else good = middle;
  }
  return bad - 1;
}

function failsBeforeEnd(prefix: string): boolean {
  try {
    JSON.parse(prefix);
    return false;
  } catch (error) {
    const message = (error as Error).message;
    const position = /at position (\d+)/.exec(message);
    return position ? Number(position[1]) < prefix.length : !message.includes('end of JSON input');
  }
}

function schemaProblems(validate: ValidateFunction, data: unknown): Omit<DataFileProblem, 'file'>[] {
  if (validate(data)) return [];
  const errors = (validate.errors ?? []).filter((e) => e.keyword !== 'if' && e.keyword !== 'propertyNames');
  const choices = errors.filter((e) => e.keyword === 'oneOf' || e.keyword === 'anyOf');
  const shown = errors.filter((e) => !choices.some((choice) => isWithin(e, choice)));
  const unique = new Map(shown.map(describe).map((p) => [`${p.path}\n${p.message}`, p]));
  return [...unique.values()];
}

/** Whether an error explains why one alternative of a oneOf/anyOf failed (that error is reported instead). */
function isWithin(error: ErrorObject, choice: ErrorObject): boolean {
  return error.schemaPath.startsWith(`${choice.schemaPath}/`) && error.instancePath.startsWith(choice.instancePath);
}

/** Keywords whose ajv message a schema may replace with its own `errorMessage`. */
const CUSTOMISABLE = new Set(['pattern', 'format', 'required', 'oneOf', 'anyOf', 'minProperties', 'maxProperties']);

const FORMATS: Record<string, string> = {
  uri: 'must be an absolute URI',
  date: 'must be a date YYYY-MM-DD',
  'time-zone': 'must be an IANA time zone, like "America/New_York"',
};

const SECRET_LIKE = /secret|password|passwd|token|apikey|privatekey|credential/i;

function describe(error: ErrorObject): Omit<DataFileProblem, 'file'> {
  const params = error.params as Record<string, unknown>;
  const custom: unknown = error.parentSchema?.errorMessage;
  const path = error.propertyName === undefined ? error.instancePath : child(error.instancePath, error.propertyName);
  const named = (message: string) => ({ path, message: error.propertyName === undefined ? message : `name ${message}` });
  if (typeof custom === 'string' && CUSTOMISABLE.has(error.keyword)) return named(custom);
  switch (error.keyword) {
    case 'required':
      return { path: child(path, String(params.missingProperty)), message: 'is required' };
    case 'additionalProperties':
    case 'unevaluatedProperties': {
      const property = String(params.additionalProperty ?? params.unevaluatedProperty);
      return { path: child(path, property), message: unknownProperty(property, error.parentSchema?.properties) };
    }
    default:
      return named(expectation(error, params));
  }
}

function expectation(error: ErrorObject, params: Record<string, unknown>): string {
  const got = ['string', 'number', 'boolean'].includes(typeof error.data) ? ` (got ${JSON.stringify(error.data)})` : '';
  switch (error.keyword) {
    case 'type':
      return `must be ${orList(String(params.type).split(',').map((t) => TYPES[t] ?? t))}`;
    case 'enum':
      return `must be one of: ${(params.allowedValues as unknown[]).map(String).join(', ')}${got}`;
    case 'const':
      return `must be ${JSON.stringify(params.allowedValue)}${got}`;
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return `must be ${String(params.comparison)} ${String(params.limit)}`;
    case 'minLength':
    case 'minItems':
    case 'minProperties':
      return params.limit === 1 ? 'must not be empty' : `must have at least ${String(params.limit)} ${UNITS[error.keyword]}`;
    case 'maxLength':
    case 'maxItems':
    case 'maxProperties':
      return `must have at most ${String(params.limit)} ${UNITS[error.keyword]}`;
    case 'uniqueItems':
      return `must not repeat an item (items ${String(params.j)} and ${String(params.i)} are equal)`;
    case 'pattern':
      return `must match ${String(params.pattern)}`;
    case 'format':
      return FORMATS[String(params.format)] ?? `must be a valid ${String(params.format)}`;
    case 'oneOf':
    case 'anyOf': {
      const names = requiredAlternatives(error.schema);
      if (names) return `must have ${error.keyword === 'oneOf' ? 'exactly' : 'at least'} one of: ${names.join(', ')}`;
      return error.message ?? 'is invalid';
    }
    default:
      return error.message ?? 'is invalid';
  }
}

const TYPES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  integer: 'a whole number',
  boolean: 'a boolean (true or false)',
  object: 'an object',
  array: 'an array',
  null: 'null',
};

const UNITS: Record<string, string> = {
  minLength: 'characters',
  maxLength: 'characters',
  minItems: 'items',
  maxItems: 'items',
  minProperties: 'properties',
  maxProperties: 'properties',
};

function orList(items: string[]): string {
  return items.length < 2 ? items.join('') : `${items.slice(0, -1).join(', ')} or ${items.at(-1)}`;
}

/** The property names of alternatives that each only require one property, like `[{required: [a]}, {required: [b]}]`. */
function requiredAlternatives(alternatives: unknown): string[] | undefined {
  if (!Array.isArray(alternatives)) return undefined;
  const names = alternatives.map((a) => (Object.keys(a).length === 1 && a.required?.length === 1 ? a.required[0] : undefined));
  return names.every((n) => typeof n === 'string') ? names : undefined;
}

function unknownProperty(property: string, known: Record<string, unknown> | undefined): string {
  const normalised = (name: string) => name.toLowerCase().replace(/[-_]/g, '');
  if (SECRET_LIKE.test(normalised(property)) && !property.endsWith('Env')) {
    const envProperty = known && `${property}Env` in known ? `"${property}Env"` : 'a property ending in Env';
    return `unknown property "${property}": secrets never go in data files; put it in an environment variable and give that variable's name in ${envProperty}`;
  }
  const suggestion = Object.keys(known ?? {}).find((name) => normalised(name) === normalised(property));
  return `unknown property "${property}"${suggestion ? `; did you mean "${suggestion}"?` : ''}`;
}

/** Checks that each name equals its file name and that no two files of a kind share a name. */
function nameProblems(parsed: Parsed[]): DataFileProblem[] {
  const problems: DataFileProblem[] = [];
  const byName = new Map<string, Parsed[]>();
  for (const entry of parsed) {
    const key = KINDS[entry.kind].nameKey;
    const name = property(entry.data, key);
    if (typeof name !== 'string') continue; // the schema has reported it
    const expected = basename(entry.file, '.json');
    if (name !== expected) problems.push({ file: entry.file, path: `/${key}`, message: `must equal the file name "${expected}" (got "${name}")` });
    const group = byName.get(`${entry.kind}/${name}`) ?? [];
    byName.set(`${entry.kind}/${name}`, [...group, entry]);
  }
  for (const group of byName.values()) {
    for (const entry of group.length > 1 ? group : []) {
      const others = group.filter((other) => other !== entry).map((other) => other.file);
      const key = KINDS[entry.kind].nameKey;
      problems.push({ file: entry.file, path: `/${key}`, message: `"${String(property(entry.data, key))}" is also the ${key} of ${others.join(', ')}` });
    }
  }
  return problems;
}

/** Checks references: a csv connector's mapping, a field's code table, and step ids within a policy. */
function referenceProblems(parsed: Parsed[]): DataFileProblem[] {
  const mappings = new Map(parsed.filter((p) => p.kind === 'mappings').map((p) => [property(p.data, 'name'), p.data]));
  return parsed.flatMap(({ kind, file, data }) => {
    const found =
      kind === 'connectors' ? csvMappingProblems(data, mappings) : kind === 'mappings' ? codeTableProblems(data) : kind === 'policies' ? stepIdProblems(data) : [];
    return found.map((p) => ({ file, ...p }));
  });
}

function csvMappingProblems(connector: unknown, mappings: Map<unknown, unknown>): Omit<DataFileProblem, 'file'>[] {
  const name = property(connector, 'mapping');
  if (property(connector, 'transport') !== 'csv' || typeof name !== 'string') return [];
  if (!mappings.has(name)) return [{ path: '/mapping', message: `names no mapping: there is no mappings/${name}.json` }];
  const transport = property(property(mappings.get(name), 'source'), 'transport');
  return typeof transport === 'string' && transport !== 'csv'
    ? [{ path: '/mapping', message: `names mapping "${name}", which reads ${transport} records, not csv` }]
    : [];
}

function codeTableProblems(mapping: unknown): Omit<DataFileProblem, 'file'>[] {
  const tables = property(mapping, 'codeTables');
  const fields = property(mapping, 'fields');
  const known = isObject(tables) ? Object.keys(tables) : [];
  return Object.entries(isObject(fields) ? fields : {}).flatMap(([field, spec]) => {
    const table = property(spec, 'codeTable');
    if (typeof table !== 'string' || known.includes(table)) return [];
    const has = known.length === 0 ? 'there are no codeTables' : `codeTables has ${known.join(', ')}`;
    return [{ path: `${child('/fields', field)}/codeTable`, message: `names no code table "${table}": ${has}` }];
  });
}

function stepIdProblems(policy: unknown): Omit<DataFileProblem, 'file'>[] {
  const steps = property(policy, 'steps');
  const ids = Array.isArray(steps) ? steps.map((step) => property(step, 'id')) : [];
  return ids.flatMap((id, index) => {
    const first = ids.indexOf(id);
    return typeof id === 'string' && first < index ? [{ path: `/steps/${index}/id`, message: `repeats the id of /steps/${first}` }] : [];
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function property(value: unknown, key: string): unknown {
  return isObject(value) ? value[key] : undefined;
}

/** Appends one reference token to a JSON pointer. */
function child(pointer: string, key: string): string {
  return `${pointer}/${key.replaceAll('~', '~0').replaceAll('/', '~1')}`;
}

function isTimeZone(value: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: value });
    return true;
  } catch {
    return false;
  }
}
