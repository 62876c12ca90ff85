/**
 * Engine settings, read from environment variables and validated with ajv.
 *
 * Every problem is reported at once, each naming the variable and what was expected,
 * so an operator fixes a bad `.env` in one pass and nothing starts half-way.
 */
import { Ajv } from 'ajv';
import { resolve } from 'node:path';

/** One environment variable the engine reads. */
export interface SettingSpec {
  /** JSON Schema of the value after type coercion. */
  schema: Record<string, unknown>;
  /** What the variable is for (shown in `settle --help` and the README table). */
  description: string;
  /** Default when unset, as the string an operator would write. */
  default?: string;
  /** Secret values are never printed back. */
  secret?: boolean;
}

/** The variables Settle reads. The README's table documents exactly these. */
export const SETTING_SPECS = {
  DATABASE_URL: {
    schema: { type: 'string', pattern: '^postgres(ql)?://' },
    description: 'PostgreSQL server to use. Unset: an embedded PGlite database in SETTLE_DATA_DIR.',
    secret: true,
  },
  SETTLE_DATA_DIR: {
    schema: { type: 'string', minLength: 1 },
    description: 'Directory of the embedded database and the generated development keys.',
    default: './data',
  },
  SETTLE_CONFIG_DIR: {
    schema: { type: 'string', minLength: 1 },
    description: 'Directory holding connectors/, mappings/, policies/ and fhir-profiles/.',
    default: '.',
  },
  SETTLE_HOST: {
    schema: { type: 'string', minLength: 1 },
    description: 'Address the HTTP API listens on.',
    default: '127.0.0.1',
  },
  SETTLE_PORT: {
    schema: { type: 'integer', minimum: 0, maximum: 65535 },
    description: 'Port the HTTP API listens on (0 picks a free port).',
    default: '8080',
  },
  SETTLE_PUBLIC_URL: {
    schema: { type: 'string', pattern: '^https?://' },
    description: 'Public URL patients and webhooks reach the engine at (behind your TLS proxy); shown as the server of /openapi.json.',
  },
  SETTLE_LOG_LEVEL: {
    schema: { type: 'string', enum: ['error', 'warn', 'info', 'debug'] },
    description: 'Log level of the JSON log on stdout.',
    default: 'info',
  },
  SETTLE_DB_POOL_SIZE: {
    schema: { type: 'integer', minimum: 2, maximum: 100 },
    description: 'Connections in the database pool of each process.',
    default: '10',
  },
  SETTLE_SHUTDOWN_TIMEOUT_MS: {
    schema: { type: 'integer', minimum: 0, maximum: 600000 },
    description: 'How long running jobs may finish after SIGTERM/SIGINT before the process exits.',
    default: '30000',
  },
  SETTLE_JOB_CONCURRENCY: {
    schema: { type: 'integer', minimum: 1, maximum: 200 },
    description: 'Jobs one worker process runs at the same time.',
    default: '10',
  },
  SETTLE_ENCRYPTION_KEYS: {
    schema: { type: 'string', pattern: '^[A-Za-z0-9_-]+:[A-Za-z0-9+/=]{43,44}(,[A-Za-z0-9_-]+:[A-Za-z0-9+/=]{43,44})*$' },
    description:
      'PHI encryption keys as `id:base64key` (32-byte keys), comma-separated, oldest first; new writes use the last. Required with DATABASE_URL; embedded mode generates one into SETTLE_DATA_DIR.',
    secret: true,
  },
  SETTLE_BLIND_INDEX_KEY: {
    schema: { type: 'string', pattern: '^[A-Za-z0-9+/=]{43,44}$' },
    description: 'Base64 32-byte HMAC key for looking patients up by phone or email. Required with DATABASE_URL; generated in embedded mode.',
    secret: true,
  },
  SETTLE_PAY_LINK_KEYS: {
    schema: { type: 'string', pattern: '^\\d{1,3}:[A-Za-z0-9_\\-+/=]{43,}(,\\d{1,3}:[A-Za-z0-9_\\-+/=]{43,})*$' },
    description:
      'Pay-link signing keys as `id:base64url` (id 0–255, keys of 32+ bytes), the current key first, older ones after it so their links keep working. Required with DATABASE_URL (every process must share them); unset with the embedded database: a key is generated into SETTLE_DATA_DIR.',
    secret: true,
  },
  STRIPE_SECRET_KEY: {
    schema: { type: 'string', pattern: '^(sk|rk)_' },
    description: 'Stripe secret (or restricted) key: the Stripe account of every practice STRIPE_SECRET_KEYS does not name. Unset (and no STRIPE_SECRET_KEYS): the pay page runs in sandbox mode, clearly labelled, and nothing is charged.',
    secret: true,
  },
  STRIPE_SECRET_KEYS: {
    schema: { type: 'string', minLength: 1 },
    description: 'Per practice Stripe account: `slug=sk_…[,slug=rk_…]`, the key Checkout, plan charges, refunds and reconciliation use for that practice. A practice not named uses STRIPE_SECRET_KEY, else the sandbox (clearly labelled).',
    secret: true,
  },
  STRIPE_WEBHOOK_SECRET: {
    schema: { type: 'string', pattern: '^whsec_' },
    description: 'Signing secret of the Stripe webhook endpoint `<SETTLE_PUBLIC_URL>/webhooks/stripe` (`whsec_…`).',
    secret: true,
  },
  STRIPE_WEBHOOK_SECRETS: {
    schema: { type: 'string', minLength: 1 },
    description: 'Per practice Stripe account: `slug=whsec_…[,slug=whsec_…]`, the signing secret of the endpoint `<SETTLE_PUBLIC_URL>/webhooks/stripe/<slug>` of that practice\'s Stripe account.',
    secret: true,
  },
  SETTLE_SMTP_URL: {
    schema: { type: 'string', pattern: '^smtps?://' },
    description: 'Mail server for outreach email: `smtp://user:pass@host:587` (STARTTLS) or `smtps://user:pass@host:465`. Unset: emails stay in the outbox.',
    secret: true,
  },
  SETTLE_EMAIL_FROM: {
    schema: { type: 'string', minLength: 3 },
    description: 'From header of outreach email (`Riverside Billing <billing@riverside.example>`); required with SETTLE_SMTP_URL.',
  },
  SETTLE_EMAIL_UNSUBSCRIBE_MAILTO: {
    schema: { type: 'string', pattern: '^[^\\s@]+@[^\\s@]+$' },
    description: 'A mailbox added to the `List-Unsubscribe` header as a mailto (optional; the signed unsubscribe URL is always there).',
  },
  SETTLE_EMAIL_BOUNCE_SECRET: {
    schema: { type: 'string', minLength: 24 },
    description: 'Shared secret of the bounce webhook `POST /webhooks/email/bounces` (the `X-Settle-Bounce-Secret` header or `?token=`), at least 24 characters. Unset: the webhook answers webhook_not_configured.',
    secret: true,
  },
  TWILIO_ACCOUNT_SID: {
    schema: { type: 'string', pattern: '^AC[0-9a-fA-F]{32}$' },
    description: 'Twilio Account SID (`AC…`) for outreach texts. Unset (with the other TWILIO_* settings): texts stay in the outbox.',
  },
  TWILIO_AUTH_TOKEN: {
    schema: { type: 'string', minLength: 32 },
    description: 'Twilio Auth Token: authenticates the API calls and verifies `X-Twilio-Signature` on the Twilio webhooks.',
    secret: true,
  },
  TWILIO_MESSAGING_SERVICE_SID: {
    schema: { type: 'string', pattern: '^MG[0-9a-fA-F]{32}$' },
    description: 'Twilio Messaging Service (`MG…`) whose sender pool sends outreach texts.',
  },
  SETTLE_DEMO: {
    schema: { type: 'string', enum: ['auto', 'on', 'off'] },
    description:
      '`settle start` runs the demo practice (fictitious data, sandbox EHR, nothing sent): `auto` when the database is the embedded one and no connector reaches beyond this machine, `on` always, `off` never.',
    default: 'auto',
  },
} as const satisfies Record<string, SettingSpec>;

