/**
 * Stripe webhook signature verification, over the RAW request body, against an injected clock.
 *
 * `Stripe-Signature: t=1700000000,v1=<hex>,v1=<hex>,v0=<hex>`: each `v1` is HMAC-SHA256 with an endpoint
 * secret over `"<t>.<raw body>"`. Stripe sends several `v1` while an endpoint's secret is being rolled; Settle
 * may also hold several secrets (old and new) during its own rotation: the event is authentic when any `v1`
 * matches any secret. The timestamp must not be older than the tolerance (default 300 s). Like Stripe's SDK,
 * the signature is checked first and a timestamp in the future is accepted (clock skew); its age check is
 * `now − t > tolerance` in whole seconds. Tests cross-check this verifier against `stripe.webhooks.constructEvent`.
 *
 * Mount the route with a raw body parser (`express.raw({ type: 'application/json' })`), never `express.json()`:
 * re-serialised JSON does not verify.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../domain/clock.ts';

/** Stripe's default tolerance, in seconds. */
export const DEFAULT_WEBHOOK_TOLERANCE_SECONDS = 300;

/** Why a webhook was refused; each is a 400 with this `code`. */
export type WebhookFailure =
  | 'missing-header' // no Stripe-Signature header
  | 'malformed-header' // no t= timestamp, or no v1= signature
  | 'no-secret' // misconfiguration: no signing secret (a 500, not the sender's fault)
  | 'bad-signature' // no v1 matches any secret (tampered body, wrong secret)
  | 'stale' // signed longer ago than the tolerance (replay)
  | 'invalid-payload'; // authentic, but not a JSON object with id and type

export class WebhookVerificationError extends Error {
  readonly code: WebhookFailure;
  constructor(code: WebhookFailure, message: string) {
    super(message);
    this.name = 'WebhookVerificationError';
    this.code = code;
  }
}

/** The parsed `Stripe-Signature` header. */
export interface StripeSignatureHeader {
  readonly timestamp: number;
  readonly v1: readonly string[];
}

/**
 * Parses the header; `undefined` when it has no integer `t` or no `v1`. Unknown schemes (`v0`) are ignored.
 * No whitespace is tolerated (Stripe sends none); `t` must be all digits (the SDK's `parseInt` is laxer).
 */
export function parseStripeSignatureHeader(header: string): StripeSignatureHeader | undefined {
  let timestamp: number | undefined;
  const v1: string[] = [];
  for (const item of header.split(',')) {
    const eq = item.indexOf('=');
    if (eq < 0) continue;
    const key = item.slice(0, eq), value = item.slice(eq + 1);
    if (key === 't' && /^\d{1,12}$/.test(value)) timestamp = Number(value);
    else if (key === 'v1' && value !== '') v1.push(value);
  }
  if (timestamp === undefined || v1.length === 0) return undefined;
  return { timestamp, v1 };
}

/** Hex HMAC-SHA256 of `"<t>.<payload>"`: Stripe's v1 signature. */
export function stripeSignature(payload: string | Uint8Array, timestamp: number, secret: string): string {
  return createHmac('sha256', secret).update(`${timestamp}.`, 'utf8').update(payload).digest('hex');
}

/** A `Stripe-Signature` header for a payload (for the Stripe fake and tests); one v1 per secret. */
export function signStripePayload(payload: string | Uint8Array, timestamp: number, secrets: string | readonly string[]): string {
  const list = typeof secrets === 'string' ? [secrets] : secrets;
  return [`t=${timestamp}`, ...list.map((secret) => `v1=${stripeSignature(payload, timestamp, secret)}`)].join(',');
}

export interface VerifyWebhookOptions {
  /** The endpoint's signing secret(s), `whsec_…`; several during rotation. */
  readonly secrets: string | readonly string[];
  readonly clock: Clock;
  /** Seconds; 0 disables the age check (offline replays only). Default 300. */
  readonly toleranceSeconds?: number;
}

/** The part of a Stripe event Settle dispatches on; the rest stays as received. */
export interface StripeEventEnvelope {
  readonly id: string;
  readonly type: string;
  readonly created?: number;
  readonly livemode?: boolean;
  readonly data?: { readonly object?: Record<string, unknown> };
  readonly [key: string]: unknown;
}

function equalHex(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * Verifies a webhook and returns the event.
 * @param rawBody - the request body exactly as received (Buffer from `express.raw`, or the string).
 * @param header - the `Stripe-Signature` header value (`req.get('stripe-signature')`).
 * @throws WebhookVerificationError with a stable `code`.
 */
export function verifyStripeWebhook(rawBody: string | Uint8Array, header: string | undefined | null, options: VerifyWebhookOptions): StripeEventEnvelope {
  const secrets = (typeof options.secrets === 'string' ? [options.secrets] : options.secrets).filter((s) => s !== '');
  if (secrets.length === 0) throw new WebhookVerificationError('no-secret', 'no webhook signing secret is configured');
  if (header === undefined || header === null || header === '') throw new WebhookVerificationError('missing-header', 'the Stripe-Signature header is missing');
  const parsed = parseStripeSignatureHeader(header);
  if (!parsed) throw new WebhookVerificationError('malformed-header', 'the Stripe-Signature header has no t= timestamp or no v1= signature');
  const match = secrets.some((secret) => {
    const expected = stripeSignature(rawBody, parsed.timestamp, secret);
    return parsed.v1.some((candidate) => equalHex(expected, candidate));
  });
  if (!match) throw new WebhookVerificationError('bad-signature', 'no v1 signature matches the raw body with any configured secret');
  const tolerance = options.toleranceSeconds ?? DEFAULT_WEBHOOK_TOLERANCE_SECONDS;
  const age = Math.floor(options.clock.now().getTime() / 1000) - parsed.timestamp;
  if (tolerance > 0 && age > tolerance) throw new WebhookVerificationError('stale', `the signature is ${age} s old; the tolerance is ${tolerance} s`);
  let event: unknown;
  try {
    event = JSON.parse(typeof rawBody === 'string' ? rawBody : Buffer.from(rawBody).toString('utf8'));
  } catch {
    throw new WebhookVerificationError('invalid-payload', 'the body is not JSON');
  }
  if (typeof event !== 'object' || event === null || Array.isArray(event)) throw new WebhookVerificationError('invalid-payload', 'the body is not a JSON object');
  const { id, type } = event as Record<string, unknown>;
  if (typeof id !== 'string' || id === '' || typeof type !== 'string' || type === '') {
    throw new WebhookVerificationError('invalid-payload', 'the event has no id or type');
  }
  return event as StripeEventEnvelope;
}
