/**
 * Routes are declared once, as data with a handler: method, path, who may call it, the JSON Schemas of
 * its query and body, and its responses. The same declaration mounts the express route (with key check,
 * role check and ajv validation) and writes the route into the OpenAPI document, so the two cannot drift.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { Request, Response, Router } from 'express';
import { roleAllows, type Principal, type Role } from '../domain/access.ts';
import { ApiError, type FieldProblem } from './problem.ts';

/** A JSON Schema, as the OpenAPI document shows it. */
export type JsonSchema = Record<string, unknown>;

/** Who may call a route: anyone (health, pay page, signed webhooks) or keys with one of these roles. */
export type RouteAccess = 'public' | readonly Role[];

/** What a handler receives. */
export interface RouteContext<Body = unknown, Query = Record<string, unknown>> {
  req: Request;
  res: Response;
  /** The caller; undefined only on public routes. */
  principal: Principal | undefined;
  /** Path parameters. */
  params: Record<string, string>;
  /** Validated (and type-coerced) query. */
  query: Query;
  /** Validated body. */
  body: Body;
}

/** One API route. */
export interface RouteSpec<Body = never, Query = never> {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** OpenAPI-style path: `/apikeys/{id}`. */
  path: string;
  summary: string;
  tag: string;
  access: RouteAccess;
  query?: JsonSchema;
  body?: JsonSchema;
  /** Status → description and schema of the response (JSON unless `contentType` says otherwise). */
  responses: Record<number, { description: string; schema?: JsonSchema; contentType?: string }>;
  /**
   * Answers the request. Returning a value sends it as JSON with the first 2xx status declared;
   * returning undefined means the handler wrote the response itself.
   */
  handler(context: RouteContext<Body, Query>): Promise<unknown> | unknown;
}

/** A route of any body and query type. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyRoute = RouteSpec<any, any>;

/** Authenticates the key a request presents (`Authorization: Bearer …` or `X-API-Key`). */
export type Authenticate = (presented: string) => Promise<Principal | undefined>;

const ajv = new Ajv({ allErrors: true, coerceTypes: false, useDefaults: true, strict: false });
addFormats.default(ajv);
const queryAjv = new Ajv({ allErrors: true, coerceTypes: true, useDefaults: true, strict: false });
addFormats.default(queryAjv);

function toProblems(errors: ErrorObject[] | null | undefined, where: 'body' | 'query'): FieldProblem[] {
  return (errors ?? []).map((error) => {
    let path = error.instancePath;
    if (error.keyword === 'required') path += `/${String(error.params.missingProperty)}`;
    if (error.keyword === 'additionalProperties') path += `/${String(error.params.additionalProperty)}`;
    const message =
      error.keyword === 'additionalProperties'
        ? 'is not a known property'
        : error.keyword === 'required'
          ? 'is required'
          : error.keyword === 'enum'
            ? `must be one of ${(error.params.allowedValues as unknown[]).join(', ')}`
            : (error.message ?? 'is invalid');
    return { path: where === 'query' ? `?${path.replace(/^\//, '')}` : path || '/', message };
  });
}

function presentedKey(req: Request): string | undefined {
  const header = req.get('authorization');
  if (header?.toLowerCase().startsWith('bearer ')) return header.slice(7).trim();
  return req.get('x-api-key') ?? undefined;
}

/** Express path (`/apikeys/:id`) of an OpenAPI path (`/apikeys/{id}`). */
export function expressPath(path: string): string {
  return path.replace(/\{([A-Za-z0-9_]+)\}/g, ':$1');
}

