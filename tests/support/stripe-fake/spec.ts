/**
 * Stripe's official OpenAPI document (`../shared/vendor-specs/stripe-spec3-2023-09-12.json`) as a request
 * validator: find the operation by method and path template, then validate the form-encoded body (parsed with
 * `qs`) or the query string against that operation's schema, compiled lazily with ajv (40–600 ms each, so only
 * the operations a test actually calls are compiled, once per process).
 *
 * Form encoding carries every scalar as a string, so strings are coerced by the schema before validation, as
 * strictly as Stripe does: `amount=1000` becomes an integer, `confirm=true` a boolean, while `amount=ten` and
 * `amount=25.00` stay strings and fail as integers (ajv's own `coerceTypes` would accept `"25.00"`).
 *
 * The document closes only the top level of each request (`additionalProperties: false`); nested objects say
 * nothing, yet Stripe's API refuses unknown nested parameters too (`line_items[0][price_data][foo]`). The fake
 * therefore treats every object schema that lists `properties` and says nothing about `additionalProperties`
 * as closed; maps such as `metadata` (an `additionalProperties` schema) stay open.
 *
 * Parameters Stripe added after this 2023 document are absent from it and would be rejected as unknown. A
 * parameter may be let through only by listing it in `NEWER_PARAMS` below (operation → top-level names), with
 * the reason; listed parameters are removed before validation and reported as `unvalidated`, so a test can
 * still see them. The list is empty on purpose: nothing Settle sends needs it today.
 *
 * The reverse drift also exists: parameters in this 2023 document that the API version the SDK pins
 * (`Stripe-Version`, 2026-10-28 for stripe-node 23.1) no longer accepts. `REMOVED_PARAMS` lists those that
 * matter to Settle, and the fake refuses them as Stripe would. `tsc` checks Settle's builders against the
 * SDK's types (the current version) and this fake checks them against the published document, so a request
 * that passes both is valid in both.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';

/** Default location of the spec, relative to the repository: `/work/shared/vendor-specs/`. */
export const STRIPE_SPEC_PATH = process.env.STRIPE_SPEC_PATH ?? fileURLToPath(new URL('../../../../shared/vendor-specs/stripe-spec3-2023-09-12.json', import.meta.url));
export const STRIPE_FIXTURES_PATH =
  process.env.STRIPE_FIXTURES_PATH ?? fileURLToPath(new URL('../../../../shared/vendor-specs/stripe-fixtures3-2023-09-12.json', import.meta.url));

/** Why tests that use the Stripe fake skip, or undefined when the spec is present. */
export function stripeSpecMissing(): string | undefined {
  return existsSync(STRIPE_SPEC_PATH) ? undefined : `Stripe spec not found at ${STRIPE_SPEC_PATH} (../shared/vendor-specs is absent): Stripe contract tests skipped`;
}

/**
 * Parameters newer than the 2023 spec that the fake lets through unvalidated, by `"METHOD /path/template"`.
 * Add an entry only with the Stripe changelog entry that introduced the parameter.
 */
export const NEWER_PARAMS: Readonly<Record<string, readonly string[]>> = {};

/**
 * Parameters in the 2023 document that the API version a request names (`Stripe-Version`) no longer accepts:
 * `{ since, params }` by operation. Such a request is refused as Stripe would (`parameter_unknown`) when its
 * version is at or after `since`. Source: stripe-node 23.0.0 (2026-09-30) CHANGELOG, "⚠️ Remove support for
 * `payment_method_types` on `Checkout.SessionCreateParams`, …, `PaymentIntentCreateParams`" (replaced by
 * `allowed_payment_method_types`, which the 2023 document does not have).
 */
export const REMOVED_PARAMS: Readonly<Record<string, { readonly since: string; readonly params: readonly string[] }>> = {
  'POST /v1/checkout/sessions': { since: '2026-09-30', params: ['payment_method_types'] },
  'POST /v1/payment_intents': { since: '2026-09-30', params: ['payment_method_types'] },
  'POST /v1/payment_intents/{intent}': { since: '2026-09-30', params: ['payment_method_types'] },
  'POST /v1/payment_intents/{intent}/confirm': { since: '2026-09-30', params: ['payment_method_types'] },
};

type Schema = Record<string, unknown>;

interface Parameter {
  name: string;
  in: string;
  required?: boolean;
  schema?: Schema;
}