/** Name of a variable Settle reads. */
export type SettingName = keyof typeof SETTING_SPECS;

/** Validated settings. */
export interface Settings {
  databaseUrl: string | undefined;
  dataDir: string;
  configDir: string;
  host: string;
  port: number;
  publicUrl: string | undefined;
  logLevel: 'error' | 'warn' | 'info' | 'debug';
  dbPoolSize: number;
  shutdownTimeoutMs: number;
  jobConcurrency: number;
  encryptionKeys: string | undefined;
  blindIndexKey: string | undefined;
  payLinkKeys: string | undefined;
  stripeSecretKey: string | undefined;
  /** STRIPE_SECRET_KEYS: practice slug → that practice's own Stripe key (empty when unset). */
  stripeSecretKeys: ReadonlyMap<string, string>;
  stripeWebhookSecret: string | undefined;
  /** STRIPE_WEBHOOK_SECRETS: practice slug → the signing secret of that practice's webhook endpoint (empty when unset). */
  stripeWebhookSecrets: ReadonlyMap<string, string>;
  /** Twilio credentials: all three TWILIO_* settings, or undefined when none is set. */
  twilio: { accountSid: string; authToken: string; messagingServiceSid: string } | undefined;
  /** SETTLE_EMAIL_BOUNCE_SECRET: authenticates the bounce webhook (absent: it is not configured). */
  emailBounceSecret?: string | undefined;
  /** SETTLE_DEMO: whether `settle start` runs the demo practice (absent: `auto`). */
  demo?: 'auto' | 'on' | 'off';
}

