/**
 * Access tokens for FHIR servers.
 *
 * - `smart-backend`: SMART Backend Services — client-credentials grant with a JWT client assertion signed RS384 or
 *   ES384 (header `kid`), `iss` = `sub` = client id, `aud` = token URL, a unique `jti`, `exp` ≤ 5 minutes ahead,
 *   and `scope` sent.
 * - `client-secret-basic` / `client-secret-post`: client-credentials with a shared secret.
 * - `bearer`: a static token (from the environment); `none`: no Authorization header.
 *
 * Tokens are cached until `refreshBeforeSeconds` before `expires_in` runs out; concurrent callers share one token
 * request; `invalidate()` drops the cached token so that a 401 re-authenticates.
 * The caller resolves secrets (by env-var name) before building the config; nothing here reads the environment.
 */
import { createPrivateKey, randomUUID, sign, type JsonWebKey, type KeyObject } from 'node:crypto';
import { systemClock, type Clock } from '../../domain/clock.ts';
import { FhirError, issueCodeForStatus, outcomeOf } from './errors.ts';

export type SmartAlg = 'RS384' | 'ES384';

export type AuthConfig =
  | {
      method: 'smart-backend';
      tokenUrl: string;
      clientId: string;
      /** PKCS#8/PKCS#1/SEC1 PEM, a private JWK, or a KeyObject. */
      privateKey: string | JsonWebKey | KeyObject;
      kid: string;
      alg: SmartAlg;
      scope: string;
      /** Assertion lifetime; at most 300 s (default 300). */
      assertionLifetimeSeconds?: number;
    }
  | { method: 'client-secret-basic' | 'client-secret-post'; tokenUrl: string; clientId: string; clientSecret: string; scope?: string }
  | { method: 'bearer'; token: string }
  | { method: 'none' };

export interface TokenProviderOptions {
  clock?: Clock;
  fetch?: typeof fetch;
  /** Refresh this long before the token's expiry; default 30 s (capped at half the lifetime). */
  refreshBeforeSeconds?: number;
  /** Timeout of a token request; default 30 s. */
  timeoutMs?: number;
}

export interface TokenProvider {
  /** The Authorization header value to send, or undefined for `none`. */
  authorization(): Promise<string | undefined>;
  /** Forgets the cached token; the next `authorization()` fetches a new one. */
  invalidate(): void;
  /** Whether `invalidate()` can lead to a different token (false for `bearer` and `none`). */
  readonly refreshable: boolean;
}

export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in?: number;
  scope?: string;
}

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const MAX_ASSERTION_LIFETIME_SECONDS = 300;

function toPrivateKey(key: string | JsonWebKey | KeyObject): KeyObject {
  if (typeof key === 'string') return createPrivateKey(key);
  if ('asymmetricKeyType' in key && typeof (key as KeyObject).export === 'function') return key as KeyObject;
  return createPrivateKey({ key: key as JsonWebKey, format: 'jwk' });
}

function checkKey(alg: SmartAlg, key: KeyObject): void {
  if (key.type !== 'private') throw new Error('SMART backend auth needs a private key');
  if (alg === 'RS384' && key.asymmetricKeyType !== 'rsa') throw new Error('RS384 needs an RSA private key');
  if (alg === 'ES384' && (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'secp384r1')) {
    throw new Error('ES384 needs an EC P-384 private key');
  }
}

export interface AssertionInput {
  clientId: string;
  tokenUrl: string;
  privateKey: string | JsonWebKey | KeyObject;
  kid: string;
  alg: SmartAlg;
  now: Date;
  /** Seconds until exp; at most 300. Default 300. */
  lifetimeSeconds?: number;
  /** Default: a random UUID. */
  jti?: string;
}

/** Signs a SMART Backend Services client assertion (compact JWS). */
export function signClientAssertion(input: AssertionInput): string {
  const lifetime = input.lifetimeSeconds ?? MAX_ASSERTION_LIFETIME_SECONDS;
  if (!(lifetime > 0 && lifetime <= MAX_ASSERTION_LIFETIME_SECONDS)) throw new Error('a client assertion lives at most 300 seconds');
  const key = toPrivateKey(input.privateKey);
  checkKey(input.alg, key);
  const iat = Math.floor(input.now.getTime() / 1000);
  const header = { alg: input.alg, kid: input.kid, typ: 'JWT' };
  const claims = { iss: input.clientId, sub: input.clientId, aud: input.tokenUrl, exp: iat + lifetime, iat, jti: input.jti ?? randomUUID() };
  const signingInput = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const signature =
    input.alg === 'RS384'
      ? sign('sha384', Buffer.from(signingInput), key)
      : sign('sha384', Buffer.from(signingInput), { key, dsaEncoding: 'ieee-p1363' });
  return `${signingInput}.${signature.toString('base64url')}`;
}