interface Operation {
  operationId?: string;
  parameters?: Parameter[];
  requestBody?: { content?: Record<string, { schema?: Schema }>; required?: boolean };
}

interface Spec {
  paths: Record<string, Record<string, Operation>>;
}

/** A matched operation. */
export interface MatchedOperation {
  readonly key: string; // "POST /v1/checkout/sessions/{session}"
  readonly operationId: string;
  readonly template: string;
  readonly method: string;
  readonly pathParams: Readonly<Record<string, string>>;
}

interface Route {
  template: string;
  regex: RegExp;
  names: string[];
  literalLength: number;
}

let spec: Spec | undefined;
let routes: Route[] | undefined;
const validators = new Map<string, ValidateFunction>();
let ajv: Ajv | undefined;

function loadSpec(): Spec {
  spec ??= JSON.parse(readFileSync(STRIPE_SPEC_PATH, 'utf8')) as Spec;
  return spec;
}

function loadRoutes(): Route[] {
  if (routes) return routes;
  routes = Object.keys(loadSpec().paths).map((template) => {
    const names: string[] = [];
    const pattern = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{([^}]+)\}/g, (_, name: string) => {
      names.push(name);
      return '([^/]+)';
    });
    return { template, regex: new RegExp(`^${pattern}$`), names, literalLength: template.replace(/\{[^}]+\}/g, '').length };
  });
  // Literal segments win over templates: /v1/payment_intents/search before /v1/payment_intents/{intent}.
  routes.sort((a, b) => a.names.length - b.names.length || b.literalLength - a.literalLength);
  return routes;
}

/** Finds the spec operation for a method and path, or `undefined` (Stripe answers such requests with 404). */
export function matchOperation(method: string, path: string): MatchedOperation | undefined {
  const lower = method.toLowerCase();
  for (const route of loadRoutes()) {
    const match = route.regex.exec(path);
    if (!match) continue;
    const operation = loadSpec().paths[route.template]![lower];
    if (!operation) continue;
    const pathParams: Record<string, string> = {};
    route.names.forEach((name, i) => (pathParams[name] = decodeURIComponent(match[i + 1]!)));
    return { key: `${method.toUpperCase()} ${route.template}`, operationId: operation.operationId ?? route.template, template: route.template, method: method.toUpperCase(), pathParams };
  }
  return undefined;
}

function getAjv(): Ajv {
  if (ajv) return ajv;
  ajv = new Ajv({ strict: false, allErrors: true, validateFormats: true, verbose: true });
  ajv.addFormat('unix-time', { type: 'number', validate: (n: number) => Number.isInteger(n) });
  ajv.addFormat('decimal', { type: 'string', validate: /^-?\d+(\.\d+)?$/ });
  ajv.addFormat('binary', true);
  return ajv;
}

/** The schema of the parameters an operation takes as one object (form body for POST/DELETE, query for GET). */
function operationSchema(match: MatchedOperation): Schema {
  const operation = loadSpec().paths[match.template]![match.method.toLowerCase()]!;
  const form = operation.requestBody?.content?.['application/x-www-form-urlencoded']?.schema;
  if (match.method !== 'GET' && form) return form;
  const query = (operation.parameters ?? []).filter((p) => p.in === 'query');
  return {
    type: 'object',
    properties: Object.fromEntries(query.map((p) => [p.name, p.schema ?? {}])),
    required: query.filter((p) => p.required).map((p) => p.name),
    additionalProperties: false,
  };
}

/** A deep copy of the schema with every object that lists `properties` closed (see the module comment). */
export function closeObjects(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(closeObjects);
  if (!schema || typeof schema !== 'object') return schema;
  const out: Schema = {};
  for (const [key, value] of Object.entries(schema as Schema)) {
    // `properties` maps names to schemas; `enum` values are data, left alone.
    if (key === 'properties' && value && typeof value === 'object') {
      out[key] = Object.fromEntries(Object.entries(value as Schema).map(([name, sub]) => [name, closeObjects(sub)]));
    } else if (key === 'enum' || key === 'default' || key === 'example') out[key] = value;
    else out[key] = closeObjects(value);
  }
  if (out.properties && out.additionalProperties === undefined) out.additionalProperties = false;
  return out;
}

const INTEGER = /^-?\d+$/;
const NUMBER = /^-?\d+(\.\d+)?$/;

