/**
 * A small fetch-based FHIR R4 read client.
 *
 * - `searchPages` follows `next` links exactly as the server gives them (absolute URLs, HAPI `?_getpages=` links,
 *   opaque cursors); it never rebuilds a page URL itself. A relative link is resolved against the base URL.
 *   A link to another origin is refused (the bearer token is only sent to the configured server), and so is a
 *   link that repeats (a server bug that would otherwise loop forever).
 * - 429/503 (and 408/500/502/504, and network errors) are retried up to `maxAttempts`, waiting what
 *   `Retry-After` says when present and otherwise exponential backoff with full jitter.
 * - A 401 invalidates the token and retries the read once with a fresh one.
 * - Failures are `FhirError`s carrying an OperationOutcome and the URL with query values redacted.
 * - Writes (`create`, `update`, `conditionalUpdate`) are retried after a 429 (the server refused the request) and
 *   a 401 (re-authenticated once); after a failure that leaves the outcome unknown (no response, a timeout,
 *   500/502/503/504) they are retried only when conditional — a create with `If-None-Exist`, an update by id or by
 *   search criteria — and otherwise fail with `FhirWriteUnknownError`, so a payment is never posted twice.
 */
import type { Bundle, OperationOutcome, Resource } from '@medplum/fhirtypes';
import { systemClock, type Clock } from '../../domain/clock.ts';
import { FhirError, FhirWriteUnknownError, issueCodeForStatus, outcomeOf } from './errors.ts';
import type { TokenProvider } from './smart-auth.ts';

export interface FhirClientOptions {
  /** FHIR base URL, e.g. `https://ehr.example.org/fhir/R4` (a trailing slash is fine). */
  baseUrl: string;
  auth?: TokenProvider;
  fetch?: typeof fetch;
  clock?: Clock;
  /** Waits `ms`; injected in tests. Default: a timer. */
  sleep?: (ms: number) => Promise<void>;
  /** Uniform [0, 1); injected in tests. Default Math.random. */
  random?: () => number;
  /** Attempts per request including the first; default 5. */
  maxAttempts?: number;
  /** First backoff step; default 500 ms. */
  baseDelayMs?: number;
  /** Cap of one backoff wait; default 30 s. */
  maxDelayMs?: number;
  /** Cap of a Retry-After wait (a server asking for more fails the request); default 5 min. */
  maxRetryAfterMs?: number;
  /** Per-request timeout; default 60 s. */
  timeoutMs?: number;
}

/** What a write did. */
export interface WriteResult<T extends Resource> {
  status: number;
  /** 201: created; 200: updated, or (conditional create) an existing match was found and nothing was created. */
  created: boolean;
  /** The resource as the server returned it, when it did. */
  resource?: T;
  outcome?: OperationOutcome;
  /** `Location` header: `[base]/[type]/[id]/_history/[vid]`. */
  location?: string;
  versionId?: string;
}

export type SearchParams = URLSearchParams | Record<string, string | number | readonly (string | number)[] | undefined>;

const RETRYABLE = new Set([408, 429, 500, 502, 503, 504]);

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Parses `Retry-After` (delta-seconds or HTTP-date) into milliseconds from `now`; undefined when absent/invalid. */
export function parseRetryAfter(value: string | null, now: Date): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now.getTime());
}

export class FhirClient {
  readonly baseUrl: string;
  private readonly origin: string;
  private readonly auth: TokenProvider | undefined;
  private readonly fetchFn: typeof fetch;
  private readonly clock: Clock;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;
  private readonly maxAttempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly maxRetryAfterMs: number;
  /** Per-request timeout (ms). */
  readonly timeoutMs: number;