/** One problem with one variable. */
export interface SettingProblem {
  variable: string;
  message: string;
}

/** Thrown when the environment is invalid; carries every problem. */
export class SettingsError extends Error {
  readonly problems: SettingProblem[];
  constructor(problems: SettingProblem[]) {
    super(`Invalid settings:\n${problems.map((p) => `  ${p.variable}: ${p.message}`).join('\n')}`);
    this.name = 'SettingsError';
    this.problems = problems;
  }
}

const ajv = new Ajv({ allErrors: true, coerceTypes: true, useDefaults: true });
const validateEnv = ajv.compile({
  type: 'object',
  properties: Object.fromEntries(
    Object.entries(SETTING_SPECS).map(([name, spec]) => [
      name,
      'default' in spec ? { ...spec.schema, default: spec.default } : spec.schema,
    ]),
  ),
});

/**
 * Reads and validates the settings from an environment.
 * @param env - the environment (defaults to `process.env`); empty strings count as unset.
 * @returns the settings, with paths resolved against the working directory.
 * @throws SettingsError listing every problem.
 */
export function loadSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const values: Record<string, unknown> = {};
  for (const name of Object.keys(SETTING_SPECS)) {
    const raw = env[name];
    if (raw !== undefined && raw !== '') values[name] = raw;
  }
  const problems: SettingProblem[] = [];
  if (!validateEnv(values)) {
    for (const error of validateEnv.errors ?? []) {
      const variable = error.instancePath.replace(/^\//, '');
      const spec = SETTING_SPECS[variable as SettingName] as SettingSpec | undefined;
      const shown = spec?.secret ? '' : ` (got ${JSON.stringify(env[variable])})`;
      problems.push({ variable, message: `${describe(error.keyword, error.params, error.message)}${shown}` });
    }
  }
  if (values.DATABASE_URL !== undefined) {
    for (const name of ['SETTLE_ENCRYPTION_KEYS', 'SETTLE_BLIND_INDEX_KEY'] as const) {
      if (values[name] === undefined) {
        problems.push({ variable: name, message: 'is required when DATABASE_URL is set (keys are only generated for the embedded database)' });
      }
    }
  }
  const practiceSecrets = {} as Record<PracticeSecretSetting, ReadonlyMap<string, string>>;
  for (const name of PRACTICE_SECRET_SETTINGS) {
    try {
      practiceSecrets[name] = parsePracticeSecrets(name, values[name] as string | undefined);
    } catch (error) {
      if (!(error instanceof SettingsError)) throw error;
      problems.push(...error.problems);
    }
  }
  const twilioNames = ['TWILIO_ACCOUNT_SID', 'TWILIO_AUTH_TOKEN', 'TWILIO_MESSAGING_SERVICE_SID'] as const;
  if (twilioNames.some((n) => values[n] !== undefined)) {
    for (const name of twilioNames) if (values[name] === undefined) problems.push({ variable: name, message: 'is required when any TWILIO_* setting is set' });
  }
  if (problems.length > 0) throw new SettingsError(problems);
  return {
    databaseUrl: values.DATABASE_URL as string | undefined,
    dataDir: resolve(values.SETTLE_DATA_DIR as string),
    configDir: resolve(values.SETTLE_CONFIG_DIR as string),
    host: values.SETTLE_HOST as string,
    port: values.SETTLE_PORT as number,
    publicUrl: values.SETTLE_PUBLIC_URL as string | undefined,
    logLevel: values.SETTLE_LOG_LEVEL as Settings['logLevel'],
    dbPoolSize: values.SETTLE_DB_POOL_SIZE as number,
    shutdownTimeoutMs: values.SETTLE_SHUTDOWN_TIMEOUT_MS as number,
    jobConcurrency: values.SETTLE_JOB_CONCURRENCY as number,
    encryptionKeys: values.SETTLE_ENCRYPTION_KEYS as string | undefined,
    blindIndexKey: values.SETTLE_BLIND_INDEX_KEY as string | undefined,
    payLinkKeys: values.SETTLE_PAY_LINK_KEYS as string | undefined,
    stripeSecretKey: values.STRIPE_SECRET_KEY as string | undefined,
    stripeSecretKeys: practiceSecrets.STRIPE_SECRET_KEYS,
    stripeWebhookSecret: values.STRIPE_WEBHOOK_SECRET as string | undefined,
    stripeWebhookSecrets: practiceSecrets.STRIPE_WEBHOOK_SECRETS,
    demo: values.SETTLE_DEMO as Settings['demo'],
    emailBounceSecret: values.SETTLE_EMAIL_BOUNCE_SECRET as string | undefined,
    twilio: values.TWILIO_ACCOUNT_SID === undefined ? undefined : {
      accountSid: values.TWILIO_ACCOUNT_SID as string,
      authToken: values.TWILIO_AUTH_TOKEN as string,
      messagingServiceSid: values.TWILIO_MESSAGING_SERVICE_SID as string,
    },
  };
}