/** Builds a token provider for `config`. */
export function createTokenProvider(config: AuthConfig, options: TokenProviderOptions = {}): TokenProvider {
  if (config.method === 'none') return { authorization: async () => undefined, invalidate: () => {}, refreshable: false };
  if (config.method === 'bearer') {
    if (!config.token) throw new Error('bearer auth needs a token');
    const value = `Bearer ${config.token}`;
    return { authorization: async () => value, invalidate: () => {}, refreshable: false };
  }
  if (config.method === 'smart-backend') {
    // Fail on a wrong key at configuration time, not at the first sync.
    checkKey(config.alg, toPrivateKey(config.privateKey));
    config = { ...config, privateKey: toPrivateKey(config.privateKey) };
  }
  return new ClientCredentialsProvider(config, options);
}

type ClientCredentialsConfig = Exclude<AuthConfig, { method: 'none' } | { method: 'bearer' }>;

class ClientCredentialsProvider implements TokenProvider {
  readonly refreshable = true;
  private readonly config: ClientCredentialsConfig;
  private readonly clock: Clock;
  private readonly fetchFn: typeof fetch;
  private readonly refreshBefore: number;
  private readonly timeoutMs: number;
  private cached: { value: string; refreshAt: number } | undefined;
  private inflight: Promise<string> | undefined;
  private generation = 0;

  constructor(config: ClientCredentialsConfig, options: TokenProviderOptions) {
    this.config = config;
    this.clock = options.clock ?? systemClock;
    this.fetchFn = options.fetch ?? fetch;
    this.refreshBefore = options.refreshBeforeSeconds ?? 30;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  async authorization(): Promise<string> {
    if (this.cached && this.clock.now().getTime() < this.cached.refreshAt) return this.cached.value;
    if (!this.inflight) {
      const generation = this.generation;
      this.inflight = this.requestToken().finally(() => {
        if (generation === this.generation) this.inflight = undefined;
      });
    }
    return this.inflight;
  }

  invalidate(): void {
    this.cached = undefined;
    this.inflight = undefined;
    this.generation++;
  }

  private async requestToken(): Promise<string> {
    const config = this.config;
    const started = this.clock.now();
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    if (config.method === 'smart-backend') {
      form.set('scope', config.scope);
      form.set('client_assertion_type', JWT_BEARER);
      form.set(
        'client_assertion',
        signClientAssertion({ ...config, now: started, lifetimeSeconds: config.assertionLifetimeSeconds }),
      );
    } else {
      if (config.scope) form.set('scope', config.scope);
      if (config.method === 'client-secret-basic') {
        const creds = `${encodeURIComponent(config.clientId)}:${encodeURIComponent(config.clientSecret)}`;
        headers.authorization = `Basic ${Buffer.from(creds).toString('base64')}`;
      } else {
        form.set('client_id', config.clientId);
        form.set('client_secret', config.clientSecret);
      }
    }
    let res: Response;
    try {
      res = await this.fetchFn(config.tokenUrl, { method: 'POST', headers, body: form, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (err) {
      throw new FhirError(0, outcomeOf('transient', 'token endpoint unreachable', (err as Error).message), config.tokenUrl);
    }
    const text = await res.text();
    let body: Partial<TokenResponse> & { error?: string; error_description?: string } = {};
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      // handled below
    }
    if (!res.ok) {
      const what = body.error ? `${body.error}${body.error_description ? `: ${body.error_description}` : ''}` : `token request failed with HTTP ${res.status}`;
      throw new FhirError(res.status, outcomeOf(res.status === 400 || res.status === 401 ? 'login' : issueCodeForStatus(res.status), what), config.tokenUrl);
    }
    if (typeof body.access_token !== 'string' || !body.access_token || typeof body.token_type !== 'string' || body.token_type.toLowerCase() !== 'bearer') {
      throw new FhirError(res.status, outcomeOf('invalid', 'token response lacks a bearer access_token'), config.tokenUrl);
    }
    const lifetime = typeof body.expires_in === 'number' && body.expires_in >= 0 ? body.expires_in : 300;
    const margin = Math.min(this.refreshBefore, lifetime / 2);
    const value = `Bearer ${body.access_token}`;
    this.cached = { value, refreshAt: started.getTime() + (lifetime - margin) * 1000 };
    return value;
  }
}