  constructor(options: FhirClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.origin = new URL(this.baseUrl).origin;
    this.auth = options.auth;
    this.fetchFn = options.fetch ?? fetch;
    this.clock = options.clock ?? systemClock;
    this.sleep = options.sleep ?? defaultSleep;
    this.random = options.random ?? Math.random;
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 5);
    this.baseDelayMs = options.baseDelayMs ?? 500;
    this.maxDelayMs = options.maxDelayMs ?? 30_000;
    this.maxRetryAfterMs = options.maxRetryAfterMs ?? 300_000;
    this.timeoutMs = options.timeoutMs ?? 60_000;
  }

  /** Reads one resource. */
  async read<T extends Resource = Resource>(resourceType: T['resourceType'], id: string): Promise<T> {
    return this.get<T>(`${this.baseUrl}/${resourceType}/${encodeURIComponent(id)}`);
  }

  /** The server's CapabilityStatement. */
  async capabilities(): Promise<Resource> {
    return this.get(`${this.baseUrl}/metadata`);
  }

  /** Searches `resourceType` and yields each page's Bundle, following `next` links exactly as given. */
  async *searchPages(resourceType: string, params: SearchParams = {}): AsyncGenerator<Bundle> {
    const query = toQuery(params);
    let url: string | undefined = `${this.baseUrl}/${resourceType}${query ? `?${query}` : ''}`;
    const seen = new Set<string>();
    while (url) {
      seen.add(url);
      const bundle: Bundle = await this.get<Bundle>(url);
      if (bundle.resourceType !== 'Bundle') throw new FhirError(200, outcomeOf('structure', `expected a Bundle, got ${String(bundle.resourceType)}`), url);
      yield bundle;
      const next: string | undefined = bundle.link?.find((l) => l.relation === 'next')?.url;
      if (!next) return;
      url = this.resolveLink(next, url);
      if (seen.has(url)) throw new FhirError(200, outcomeOf('processing', 'the server returned a next link already followed'), url);
    }
  }

  /** Searches and yields each matched resource (entries with search.mode `include`/`outcome` are skipped). */
  async *searchResources<T extends Resource = Resource>(resourceType: T['resourceType'], params: SearchParams = {}): AsyncGenerator<T> {
    for await (const bundle of this.searchPages(resourceType, params)) {
      for (const entry of bundle.entry ?? []) {
        if (entry.resource && (entry.search?.mode ?? 'match') === 'match') yield entry.resource as T;
      }
    }
  }

  /**
   * Creates a resource (POST). With `ifNoneExist` (search criteria, like `identifier=sys|value`) the create is
   * conditional: the server creates it only when nothing matches, so it is safe to retry.
   * @throws FhirWriteUnknownError when an unconditional create may or may not have happened.
   */
  async create<T extends Resource>(resource: T, options: { ifNoneExist?: SearchParams } = {}): Promise<WriteResult<T>> {
    const headers: Record<string, string> = {};
    const criteria = options.ifNoneExist === undefined ? '' : toQuery(options.ifNoneExist);
    if (criteria) headers['if-none-exist'] = criteria;
    return this.write<T>('POST', `${this.baseUrl}/${resource.resourceType}`, resource, headers, criteria !== '');
  }

  /**
   * Updates a resource by id (PUT, idempotent). With `ifMatch` (a versionId) the server refuses the update when the
   * resource changed since (412).
   */
  async update<T extends Resource>(resource: T, options: { ifMatch?: string } = {}): Promise<WriteResult<T>> {
    if (!resource.id) throw new FhirError(0, outcomeOf('required', 'an update needs the resource id'), `${this.baseUrl}/${resource.resourceType}`);
    const headers: Record<string, string> = {};
    if (options.ifMatch !== undefined) headers['if-match'] = `W/"${options.ifMatch}"`;
    return this.write<T>('PUT', `${this.baseUrl}/${resource.resourceType}/${encodeURIComponent(resource.id)}`, resource, headers, true);
  }

  /** Conditional update (PUT `[type]?criteria`): updates the one match, or creates the resource when none matches. */
  async conditionalUpdate<T extends Resource>(resource: T, criteria: SearchParams): Promise<WriteResult<T>> {
    const query = toQuery(criteria);
    if (!query) throw new FhirError(0, outcomeOf('required', 'a conditional update needs search criteria'), `${this.baseUrl}/${resource.resourceType}`);
    return this.write<T>('PUT', `${this.baseUrl}/${resource.resourceType}?${query}`, resource, {}, true);
  }

  private async write<T extends Resource>(method: 'POST' | 'PUT', url: string, resource: T, extra: Record<string, string>, retrySafe: boolean): Promise<WriteResult<T>> {
    const body = JSON.stringify(resource);
    let reauthenticated = false;
    for (let attempt = 1; ; attempt++) {
      const headers: Record<string, string> = { accept: 'application/fhir+json', 'content-type': 'application/fhir+json', ...extra };
      const authorization = await this.auth?.authorization();
      if (authorization) headers.authorization = authorization;
      let res: Response;
      try {
        res = await this.fetchFn(url, { method, headers, body, signal: AbortSignal.timeout(this.timeoutMs) });
      } catch (err) {
        const outcome = outcomeOf('transient', 'no response from the FHIR server', (err as Error).name);
        if (!retrySafe) throw new FhirWriteUnknownError(0, outcome, url);
        if (attempt >= this.maxAttempts) throw new FhirError(0, outcome, url);
        await this.sleep(this.backoff(attempt));
        continue;
      }
      if (res.status === 401 && this.auth?.refreshable && !reauthenticated) {
        await res.body?.cancel();
        reauthenticated = true;
        this.auth.invalidate();
        attempt--;
        continue;
      }
      // 429: the server refused the request without acting on it. The others leave the outcome unknown.
      const retryable = res.status === 429 || (retrySafe && RETRYABLE.has(res.status));
      if (retryable && attempt < this.maxAttempts) {
        await this.waitToRetry(res, url, attempt);
        continue;
      }
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        parsed = undefined;
      }
      if (!res.ok) {
        const outcome = asOutcome(parsed) ?? outcomeOf(issueCodeForStatus(res.status), `HTTP ${res.status}`);
        if (!retrySafe && res.status !== 429 && RETRYABLE.has(res.status)) throw new FhirWriteUnknownError(res.status, outcome, url);
        throw new FhirError(res.status, outcome, url);
      }
      const etag = res.headers.get('etag');
      const returned = parsed && typeof parsed === 'object' && (parsed as Resource).resourceType === resource.resourceType ? (parsed as T) : undefined;
      return {
        status: res.status,
        created: res.status === 201,
        resource: returned,
        outcome: asOutcome(parsed),
        location: res.headers.get('location') ?? undefined,
        versionId: etag ? /^(?:W\/)?"?([^"]*)"?$/.exec(etag)?.[1] : returned?.meta?.versionId,
      };
    }
  }

  private resolveLink(link: string, current: string): string {
    let absolute: string;
    if (/^https?:\/\//i.test(link)) absolute = link;
    else {
      try {
        absolute = new URL(link, `${this.baseUrl}/`).toString();
      } catch {
        throw new FhirError(200, outcomeOf('structure', 'the server returned a next link that is not a URL'), current);
      }
    }
    let origin: string;
    try {
      origin = new URL(absolute).origin;
    } catch {
      throw new FhirError(200, outcomeOf('structure', 'the server returned a next link that is not a URL'), current);
    }
    if (origin !== this.origin) {
      throw new FhirError(200, outcomeOf('security', `refusing to follow a next link to another origin (${origin})`), current);
    }
    return absolute;
  }

  /**
   * Sends a GET or DELETE to `url` (on this server's origin) with the client's auth, retries and 401 re-auth, and
   * returns a 2xx Response unread (for streaming). Used by Bulk Data export.
   * @param options.authenticate - send the bearer token (default true; false for a file that needs none).
   * @param options.signal - ends the request instead of the per-request timeout (a Bulk file, which may take hours
   *   to download, is ended by its caller when it stalls).
   * @throws FhirError for a non-2xx answer.
   */
  async send(url: string, options: { method?: 'GET' | 'DELETE'; headers?: Record<string, string>; authenticate?: boolean; signal?: AbortSignal } = {}): Promise<Response> {
    if (new URL(url).origin !== this.origin && options.authenticate !== false) {
      throw new FhirError(0, outcomeOf('security', `refusing to send the bearer token to another origin (${new URL(url).origin})`), url);
    }
    let reauthenticated = false;
    for (let attempt = 1; ; attempt++) {
      const headers: Record<string, string> = { accept: 'application/fhir+json', ...options.headers };
      const authorization = options.authenticate === false ? undefined : await this.auth?.authorization();
      if (authorization) headers.authorization = authorization;
      let res: Response;
      try {
        res = await this.fetchFn(url, { method: options.method ?? 'GET', headers, signal: options.signal ?? AbortSignal.timeout(this.timeoutMs) });
      } catch (err) {
        const error = new FhirError(0, outcomeOf('transient', 'no response from the FHIR server', (err as Error).name), url);
        if (attempt >= this.maxAttempts) throw error;
        await this.sleep(this.backoff(attempt));
        continue;
      }
      if (res.status === 401 && authorization && this.auth?.refreshable && !reauthenticated) {
        await res.body?.cancel();
        reauthenticated = true;
        this.auth.invalidate();
        attempt--;
        continue;
      }
      if (RETRYABLE.has(res.status) && attempt < this.maxAttempts) {
        await this.waitToRetry(res, url, attempt);
        continue;
      }
      if (res.ok) return res;
      const text = await res.text();
      let body: unknown;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        body = undefined;
      }
      throw new FhirError(res.status, asOutcome(body) ?? outcomeOf(issueCodeForStatus(res.status), `HTTP ${res.status}`), url);
    }
  }

  /** GET `url` as given, with retries and one re-authentication on 401. */
  async get<T = Resource>(url: string): Promise<T> {
    let reauthenticated = false;
    for (let attempt = 1; ; attempt++) {
      const headers: Record<string, string> = { accept: 'application/fhir+json' };
      const authorization = await this.auth?.authorization();
      if (authorization) headers.authorization = authorization;
      let res: Response;
      try {
        res = await this.fetchFn(url, { headers, signal: AbortSignal.timeout(this.timeoutMs) });
      } catch (err) {
        const error = new FhirError(0, outcomeOf('transient', 'no response from the FHIR server', (err as Error).name), url);
        if (attempt >= this.maxAttempts) throw error;
        await this.sleep(this.backoff(attempt));
        continue;
      }
      if (res.status === 401 && this.auth?.refreshable && !reauthenticated) {
        await res.body?.cancel();
        reauthenticated = true;
        this.auth.invalidate();
        attempt--; // the re-authenticated read is not a retry of a transient failure
        continue;
      }
      if (RETRYABLE.has(res.status) && attempt < this.maxAttempts) {
        await this.waitToRetry(res, url, attempt);
        continue;
      }
      const text = await res.text();
      let body: unknown;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        body = undefined;
        if (res.ok) throw new FhirError(res.status, outcomeOf('structure', 'response is not valid JSON'), url);
      }
      if (!res.ok) throw new FhirError(res.status, asOutcome(body) ?? outcomeOf(issueCodeForStatus(res.status), `HTTP ${res.status}`), url);
      if (!body || typeof body !== 'object') throw new FhirError(res.status, outcomeOf('structure', 'response is not a FHIR resource'), url);
      return body as T;
    }
  }

  /** Waits what the server asked (Retry-After) or the backoff, refusing a wait longer than allowed. */
  private async waitToRetry(res: Response, url: string, attempt: number): Promise<void> {
    const retryAfter = parseRetryAfter(res.headers.get('retry-after'), this.clock.now());
    await res.body?.cancel();
    if (retryAfter !== undefined && retryAfter > this.maxRetryAfterMs) {
      throw new FhirError(res.status, outcomeOf(issueCodeForStatus(res.status), `server asked to retry after ${Math.round(retryAfter / 1000)} s, more than allowed`), url);
    }
    await this.sleep(retryAfter ?? this.backoff(attempt));
  }

  /** Full-jitter exponential backoff for the wait after failed attempt `attempt` (1-based). */
  private backoff(attempt: number): number {
    const ceiling = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (attempt - 1));
    return Math.round(this.random() * ceiling);
  }
}

function asOutcome(body: unknown): OperationOutcome | undefined {
  if (body && typeof body === 'object' && (body as Resource).resourceType === 'OperationOutcome' && Array.isArray((body as OperationOutcome).issue)) {
    return body as OperationOutcome;
  }
  return undefined;
}

function toQuery(params: SearchParams): string {
  if (params instanceof URLSearchParams) return params.toString();
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) q.append(key, String(v));
    else q.append(key, String(value));
  }
  return q.toString();
}