/** Mounts routes on a router: key check, role check, validation, then the handler. */
export function mountRoutes(router: Router, routes: readonly AnyRoute[], authenticate: Authenticate): void {
  for (const route of routes) {
    const validateBody: ValidateFunction | undefined = route.body ? ajv.compile(route.body) : undefined;
    const validateQuery: ValidateFunction | undefined = route.query ? queryAjv.compile(route.query) : undefined;
    const okStatus = Number(Object.keys(route.responses).find((s) => s.startsWith('2')) ?? 200);
    router[route.method](expressPath(route.path), async (req: Request, res: Response) => {
      let principal: Principal | undefined;
      if (route.access !== 'public') {
        const key = presentedKey(req);
        principal = key ? await authenticate(key) : undefined;
        if (!principal) throw new ApiError(401, 'unauthorized', 'An API key is required: send it as "Authorization: Bearer <key>".');
        if (!roleAllows(principal.role, route.access)) {
          throw new ApiError(403, 'forbidden', `This needs the ${route.access.join(' or ')} role; the key has ${principal.role}.`);
        }
      }
      const query = { ...(req.query as Record<string, unknown>) };
      if (validateQuery && !validateQuery(query)) {
        throw new ApiError(400, 'invalid_request', 'The query is invalid.', toProblems(validateQuery.errors, 'query'));
      }
      let body: unknown = req.body;
      if (validateBody) {
        if (!req.is('application/json')) throw new ApiError(415, 'unsupported_media_type', 'Send the body as application/json.');
        if (!validateBody(body)) throw new ApiError(400, 'invalid_request', 'The request body is invalid.', toProblems(validateBody.errors, 'body'));
      } else {
        body = undefined;
      }
      const result = await route.handler({ req, res, principal, params: req.params as Record<string, string>, query, body });
      if (result !== undefined && !res.headersSent) res.status(okStatus).json(result);
    });
  }
}

const PROBLEM_SCHEMA: JsonSchema = {
  type: 'object',
  required: ['type', 'title', 'status', 'code', 'detail'],
  properties: {
    type: { type: 'string' },
    title: { type: 'string' },
    status: { type: 'integer' },
    code: { type: 'string', description: 'Stable machine-readable error code.' },
    detail: { type: 'string' },
    errors: {
      type: 'array',
      items: { type: 'object', required: ['path', 'message'], properties: { path: { type: 'string' }, message: { type: 'string' } } },
    },
  },
};

/** The OpenAPI 3.1 document of a set of routes. */
export function openApiDocument(routes: readonly AnyRoute[], info: { title: string; version: string; serverUrl?: string }): JsonSchema {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const parameters: unknown[] = [];
    for (const match of route.path.matchAll(/\{([A-Za-z0-9_]+)\}/g)) {
      parameters.push({ name: match[1], in: 'path', required: true, schema: { type: 'string' } });
    }
    const queryProps = (route.query?.properties ?? {}) as Record<string, JsonSchema>;
    const queryRequired = new Set((route.query?.required as string[] | undefined) ?? []);
    for (const [name, schema] of Object.entries(queryProps)) {
      parameters.push({ name, in: 'query', required: queryRequired.has(name), schema, description: schema.description });
    }
    const responses: Record<string, unknown> = {};
    for (const [status, response] of Object.entries(route.responses)) {
      responses[status] = {
        description: response.description,
        ...(response.schema ? { content: { [response.contentType ?? 'application/json']: { schema: response.schema } } } : {}),
      };
    }
    const problem = { content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } } };
    if (route.body || route.query) responses['400'] ??= { description: 'The request is invalid; `errors` lists each problem.', ...problem };
    if (route.access !== 'public') {
      responses['401'] ??= { description: 'No valid API key.', ...problem };
      responses['403'] ??= { description: `The key's role is not one of: ${route.access.join(', ')} (admin always may).`, ...problem };
    }
    (paths[route.path] ??= {})[route.method] = {
      summary: route.summary,
      tags: [route.tag],
      operationId: `${route.method}${route.path.replace(/[{}]/g, '').replace(/[/.-](\w)/g, (_, c: string) => c.toUpperCase())}`,
      ...(route.access === 'public' ? { security: [] } : { 'x-settle-roles': route.access }),
      ...(parameters.length ? { parameters } : {}),
      ...(route.body ? { requestBody: { required: true, content: { 'application/json': { schema: route.body } } } } : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: info.title, version: info.version },
    ...(info.serverUrl ? { servers: [{ url: info.serverUrl }] } : {}),
    security: [{ apiKey: [] }],
    components: {
      securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'A Settle API key (`settle apikey create`).' } },
      schemas: { Problem: PROBLEM_SCHEMA },
    },
    paths,
  };
}