/** The per practice secret settings, `slug=<secret>` pairs, and the prefixes each secret starts with. */
const PRACTICE_SECRET_PREFIXES = {
  STRIPE_SECRET_KEYS: ['sk_', 'rk_'],
  STRIPE_WEBHOOK_SECRETS: ['whsec_'],
} as const;
/** A per practice secret setting. */
export type PracticeSecretSetting = keyof typeof PRACTICE_SECRET_PREFIXES;
const PRACTICE_SECRET_SETTINGS = Object.keys(PRACTICE_SECRET_PREFIXES) as PracticeSecretSetting[];
const PRACTICE_SLUG = /^[A-Za-z0-9_-]+$/;

/**
 * Reads a per practice secret setting (`STRIPE_SECRET_KEYS`, `STRIPE_WEBHOOK_SECRETS`): `slug=<secret>` pairs
 * separated by commas, each secret with its prefix (`sk_`/`rk_`, `whsec_`), each practice once. An error names
 * the variable, the entry's position and its slug, never a secret.
 * @returns practice slug → secret (empty when unset).
 * @throws SettingsError listing every bad entry.
 */
export function parsePracticeSecrets(variable: PracticeSecretSetting, value: string | undefined): Map<string, string> {
  const prefixes: readonly string[] = PRACTICE_SECRET_PREFIXES[variable];
  const secrets = new Map<string, string>();
  const problems: SettingProblem[] = [];
  const expected = `slug=${prefixes.map((p) => `${p}…`).join(' or slug=')}`;
  (value ? value.split(',') : []).forEach((item, i) => {
    const eq = item.indexOf('=');
    const slug = eq < 0 ? '' : item.slice(0, eq);
    const secret = eq < 0 ? '' : item.slice(eq + 1);
    const entry = `entry ${i + 1}${PRACTICE_SLUG.test(slug) ? ` ("${slug}=…")` : ''}`;
    if (!PRACTICE_SLUG.test(slug)) problems.push({ variable, message: `${entry} does not start with a practice slug (letters, digits, - and _) and "=": expected ${expected}` });
    else if (!prefixes.some((p) => secret.startsWith(p)) || /[\s=]/.test(secret)) problems.push({ variable, message: `${entry}: the secret must start with ${prefixes.join(' or ')} (expected ${expected})` });
    else if (secrets.has(slug)) problems.push({ variable, message: `${entry} names the practice "${slug}" twice` });
    else secrets.set(slug, secret);
  });
  if (problems.length > 0) throw new SettingsError(problems);
  return secrets;
}

function describe(keyword: string, params: Record<string, unknown>, fallback: string | undefined): string {
  switch (keyword) {
    case 'type':
      return `must be ${params.type === 'integer' ? 'a whole number' : `a ${String(params.type)}`}`;
    case 'enum':
      return `must be one of ${(params.allowedValues as string[]).join(', ')}`;
    case 'minimum':
    case 'maximum':
      return `must be ${keyword === 'minimum' ? '≥' : '≤'} ${String(params.limit)}`;
    case 'pattern':
      return `must match ${String(params.pattern)}`;
    default:
      return fallback ?? 'is invalid';
  }
}
