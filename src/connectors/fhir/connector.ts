/**
 * A `fhir-r4` connector file (already validated against `connectors/connector.schema.json`) turned into what the
 * client needs: secrets are read from the environment variables the file names, here and nowhere else.
 */
import type { JsonWebKey } from 'node:crypto';
import type { Clock } from '../../domain/clock.ts';
import { FhirClient, type FhirClientOptions } from './fhir-client.ts';
import { isR4ResourceType } from './resource-types.ts';
import { createTokenProvider, type AuthConfig, type TokenProviderOptions } from './smart-auth.ts';

/** The `auth` of a connector file, as the schema allows it (secrets by env-var name). */
export type ConnectorAuth =
  | { method: 'none' }
  | { method: 'bearer'; tokenEnv: string }
  | { method: 'client-secret'; tokenUrl: string; clientId?: string; clientIdEnv?: string; clientSecretEnv: string; style: 'basic' | 'post'; scope?: string }
  | { method: 'smart-backend'; tokenUrl: string; clientId: string; privateKeyEnv: string; keyId: string; algorithm: 'RS384' | 'ES384'; scope: string };

/** One resource type a connector pulls. */
export interface ConnectorResource {
  type: string;
  /** Search parameters sent with every request. */
  search?: Record<string, string>;
  /** Search by `_lastUpdated` from the checkpoint (default true). */
  incremental?: boolean;
  /** Ask for `_sort=_lastUpdated` and move the checkpoint after each page (default true). */
  sort?: boolean;
}

/** A `fhir-r4` connector file. */
export interface FhirConnectorConfig {
  name: string;
  description: string;
  /** Slug of the practice. */
  practice: string;
  transport: 'fhir-r4';
  baseUrl: string;
  auth: ConnectorAuth;
  resources: ConnectorResource[];
  schedule: { every: string } | { cron: string };
  pageSize: number;
  rateLimitPerSecond: number;
  /** Default 1. */
  overlapSeconds?: number;
  /** Whether the engine syncs it on its schedule (default true); `settle sync NAME` runs it either way. */
  enabled?: boolean;
}

/** A connector that cannot be used as configured; the message names the connector and what to fix. */
export class ConnectorConfigError extends Error {
  readonly connector: string;
  constructor(connector: string, message: string) {
    super(`connector ${connector}: ${message}`);
    this.name = 'ConnectorConfigError';
    this.connector = connector;
  }
}

/** Environment variables, as `process.env`. */
export type Env = Record<string, string | undefined>;

/**
 * Reads a connector document (a loaded data file's `data`) as a fhir-r4 connector.
 * @throws ConnectorConfigError when it is another transport or names a type that is not a FHIR R4 resource.
 */
export function fhirConnectorConfig(data: Record<string, unknown>): FhirConnectorConfig {
  const name = typeof data.name === 'string' ? data.name : '(unnamed)';
  if (data.transport !== 'fhir-r4') throw new ConnectorConfigError(name, `is a ${String(data.transport)} connector, not fhir-r4`);
  const config = data as unknown as FhirConnectorConfig;
  const unknown = config.resources.filter((r) => !isR4ResourceType(r.type)).map((r) => r.type);
  if (unknown.length > 0) throw new ConnectorConfigError(name, `${unknown.join(', ')} ${unknown.length === 1 ? 'is not a FHIR R4 resource type' : 'are not FHIR R4 resource types'}`);
  const seen = new Set<string>();
  for (const r of config.resources) {
    if (seen.has(r.type)) throw new ConnectorConfigError(name, `lists ${r.type} twice in resources`);
    seen.add(r.type);
  }
  return config;
}

function required(connector: string, env: Env, variable: string, what: string): string {
  const value = env[variable];
  if (value === undefined || value.trim() === '') {
    throw new ConnectorConfigError(connector, `environment variable ${variable} (${what}) is not set`);
  }
  return value;
}

