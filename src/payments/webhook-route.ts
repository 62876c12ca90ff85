/**
 * `POST /webhooks/stripe`: the raw body's signature is verified, the event is handled and committed with the
 * deliveries arriving at the same time (`gatherStripeEvent`: one set-based transaction per batch), and only then
 * is 200 sent, so Stripe retries anything not durable.
 *
 * The body MUST reach this handler as the raw bytes (a Buffer): mount `express.raw({ type: 'application/json' })`
 * on this path before the app's JSON parser; re-serialised JSON does not verify.
 *
 * Answers: 200 `{ received: true, eventId, outcome, duplicate }` (a duplicate is a 200 too, so Stripe stops
 * retrying); 400 `invalid_signature` (missing, malformed or non-matching Stripe-Signature, tampered body),
 * 400 `stale_signature` (older than the tolerance), 400 `invalid_payload` / `invalid_event` (authentic but
 * unreadable); 500 `webhook_not_configured` (no secret, or the body was not left raw). A store failure is an
 * ordinary 500 through the problem handler, and Stripe retries it. Nothing is stored on any 4xx.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ApiError, sendProblem } from '../api/problem.ts';
import type { RouteSpec } from '../api/routes.ts';
import { StripeEventError } from './stripe-events.ts';
import { verifyStripeWebhook, WebhookVerificationError } from './stripe-webhook.ts';
import { gatherStripeEvent } from './webhook-gather.ts';
import type { HandleResult, StripeEventHandlerDeps } from './webhook-handler.ts';

export const STRIPE_WEBHOOK_PATH = '/webhooks/stripe';
/** The webhook endpoint of one practice's Stripe account (its slug), verified with that practice's secret. */
export const STRIPE_PRACTICE_WEBHOOK_PATH = '/webhooks/stripe/{practice}';

export interface StripeWebhookRouteDeps extends StripeEventHandlerDeps {
  /** The endpoint signing secret(s), `whsec_…` (old and new during rotation; the sandbox secret in sandbox mode). */
  readonly secrets: string | readonly string[];
  /** Seconds; default Stripe's 300. */
  readonly toleranceSeconds?: number;
  /** Called after an event queued write-backs (committed), so delivery starts now rather than at its next run. */
  readonly onWritebacksQueued?: () => void;
}

/** The response body of a handled webhook. */
export interface StripeWebhookAck {
  received: true;
  eventId: string;
  outcome: HandleResult['outcome'];
  duplicate: boolean;
}

const FAILURE_CODES: Record<WebhookVerificationError['code'], [number, string]> = {
  'missing-header': [400, 'invalid_signature'],
  'malformed-header': [400, 'invalid_signature'],
  'bad-signature': [400, 'invalid_signature'],
  stale: [400, 'stale_signature'],
  'invalid-payload': [400, 'invalid_payload'],
  'no-secret': [500, 'webhook_not_configured'],
};

/**
 * Verifies and handles one delivery.
 * @throws ApiError (4xx, or 500 for misconfiguration) with nothing stored; store errors as they are.
 */
export async function processStripeWebhook(deps: StripeWebhookRouteDeps, rawBody: unknown, signature: string | undefined): Promise<StripeWebhookAck> {
  if (!Buffer.isBuffer(rawBody)) {
    throw new ApiError(500, 'webhook_not_configured', 'The webhook body was parsed before verification: mount express.raw({ type: "application/json" }) on this path before the JSON parser.');
  }
  let event;
  try {
    event = verifyStripeWebhook(rawBody, signature, { secrets: deps.secrets, clock: deps.clock, ...(deps.toleranceSeconds !== undefined ? { toleranceSeconds: deps.toleranceSeconds } : {}) });
  } catch (error) {
    if (error instanceof WebhookVerificationError) {
      const [status, code] = FAILURE_CODES[error.code];
      throw new ApiError(status, code, error.message);
    }
    throw error;
  }
  let result: HandleResult;
  try {
    result = await gatherStripeEvent(deps, event);
  } catch (error) {
    if (error instanceof StripeEventError) throw new ApiError(400, 'invalid_event', error.message);
    throw error;
  }
  if (result.writebacks.length > 0) deps.onWritebacksQueued?.();
  return webhookAck(result);
}

/** The acknowledgement of a handled event, as the webhook answers it. */
export function webhookAck(result: HandleResult): StripeWebhookAck {
  return { received: true, eventId: result.eventId, outcome: result.outcome, duplicate: result.outcome === 'duplicate' };
}

const ACK_SCHEMA = {
  type: 'object',
  required: ['received', 'eventId', 'outcome', 'duplicate'],
  properties: { received: { const: true }, eventId: { type: 'string' }, outcome: { type: 'string' }, duplicate: { type: 'boolean' } },
};

/**
 * The route declaration for `mountRoutes` (public: a signed webhook carries no API key; no JSON body schema).
 * @param path - {@link STRIPE_WEBHOOK_PATH}, or {@link STRIPE_PRACTICE_WEBHOOK_PATH} (the caller's handler picks the practice).
 */
export function stripeWebhookRoute(deps: StripeWebhookRouteDeps, path: typeof STRIPE_WEBHOOK_PATH | typeof STRIPE_PRACTICE_WEBHOOK_PATH = STRIPE_WEBHOOK_PATH): RouteSpec {
  const responses: RouteSpec['responses'] = {
    200: { description: 'The event is committed (or was already handled).', schema: ACK_SCHEMA },
    400: { description: 'invalid_signature, stale_signature, invalid_payload or invalid_event: nothing stored.', contentType: 'application/problem+json' },
  };
  if (path === STRIPE_PRACTICE_WEBHOOK_PATH) responses[404] = { description: 'unknown_webhook_endpoint: no secret is configured for this practice.', contentType: 'application/problem+json' };
  return {
    method: 'post',
    path,
    summary: path === STRIPE_WEBHOOK_PATH
      ? 'Stripe webhook: verified over the raw body, handled once per event id, committed before the 200'
      : 'Stripe webhook of one practice\'s Stripe account (its slug, its signing secret from STRIPE_WEBHOOK_SECRETS): verified over the raw body, handled once per event id, committed before the 200',
    tag: 'payments',
    access: 'public',
    responses,
    handler: ({ req }) => processStripeWebhook(deps, req.body, req.get('stripe-signature')),
  };
}

/** The same as a plain express handler (problems for 4xx; other errors go to `next`, i.e. the problem handler). */
export function stripeWebhookHandler(deps: StripeWebhookRouteDeps): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    processStripeWebhook(deps, req.body, req.get('stripe-signature')).then(
      (ack) => {
        res.status(200).json(ack);
      },
      (error: unknown) => {
        if (error instanceof ApiError) sendProblem(res, error.status, error.code, error.message, error.errors);
        else next(error);
      },
    );
  };
}
