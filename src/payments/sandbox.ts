/**
 * Sandbox payments, for when no Stripe key is configured: a clearly labelled stand-in for Stripe Checkout and
 * off-session charges that produces Stripe-shaped events, signed with the sandbox webhook secret, so they go
 * through the same webhook route, verifier and handler as real ones and the whole loop runs on a fresh machine.
 *
 * Stateless and deterministic: ids derive from the request's idempotency key, so a repeated request yields the
 * same session and the same event ids (the handler's once-per-event-id rule applies unchanged). Every id
 * carries `sandbox` and `livemode` is false, so sandbox money can never be mistaken for real money.
 */
import { createHash } from 'node:crypto';
import type Stripe from 'stripe';
import type { Clock } from '../domain/clock.ts';
import type { StripeRequest } from './checkout.ts';
import { signStripePayload, type StripeEventEnvelope } from './stripe-webhook.ts';

type Obj = Record<string, unknown>;

/** The signing secret for sandbox events when none is configured (sandbox events are not secret). */
export const SANDBOX_WEBHOOK_SECRET = 'whsec_settle_sandbox';

const digest = (...parts: string[]) => createHash('sha256').update(parts.join('\0')).digest('base64url').replace(/[-_]/g, 'x').slice(0, 24);
const seconds = (clock: Clock) => Math.floor(clock.now().getTime() / 1000);

/** A sandbox Checkout Session (the subset of Stripe's object Settle reads, same names). */
export interface SandboxSession {
  readonly id: string;
  readonly object: 'checkout.session';
  readonly livemode: false;
  readonly mode: 'payment';
  readonly status: 'open';
  readonly payment_status: 'unpaid';
  readonly amount_total: number;
  readonly currency: string;
  readonly metadata: Record<string, string>;
  readonly client_reference_id: string | null;
  readonly success_url: string;
  readonly cancel_url: string | null;
  readonly url: string;
  readonly created: number;
  readonly expires_at: number;
  /** Kept to complete the session like Checkout would. */
  readonly payment_intent_data: { readonly metadata: Record<string, string>; readonly setup_future_usage: string | null };
}

/** Why the sandbox refuses a request (as Stripe would refuse it). */
export class SandboxError extends Error {
  readonly code: string;
  readonly declineCode: string | undefined;
  /** The payment intent a declined charge left behind (Stripe puts it on the card error too). */
  readonly paymentIntent: Obj | undefined;
  readonly events: readonly StripeEventEnvelope[];
  constructor(code: string, message: string, extra: { declineCode?: string; paymentIntent?: Obj; events?: StripeEventEnvelope[] } = {}) {
    super(message);
    this.name = 'SandboxError';
    this.code = code;
    this.declineCode = extra.declineCode;
    this.paymentIntent = extra.paymentIntent;
    this.events = extra.events ?? [];
  }
}

/**
 * A sandbox session for the parameters `checkoutSessionParams` built; the pay page links to
 * `<baseUrl>/sandbox/checkout/<id>`, a page that says "Sandbox: no real payment" and offers pay / decline.
 */
export function createSandboxSession(request: StripeRequest<Stripe.Checkout.SessionCreateParams>, options: { clock: Clock; baseUrl: string }): SandboxSession {
  const p = request.params;
  const items = p.line_items ?? [];
  const currency = items[0]?.price_data?.currency ?? p.currency;
  if (!currency) throw new SandboxError('parameter_missing', 'a line item with price_data.currency is required');
  const amount = items.reduce((sum, item) => sum + (item.price_data?.unit_amount ?? 0) * (item.quantity ?? 1), 0);
  if (!Number.isSafeInteger(amount) || amount <= 0) throw new SandboxError('parameter_invalid_integer', 'the line items must add up to a positive integer amount');
  if (!p.success_url) throw new SandboxError('parameter_missing', 'success_url is required');
  const id = `cs_sandbox_${digest('session', request.idempotencyKey)}`;
  const created = seconds(options.clock);
  return {
    id,
    object: 'checkout.session',
    livemode: false,
    mode: 'payment',
    status: 'open',
    payment_status: 'unpaid',
    amount_total: amount,
    currency,
    metadata: { ...(p.metadata as Record<string, string> | undefined) },
    client_reference_id: p.client_reference_id ?? null,
    success_url: p.success_url,
    cancel_url: p.cancel_url ?? null,
    url: `${options.baseUrl.replace(/\/+$/, '')}/sandbox/checkout/${id}`,
    created,
    expires_at: p.expires_at ?? created + 86_400,
    payment_intent_data: {
      metadata: { ...(p.payment_intent_data?.metadata as Record<string, string> | undefined) },
      setup_future_usage: p.payment_intent_data?.setup_future_usage ?? null,
    },
  };
}

function event(type: string, object: Obj, clock: Clock, key: string): StripeEventEnvelope {
  return {
    id: `evt_sandbox_${digest('event', type, key)}`,
    object: 'event',
    api_version: null,
    created: seconds(clock),
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type,
    data: { object },
  };
}