/** A private key from an env var: PEM (literal `\n` sequences allowed, as many secret stores flatten newlines) or a JWK. */
function privateKeyFrom(connector: string, variable: string, value: string): string | JsonWebKey {
  const trimmed = value.trim();
  if (trimmed.startsWith('{')) {
    try {
      return JSON.parse(trimmed) as JsonWebKey;
    } catch {
      throw new ConnectorConfigError(connector, `environment variable ${variable} starts like a JWK but is not valid JSON`);
    }
  }
  if (!trimmed.includes('-----BEGIN')) throw new ConnectorConfigError(connector, `environment variable ${variable} holds neither a PEM private key nor a JWK`);
  return trimmed.replace(/\\n/g, '\n');
}

/**
 * The client's auth configuration, with secrets read from the variables the file names.
 * @throws ConnectorConfigError naming the connector and the missing or unusable variable.
 */
export function resolveAuth(config: FhirConnectorConfig, env: Env = process.env): AuthConfig {
  const auth = config.auth;
  switch (auth.method) {
    case 'none':
      return { method: 'none' };
    case 'bearer':
      return { method: 'bearer', token: required(config.name, env, auth.tokenEnv, 'the bearer token').trim() };
    case 'client-secret': {
      const clientId = auth.clientId ?? required(config.name, env, auth.clientIdEnv!, 'the client id').trim();
      const clientSecret = required(config.name, env, auth.clientSecretEnv, 'the client secret');
      return { method: auth.style === 'basic' ? 'client-secret-basic' : 'client-secret-post', tokenUrl: auth.tokenUrl, clientId, clientSecret, scope: auth.scope };
    }
    case 'smart-backend': {
      const raw = required(config.name, env, auth.privateKeyEnv, 'the SMART backend private key');
      return {
        method: 'smart-backend',
        tokenUrl: auth.tokenUrl,
        clientId: auth.clientId,
        privateKey: privateKeyFrom(config.name, auth.privateKeyEnv, raw),
        kid: auth.keyId,
        alg: auth.algorithm,
        scope: auth.scope,
      };
    }
  }
}

/** What {@link createFhirClient} may be given besides the connector. */
export interface ClientDependencies {
  env?: Env;
  clock?: Clock;
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
  /** Passed through to the client (attempts, backoff, timeouts). */
  client?: Omit<FhirClientOptions, 'baseUrl' | 'auth' | 'fetch' | 'clock' | 'sleep'>;
  token?: Omit<TokenProviderOptions, 'clock' | 'fetch'>;
  /** Override the connector's requests-per-second limit (0 or Infinity: none). */
  rateLimitPerSecond?: number;
}

/**
 * A FHIR client for a connector: its base URL, its auth with secrets resolved, and its request-rate limit applied
 * to every FHIR request (token requests are not counted).
 * @throws ConnectorConfigError when a secret is missing or unusable (a wrong key type, say).
 */
export function createFhirClient(config: FhirConnectorConfig, deps: ClientDependencies = {}): FhirClient {
  const authConfig = resolveAuth(config, deps.env);
  let auth;
  try {
    auth = createTokenProvider(authConfig, { ...deps.token, clock: deps.clock, fetch: deps.fetch });
  } catch (error) {
    const variable = config.auth.method === 'smart-backend' ? ` (environment variable ${config.auth.privateKeyEnv})` : '';
    throw new ConnectorConfigError(config.name, `unusable credentials${variable}: ${(error as Error).message}`);
  }
  const rate = deps.rateLimitPerSecond ?? config.rateLimitPerSecond;
  const baseFetch = deps.fetch ?? fetch;
  return new FhirClient({
    ...deps.client,
    baseUrl: config.baseUrl,
    auth,
    clock: deps.clock,
    sleep: deps.sleep,
    fetch: rate > 0 && Number.isFinite(rate) ? rateLimited(baseFetch, rate) : baseFetch,
  });
}

/**
 * Spaces requests at least `1000 / perSecond` ms apart (start to start), across concurrent callers.
 * @param now - monotonic milliseconds; injected in tests.
 */
export function rateLimited(
  inner: typeof fetch,
  perSecond: number,
  now: () => number = () => performance.now(),
  wait: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
): typeof fetch {
  const interval = 1000 / perSecond;
  let nextSlot = -Infinity;
  const limited = async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
    const at = Math.max(now(), nextSlot);
    nextSlot = at + interval;
    const delay = at - now();
    if (delay > 0) await wait(delay);
    return inner(input, init);
  };
  return limited as typeof fetch;
}