function branches(schema: Schema): Schema[] {
  const union = (schema.anyOf ?? schema.oneOf) as Schema[] | undefined;
  return union ? union.flatMap(branches) : [schema];
}

/**
 * Converts form-encoded strings to the types the schema asks for, strictly: integers from `-?digits` only,
 * numbers from decimals, booleans from `true`/`false`. Anything else is left as it is for ajv to report.
 */
export function coerceForm(value: unknown, schema: Schema | undefined): unknown {
  if (!schema) return value;
  const options = branches(schema);
  if (typeof value === 'string') {
    // A string the schema accepts as a string stays one (`""` for "unset", free text, enum members).
    const acceptsString = options.some(
      (o) => (o.type === 'string' || (o.type === undefined && !o.properties && !o.items)) && (!o.enum || (o.enum as unknown[]).includes(value)),
    );
    if (acceptsString) return value;
    for (const o of options) {
      if (o.type === 'integer' && INTEGER.test(value)) return Number(value);
      if (o.type === 'number' && NUMBER.test(value)) return Number(value);
      if (o.type === 'boolean' && (value === 'true' || value === 'false')) return value === 'true';
    }
    return value;
  }
  if (Array.isArray(value)) {
    const arrayOption = options.find((o) => o.type === 'array');
    return arrayOption ? value.map((item) => coerceForm(item, arrayOption.items as Schema | undefined)) : value;
  }
  if (value && typeof value === 'object') {
    const objectOption = options.find((o) => o.type === 'object' || o.properties);
    if (!objectOption) return value;
    const properties = (objectOption.properties ?? {}) as Record<string, Schema>;
    const extra = typeof objectOption.additionalProperties === 'object' ? (objectOption.additionalProperties as Schema) : undefined;
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, coerceForm(v, properties[k] ?? extra)]));
  }
  return value;
}

const schemas = new Map<string, Schema>();

function validatorFor(match: MatchedOperation): ValidateFunction {
  let validate = validators.get(match.key);
  if (!validate) {
    const schema = closeObjects(operationSchema(match)) as Schema;
    schemas.set(match.key, schema);
    validate = getAjv().compile(schema);
    validators.set(match.key, validate);
  }
  return validate;
}

/** A Stripe-shaped validation failure. */
export interface StripeParamError {
  readonly type: 'invalid_request_error';
  readonly code: string;
  readonly message: string;
  readonly param?: string;
}

/** `/line_items/0/price_data/currency` → `line_items[0][price_data][currency]`. */
export function paramName(instancePath: string, extra?: string): string {
  const parts = instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extra !== undefined) parts.push(extra);
  return parts.map((p, i) => (i === 0 ? p : `[${p}]`)).join('');
}

function describe(error: ErrorObject): StripeParamError {
  const base = { type: 'invalid_request_error' as const };
  switch (error.keyword) {
    case 'additionalProperties': {
      const param = paramName(error.instancePath, String(error.params.additionalProperty));
      return { ...base, code: 'parameter_unknown', param, message: `Received unknown parameter: ${param}` };
    }
    case 'required': {
      const param = paramName(error.instancePath, String(error.params.missingProperty));
      return { ...base, code: 'parameter_missing', param, message: `Missing required param: ${param}.` };
    }
    case 'type': {
      const param = paramName(error.instancePath);
      const type = String(error.params.type);
      const code = type === 'integer' ? 'parameter_invalid_integer' : type === 'boolean' ? 'parameter_invalid_boolean' : type === 'object' ? 'parameter_invalid_object' : type === 'array' ? 'parameter_invalid_array' : 'parameter_invalid_string';
      const value = typeof error.data === 'object' ? JSON.stringify(error.data) : String(error.data);
      return { ...base, code, param, message: `Invalid ${type}: ${value} (param ${param})` };
    }
    case 'enum': {
      const param = paramName(error.instancePath);
      const allowed = (error.params.allowedValues as unknown[]).map(String).join(', ');
      return { ...base, code: 'parameter_invalid_string', param, message: `Invalid ${param}: must be one of ${allowed}` };
    }
    default: {
      const param = paramName(error.instancePath);
      return { ...base, code: 'parameter_invalid', param, message: `Invalid ${param || 'request'}: ${error.message ?? error.keyword}` };
    }
  }
}

