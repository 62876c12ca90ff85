/**
 * Twilio's official OpenAPI document (`../shared/vendor-specs/twilio_api_v2010.json`) as a request validator:
 * find the operation by method and path template, check the path parameters (AccountSid pattern…), then parse
 * the form body and validate it against the operation's `application/x-www-form-urlencoded` schema with ajv.
 *
 * Form encoding carries every value as a string; each is converted by the schema's type before validation,
 * strictly (`Attempt=2` becomes an integer, `Attempt=two` stays a string and fails). Repeated keys are arrays.
 * Unknown parameters are refused: Twilio ignores them, but a parameter it ignores is a bug in Settle. The
 * document's `x-twilio.conditional` rules (one of From/MessagingServiceSid, one of Body/MediaUrl/ContentSid)
 * are enforced too. `format: phone-number` is E.164 (or a `channel:` address).
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';

/** Where the spec is: `/work/shared/vendor-specs/` next to the repository, or TWILIO_SPEC_PATH. */
export const TWILIO_SPEC_PATH = process.env.TWILIO_SPEC_PATH ?? fileURLToPath(new URL('../../../../shared/vendor-specs/twilio_api_v2010.json', import.meta.url));

/** Why spec-checking tests skip, or undefined when the spec is present. */
export function twilioSpecMissing(): string | undefined {
  return existsSync(TWILIO_SPEC_PATH) ? undefined : `Twilio spec not found at ${TWILIO_SPEC_PATH} (../shared/vendor-specs is absent): Twilio contract tests skipped`;
}

type Schema = Record<string, unknown>;
interface Operation {
  parameters?: { name: string; in: string; required?: boolean; schema?: Schema }[];
  requestBody?: { content?: Record<string, { schema?: Schema }> };
  responses?: Record<string, { content?: Record<string, { schema?: Schema; examples?: Record<string, { value: unknown }> }> }>;
  'x-twilio'?: { conditional?: string[][] };
}
interface Spec {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Schema> };
}

let spec: Spec | undefined;
/** The parsed spec (read once). */
export function twilioSpec(): Spec {
  spec ??= JSON.parse(readFileSync(TWILIO_SPEC_PATH, 'utf8')) as Spec;
  return spec;
}

const ajv = new Ajv({ allErrors: true, strict: false });
addFormats.default(ajv);
ajv.addFormat('phone-number', /^(\+[1-9]\d{1,14}|[a-z]+:.+)$/);
ajv.addFormat('date-time-rfc-2822', true);
ajv.addFormat('uri-template', true);
let registered = false;
const validators = new Map<string, ValidateFunction>();

function resolve(schema: Schema | undefined): Schema {
  if (!schema) return {};
  const ref = schema.$ref as string | undefined;
  if (ref) return resolve(twilioSpec().components.schemas[ref.replace('#/components/schemas/', '')]);
  return schema;
}

function validator(key: string, schema: Schema): ValidateFunction {
  if (!registered) {
    ajv.addSchema({ $id: 'twilio', components: twilioSpec().components } as Schema);
    registered = true;
  }
  let v = validators.get(key);
  if (!v) {
    const text = JSON.stringify(schema).replaceAll('"#/components/', '"twilio#/components/');
    v = ajv.compile({ ...(JSON.parse(text) as Schema), additionalProperties: false });
    validators.set(key, v);
  }
  return v;
}

/** A matched operation. */
export interface TwilioOperation {
  key: string;
  template: string;
  pathParams: Record<string, string>;
  operation: Operation;
}

let routes: { template: string; regex: RegExp; names: string[]; ops: Record<string, Operation> }[] | undefined;

/** The operation for a method and path, or undefined (Twilio answers 404). */
export function matchTwilioOperation(method: string, path: string): TwilioOperation | undefined {
  routes ??= Object.entries(twilioSpec().paths).map(([template, ops]) => {
    const names: string[] = [];
    const pattern = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{([^}]+)\}/g, (_, n: string) => (names.push(n), '([^/]+)'));
    return { template, regex: new RegExp(`^${pattern}$`), names, ops };
  });
  const key = `${method} ${path}`;
  if (matched.has(key)) return matched.get(key);
  const found = findOperation(method, path);
  if (matched.size < 10_000) matched.set(key, found);
  return found;
}