export type SandboxOutcome = 'succeeded' | 'card_declined' | 'authentication_required';

function intentFor(key: string, amount: number, currency: string, metadata: Record<string, string>, customer: string | null, paymentMethod: string, clock: Clock, setupFutureUsage: string | null): Obj {
  return {
    id: `pi_sandbox_${digest('intent', key)}`,
    object: 'payment_intent',
    livemode: false,
    amount,
    amount_received: 0,
    currency,
    customer,
    metadata,
    payment_method: paymentMethod,
    setup_future_usage: setupFutureUsage,
    created: seconds(clock),
    status: 'requires_payment_method',
    latest_charge: null,
    last_payment_error: null,
  };
}

function settle(intent: Obj, outcome: SandboxOutcome, clock: Clock, key: string): { intent: Obj; events: StripeEventEnvelope[] } {
  if (outcome !== 'succeeded') {
    const error = outcome === 'card_declined'
      ? { type: 'card_error', code: 'card_declined', decline_code: 'generic_decline', message: 'Your card was declined.' }
      : { type: 'card_error', code: 'authentication_required', decline_code: 'authentication_required', message: 'This transaction requires authentication.' };
    const failed = { ...intent, status: outcome === 'authentication_required' ? 'requires_action' : 'requires_payment_method', last_payment_error: error };
    return { intent: failed, events: [event('payment_intent.payment_failed', failed, clock, key)] };
  }
  const charge = `ch_sandbox_${digest('charge', key)}`;
  const paid = { ...intent, status: 'succeeded', amount_received: intent.amount, latest_charge: charge };
  return { intent: paid, events: [event('payment_intent.succeeded', paid, clock, key)] };
}

/**
 * The patient "pays" on the sandbox checkout page: the events Stripe would send (`payment_intent.succeeded`
 * then `checkout.session.completed`, or `payment_intent.payment_failed` for a declined test card, with the
 * session left open). With `setup_future_usage` a sandbox customer and saved card are named in them.
 */
export function completeSandboxSession(session: SandboxSession, options: { clock: Clock; outcome?: SandboxOutcome }): StripeEventEnvelope[] {
  const outcome = options.outcome ?? 'succeeded';
  const saves = session.payment_intent_data.setup_future_usage !== null;
  const customer = saves ? `cus_sandbox_${digest('customer', session.id)}` : null;
  const paymentMethod = `pm_sandbox_${digest('card', session.id)}`;
  const key = `${session.id}/${outcome}`;
  const intent = intentFor(key, session.amount_total, session.currency, session.payment_intent_data.metadata, customer, paymentMethod, options.clock, session.payment_intent_data.setup_future_usage);
  const settled = settle(intent, outcome, options.clock, key);
  if (outcome !== 'succeeded') return settled.events;
  const completed = { ...session, status: 'complete', payment_status: 'paid', payment_intent: settled.intent.id, customer } as Obj;
  delete completed.payment_intent_data;
  return [...settled.events, event('checkout.session.completed', completed, options.clock, key)];
}

/**
 * An off-session installment charge in the sandbox (`installmentChargeParams`' request): the payment intent
 * and its events, or a SandboxError shaped like Stripe's card error (with the failure event) when `outcome`
 * declines. Deterministic in the idempotency key, like Stripe's replay.
 */
export function sandboxCharge(
  request: StripeRequest<Stripe.PaymentIntentCreateParams>,
  options: { clock: Clock; outcome?: SandboxOutcome },
): { paymentIntent: Obj; events: StripeEventEnvelope[] } {
  const p = request.params;
  if (!Number.isSafeInteger(p.amount) || p.amount <= 0) throw new SandboxError('parameter_invalid_integer', 'amount must be a positive integer');
  const intent = intentFor(request.idempotencyKey, p.amount, p.currency, { ...(p.metadata as Record<string, string> | undefined) }, (p.customer as string | undefined) ?? null, String(p.payment_method ?? ''), options.clock, null);
  const settled = settle(intent, options.outcome ?? 'succeeded', options.clock, request.idempotencyKey);
  if (settled.intent.status !== 'succeeded') {
    const error = settled.intent.last_payment_error as { code: string; decline_code: string; message: string };
    throw new SandboxError(error.code, error.message, { declineCode: error.decline_code, paymentIntent: settled.intent, events: settled.events });
  }
  return { paymentIntent: settled.intent, events: settled.events };
}

/** The raw body and `Stripe-Signature` header to deliver a sandbox event to Settle's own webhook route. */
export function signSandboxEvent(evt: StripeEventEnvelope, options: { clock: Clock; secret?: string }): { payload: string; header: string } {
  const payload = JSON.stringify(evt);
  return { payload, header: signStripePayload(payload, seconds(options.clock), options.secret ?? SANDBOX_WEBHOOK_SECRET) };
}