/** Picks the error Stripe would most plausibly report: unknown parameters first, then the deepest one. */
function mostSpecific(errors: readonly ErrorObject[]): ErrorObject {
  const rank = (e: ErrorObject) => (e.keyword === 'additionalProperties' ? 3 : e.keyword === 'required' ? 2 : e.keyword === 'anyOf' || e.keyword === 'oneOf' ? 0 : 1);
  return [...errors].sort((a, b) => rank(b) - rank(a) || b.instancePath.length - a.instancePath.length)[0]!;
}

/** Stripe's metadata limits, which the spec does not express: 50 keys, keys ≤ 40 characters, values ≤ 500. */
function checkMetadata(params: Record<string, unknown>, path = ''): StripeParamError | undefined {
  for (const [key, value] of Object.entries(params)) {
    const name = path === '' ? key : `${path}[${key}]`;
    if (key === 'metadata' && value && typeof value === 'object') {
      const entries = Object.entries(value as Record<string, unknown>);
      if (entries.length > 50) return { type: 'invalid_request_error', code: 'parameter_invalid', param: name, message: 'Invalid metadata: must have at most 50 keys' };
      for (const [k, v] of entries) {
        if (k.length > 40) return { type: 'invalid_request_error', code: 'parameter_invalid', param: `${name}[${k}]`, message: 'Metadata keys must be at most 40 characters' };
        if (typeof v === 'string' && v.length > 500) return { type: 'invalid_request_error', code: 'parameter_invalid', param: `${name}[${k}]`, message: 'Metadata values must be at most 500 characters' };
      }
    } else if (value && typeof value === 'object') {
      const nested = checkMetadata(value as Record<string, unknown>, name);
      if (nested) return nested;
    }
  }
  return undefined;
}

export interface ValidationResult {
  readonly ok: boolean;
  /** The parameters after coercion (integers and booleans as such). */
  readonly params: Record<string, unknown>;
  readonly error?: StripeParamError;
  /** Every ajv error, for test diagnostics. */
  readonly details: readonly ErrorObject[];
  /** Parameters let through by `NEWER_PARAMS`, not validated. */
  readonly unvalidated: Readonly<Record<string, unknown>>;
}

/** Validates parsed parameters against the operation's schema; `params` is copied, never mutated. */
export function validateParams(
  match: MatchedOperation,
  parsed: Record<string, unknown>,
  newer: Readonly<Record<string, readonly string[]>> = NEWER_PARAMS,
  stripeVersion?: string,
): ValidationResult {
  const params = structuredClone(parsed);
  const unvalidated: Record<string, unknown> = {};
  const removed = REMOVED_PARAMS[match.key];
  if (removed && stripeVersion !== undefined && stripeVersion.slice(0, 10) >= removed.since) {
    const param = removed.params.find((name) => name in params);
    if (param) {
      return {
        ok: false, params, details: [], unvalidated,
        error: { type: 'invalid_request_error', code: 'parameter_unknown', param, message: `Received unknown parameter: ${param}` },
      };
    }
  }
  for (const name of newer[match.key] ?? []) {
    if (name in params) {
      unvalidated[name] = params[name];
      delete params[name];
    }
  }
  const validate = validatorFor(match);
  const coerced = coerceForm(params, schemas.get(match.key)) as Record<string, unknown>;
  for (const key of Object.keys(params)) delete params[key];
  Object.assign(params, coerced);
  if (!validate(params)) {
    const details = validate.errors ?? [];
    return { ok: false, params, error: describe(mostSpecific(details)), details, unvalidated };
  }
  const metadataError = checkMetadata(params);
  if (metadataError) return { ok: false, params, error: metadataError, details: [], unvalidated };
  return { ok: true, params, details: [], unvalidated };
}

/** Stripe's example objects (`fixtures3.json`), by object name (`checkout.session`, `payment_intent`, …). */
let fixtures: Record<string, Record<string, unknown>> | undefined;
export function stripeFixture(name: string): Record<string, unknown> {
  fixtures ??= (JSON.parse(readFileSync(STRIPE_FIXTURES_PATH, 'utf8')) as { resources: Record<string, Record<string, unknown>> }).resources;
  const fixture = fixtures[name];
  if (!fixture) throw new Error(`no Stripe fixture named ${name}`);
  return structuredClone(fixture);
}