const matched = new Map<string, TwilioOperation | undefined>();

function findOperation(method: string, path: string): TwilioOperation | undefined {
  for (const { template, regex, names, ops } of routes!) {
    const match = regex.exec(path);
    const operation = ops[method.toLowerCase()];
    if (!match || !operation) continue;
    return { key: `${method.toUpperCase()} ${template}`, template, operation, pathParams: Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(match[i + 1]!)])) };
  }
  return undefined;
}

/** One problem found in a request, named by parameter. */
export interface TwilioParamProblem {
  param: string;
  message: string;
}

function convert(value: string, schema: Schema): unknown {
  const type = resolve(schema).type;
  if (type === 'integer') return /^-?\d+$/.test(value) ? Number(value) : value;
  if (type === 'number') return /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value;
  if (type === 'boolean') return value === 'true' ? true : value === 'false' ? false : value;
  return value;
}

/**
 * Validates a form body (and the path parameters) against an operation.
 * @returns the converted parameters and the problems (empty when valid).
 */
export function validateTwilioRequest(op: TwilioOperation, form: URLSearchParams): { params: Record<string, unknown>; problems: TwilioParamProblem[] } {
  const problems: TwilioParamProblem[] = [];
  for (const p of op.operation.parameters ?? []) {
    if (p.in !== 'path') continue;
    const value = op.pathParams[p.name];
    const pv = validator(`${op.key} path ${p.name}`, p.schema ?? {});
    if (value === undefined || !pv(value)) problems.push({ param: p.name, message: `path parameter ${p.name} is invalid: ${ajv.errorsText(pv.errors)}` });
  }
  const schema = op.operation.requestBody?.content?.['application/x-www-form-urlencoded']?.schema ?? { type: 'object', properties: {} };
  const properties = (schema.properties ?? {}) as Record<string, Schema>;
  const params: Record<string, unknown> = {};
  for (const key of new Set(form.keys())) {
    const values = form.getAll(key);
    const prop = properties[key];
    if (!prop) {
      problems.push({ param: key, message: `${key} is not a parameter of ${op.key}` });
      continue;
    }
    params[key] = resolve(prop).type === 'array' ? values.map((v) => convert(v, (resolve(prop).items ?? {}) as Schema)) : values.length === 1 ? convert(values[0]!, prop) : values;
  }
  const known = Object.fromEntries(Object.entries(params).filter(([k]) => properties[k]));
  const validate = validator(`${op.key} body`, schema);
  if (!validate(known)) {
    for (const e of validate.errors ?? []) {
      const param = e.instancePath.replace(/^\//, '').split('/')[0] || String(e.params.missingProperty ?? '');
      problems.push({ param, message: `${param} ${e.message ?? 'is invalid'}` });
    }
  }
  // x-twilio conditional: at least one of each group (names are snake_case there, PascalCase on the wire).
  const pascal = (snake: string) => snake.split('_').map((w) => w[0]!.toUpperCase() + w.slice(1)).join('');
  for (const group of op.operation['x-twilio']?.conditional ?? []) {
    const names = group.map(pascal);
    if (!names.some((n) => params[n] !== undefined && params[n] !== '')) problems.push({ param: names[0]!, message: `one of ${names.join(', ')} is required` });
  }
  return { params, problems };
}

/** The schema of an operation's JSON answer for a status, resolved, with a validator. */
export function twilioResponseValidator(op: TwilioOperation, status: number): ValidateFunction | undefined {
  const schema = op.operation.responses?.[String(status)]?.content?.['application/json']?.schema;
  if (!schema) return undefined;
  const key = `${op.key} response ${status}`;
  let v = validators.get(key);
  if (!v) {
    validator('warm', {});
    const text = JSON.stringify(schema).replaceAll('"#/components/', '"twilio#/components/');
    v = ajv.compile(JSON.parse(text) as Schema);
    validators.set(key, v);
  }
  return v;
}

/** The spec's example answer of an operation (the first), as a base for fake answers. */
export function twilioExample(op: TwilioOperation, status: number): Record<string, unknown> {
  const examples = op.operation.responses?.[String(status)]?.content?.['application/json']?.examples ?? {};
  const first = Object.values(examples)[0];
  return structuredClone((first?.value ?? {}) as Record<string, unknown>);
}
