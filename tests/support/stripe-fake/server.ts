/**
 * Stripe fake: an express server on loopback that the official `stripe` SDK talks to through
 * `new Stripe(key, { host: '127.0.0.1', port, protocol: 'http' })` (or `fake.client()`).
 *
 * Every request is recorded (method, path, headers, raw body, parsed parameters, the answer) and checked
 * against Stripe's official OpenAPI document (see `spec.ts`): an unknown path is a 404, an unknown parameter or
 * a wrong type a 400 shaped like Stripe's (`{ error: { type, code, param, message } }`). Valid requests get
 * Stripe's own example objects (`fixtures3.json`) adapted: fresh ids, the amounts, currency, URLs and metadata
 * that were sent.
 *
 * Implemented: POST/GET /v1/checkout/sessions[/{session}], POST /v1/checkout/sessions/{session}/expire,
 * POST/GET /v1/payment_intents[/{intent}] (off-session confirm with test payment methods), POST/GET /v1/refunds,
 * GET /v1/balance_transactions, GET /v1/events. Other valid operations answer 501 so a test notices.
 *
 * `Idempotency-Key` behaves like Stripe's: a POST with a key seen before and the same method, path and body
 * replays the first answer (status and body, header `Idempotent-Replayed: true`); with a different body it is a
 * 400 `idempotency_error`. As at Stripe, requests refused by parameter validation are not remembered.
 *
 * Test payment methods for `confirm=true`: `pm_card_visa` (and any other id) succeeds; `pm_card_chargeDeclined`
 * declines (402 `card_declined`); `pm_card_authenticationRequired` needs the customer (402
 * `authentication_required`); `pm_card_insufficientFunds` declines with `insufficient_funds`.
 * `failNextPaymentIntents(code, n)` forces the next confirmations to fail.
 *
 * `completeCheckoutSession(id)` plays the patient paying on Stripe's page: the session completes, a payment
 * intent, charge and balance transaction appear (and a customer with a saved card when
 * `setup_future_usage` was asked), and a `checkout.session.completed` event is queued (`events`, signable
 * with `signEvent`). Confirmations, refunds and `disputeCharge` / `closeDispute` queue their events too
 * (`payment_intent.succeeded` / `payment_failed`, `charge.refunded`, `charge.dispute.created` / `closed`).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Request, type Response } from 'express';
import qs from 'qs';
import Stripe from 'stripe';
import { systemClock, type Clock } from '../../../src/domain/clock.ts';
import { signStripePayload } from '../../../src/payments/stripe-webhook.ts';
import { matchOperation, NEWER_PARAMS, stripeFixture, validateParams, type MatchedOperation, type StripeParamError } from './spec.ts';

type Obj = Record<string, unknown>;

/** One request as the fake saw it. */
export interface RecordedStripeRequest {
  readonly method: string;
  readonly path: string;
  readonly rawQuery: string;
  readonly rawBody: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly idempotencyKey?: string;
  readonly operation?: string;
  /** The parameters after `qs` parsing and schema coercion. */
  params: Obj;
  unvalidated: Obj;
  valid: boolean;
  validationError?: StripeParamError;
  status?: number;
  response?: unknown;
  replayed?: boolean;
}

export interface StripeFakeOptions {
  /** For `created` timestamps and balance availability; default the system clock. */
  readonly clock?: Clock;
  /** API keys accepted (`Authorization: Bearer …`); default: any key starting `sk_test_`. */
  readonly apiKeys?: readonly string[];
  /** Parameters newer than the 2023 spec to let through (see `spec.ts`). */
  readonly newerParams?: Readonly<Record<string, readonly string[]>>;
  /** Webhook signing secret for `signEvent`. */
  readonly webhookSecret?: string;
}

export interface StripeFake {
  readonly url: string;
  readonly port: number;
  readonly requests: RecordedStripeRequest[];
  readonly events: Obj[];
  readonly objects: Map<string, Obj>;
  /** A `stripe` SDK client pointed at the fake (no network retries, so every request is one record). */
  client(apiKey?: string): Stripe;
  completeCheckoutSession(id: string, paymentMethod?: string): Obj;
  failNextPaymentIntents(code: 'card_declined' | 'authentication_required' | 'insufficient_funds', count?: number): void;
  /** The cardholder's bank disputes a charge: a dispute and a `charge.dispute.created` event. */
  disputeCharge(chargeId: string, reason?: string): Obj;
  /** The dispute ends (`won` or `lost`): `charge.dispute.closed`. */
  closeDispute(disputeId: string, status: 'won' | 'lost'): Obj;
  /** `{ payload, header }` for POSTing an event to a webhook endpoint, signed with `webhookSecret`. */
  signEvent(event: Obj, timestampSeconds?: number): { payload: string; header: string };
  close(): Promise<void>;
}

const PREFIXES: Record<string, string> = {
  'checkout.session': 'cs_test_',
  payment_intent: 'pi_',
  charge: 'ch_',
  refund: 're_',
  balance_transaction: 'txn_',
  customer: 'cus_',
  payment_method: 'pm_',
  event: 'evt_',
  dispute: 'dp_',
};

class StripeHttpError extends Error {
  readonly status: number;
  readonly body: { error: Obj };
  constructor(status: number, error: Obj) {
    super(String(error.message));
    this.status = status;
    this.body = { error };
  }
}

function missing(kind: string, id: string, param?: string): StripeHttpError {
  return new StripeHttpError(404, { type: 'invalid_request_error', code: 'resource_missing', message: `No such ${kind}: '${id}'`, ...(param ? { param } : {}) });
}

const DECLINES: Record<string, { code: string; decline_code?: string; message: string }> = {
  card_declined: { code: 'card_declined', decline_code: 'generic_decline', message: 'Your card was declined.' },
  insufficient_funds: { code: 'card_declined', decline_code: 'insufficient_funds', message: 'Your card has insufficient funds.' },
  authentication_required: { code: 'authentication_required', decline_code: 'authentication_required', message: 'Your card was declined. This transaction requires authentication.' },
};
const TEST_METHODS: Record<string, string> = {
  pm_card_chargeDeclined: 'card_declined',
  pm_card_insufficientFunds: 'insufficient_funds',
  pm_card_authenticationRequired: 'authentication_required',
};

/** Starts the fake on an ephemeral loopback port. */
export async function startStripeFake(options: StripeFakeOptions = {}): Promise<StripeFake> {
  const clock = options.clock ?? systemClock;
  const newer = options.newerParams ?? NEWER_PARAMS;
  const requests: RecordedStripeRequest[] = [];
  const events: Obj[] = [];
  const objects = new Map<string, Obj>();
  const idempotency = new Map<string, { fingerprint: string; status: number; body: unknown }>();
  const forcedFailures: string[] = [];
  let port = 0;

  const now = () => Math.floor(clock.now().getTime() / 1000);
  const newId = (object: string) => `${PREFIXES[object] ?? `${object}_`}${randomBytes(12).toString('base64url').replace(/[-_]/g, 'x')}`;
  const store = (object: Obj) => (objects.set(object.id as string, object), object);
  const get = (kind: string, id: string, param?: string): Obj => {
    const found = objects.get(id);
    if (!found || found.object !== kind) throw missing(kind, id, param);
    return found;
  };
  const queueEvent = (type: string, object: Obj): Obj => {
    const event = {
      ...stripeFixture('event'),
      id: newId('event'),
      type,
      created: now(),
      api_version: null,
      data: { object: structuredClone(object) },
      request: { id: null, idempotency_key: null },
    };
    events.push(event);
    return event;
  };

  function balanceTransaction(source: string, amount: number, currency: string, type: 'charge' | 'refund'): Obj {
    const fee = type === 'charge' ? Math.round(amount * 0.029) + 30 : 0;
    return store({
      ...stripeFixture('balance_transaction'),
      id: newId('balance_transaction'),
      amount,
      currency,
      fee,
      fee_details: fee ? [{ amount: fee, application: null, currency, description: 'Stripe processing fees', type: 'stripe_fee' }] : [],
      net: amount - fee,
      created: now(),
      available_on: now() + 2 * 86_400,
      description: null,
      reporting_category: type,
      type,
      source,
      status: 'pending',
    });
  }

  function charge(intent: Obj, paymentMethod: string): Obj {
    const id = newId('charge');
    const txn = balanceTransaction(id, intent.amount as number, intent.currency as string, 'charge');
    const base = stripeFixture('charge');
    return store({
      ...base,
      id,
      amount: intent.amount,
      amount_captured: intent.amount,
      amount_refunded: 0,
      balance_transaction: txn.id,
      billing_details: { address: { city: null, country: null, line1: null, line2: null, postal_code: null, state: null }, email: null, name: null, phone: null },
      captured: true,
      created: now(),
      currency: intent.currency,
      customer: intent.customer ?? null,
      description: intent.description ?? null,
      metadata: structuredClone(intent.metadata ?? {}),
      paid: true,
      payment_intent: intent.id,
      payment_method: paymentMethod,
      receipt_url: null,
      refunded: false,
      refunds: { object: 'list', data: [], has_more: false, total_count: 0, url: `/v1/charges/${id}/refunds` },
      status: 'succeeded',
    });
  }

  /** Confirms a payment intent with a payment method; throws a 402 card error on a decline. */
  function confirm(intent: Obj, paymentMethod: string): void {
    const failure = forcedFailures.shift() ?? TEST_METHODS[paymentMethod];
    intent.payment_method = paymentMethod;
    if (failure) {
      const decline = DECLINES[failure]!;
      const error = {
        type: 'card_error',
        code: decline.code,
        decline_code: decline.decline_code,
        message: decline.message,
        payment_method: { id: paymentMethod, object: 'payment_method', type: 'card' },
      };
      intent.status = failure === 'authentication_required' ? 'requires_action' : 'requires_payment_method';
      intent.last_payment_error = error;
      queueEvent('payment_intent.payment_failed', intent);
      throw new StripeHttpError(402, { ...error, payment_intent: structuredClone(intent) });
    }
    const ch = charge(intent, paymentMethod);
    Object.assign(intent, { status: 'succeeded', amount_received: intent.amount, latest_charge: ch.id, last_payment_error: null });
    queueEvent('payment_intent.succeeded', intent);
  }

  function createPaymentIntent(p: Obj): Obj {
    const intent = store({
      ...stripeFixture('payment_intent'),
      id: newId('payment_intent'),
      amount: p.amount,
      currency: String(p.currency).toLowerCase(),
      canceled_at: null,
      created: now(),
      customer: p.customer ?? null,
      description: p.description ?? null,
      metadata: (p.metadata as Obj | undefined) ?? {},
      payment_method: p.payment_method ?? null,
      setup_future_usage: p.setup_future_usage ?? null,
      status: p.payment_method ? 'requires_confirmation' : 'requires_payment_method',
    });
    intent.client_secret = `${intent.id}_secret_${randomBytes(8).toString('hex')}`;
    if (p.confirm === true) {
      if (!p.payment_method) {
        throw new StripeHttpError(400, { type: 'invalid_request_error', code: 'payment_intent_unexpected_state', message: 'You cannot confirm this PaymentIntent because it\'s missing a payment method.' });
      }
      confirm(intent, String(p.payment_method));
    }
    return intent;
  }

  function lineItemsTotal(p: Obj): number {
    const items = (p.line_items as Obj[] | undefined) ?? [];
    return items.reduce((sum, item) => {
      const price = item.price_data as Obj | undefined;
      return sum + (Number(price?.unit_amount ?? 0) * Number(item.quantity ?? 1));
    }, 0);
  }

  function createCheckoutSession(p: Obj): Obj {
    const id = newId('checkout.session');
    const items = (p.line_items as Obj[] | undefined) ?? [];
    const currency = (p.currency as string | undefined) ?? ((items[0]?.price_data as Obj | undefined)?.currency as string | undefined) ?? null;
    const total = lineItemsTotal(p);
    return store({
      ...stripeFixture('checkout.session'),
      id,
      amount_subtotal: total,
      amount_total: total,
      cancel_url: p.cancel_url ?? null,
      client_reference_id: p.client_reference_id ?? null,
      created: now(),
      currency,
      customer: p.customer ?? null,
      customer_creation: p.customer_creation ?? (p.mode === 'payment' ? 'if_required' : null),
      customer_details: null,
      customer_email: p.customer_email ?? null,
      expires_at: (p.expires_at as number | undefined) ?? now() + 86_400,
      locale: p.locale ?? null,
      metadata: (p.metadata as Obj | undefined) ?? {},
      mode: p.mode ?? 'payment',
      payment_intent: null,
      payment_method_types: (p.payment_method_types as string[] | undefined) ?? ['card'],
      payment_status: 'unpaid',
      status: 'open',
      success_url: p.success_url,
      url: `http://127.0.0.1:${port}/checkout/${id}`,
      // Not part of Stripe's object: kept so completion can honour them, stripped from answers.
      __payment_intent_data: p.payment_intent_data ?? {},
      __line_items: items,
    });
  }

  const publicView = (o: Obj): Obj => Object.fromEntries(Object.entries(o).filter(([k]) => !k.startsWith('__')));

  function completeCheckoutSession(id: string, paymentMethod = 'pm_card_visa'): Obj {
    const session = get('checkout.session', id);
    if (session.status !== 'open') throw new Error(`checkout session ${id} is ${String(session.status)}`);
    const pid = session.__payment_intent_data as Obj;
    let customer = session.customer as string | null;
    const saveCard = pid.setup_future_usage === 'off_session' || pid.setup_future_usage === 'on_session';
    if (!customer && saveCard) customer = store({ id: newId('customer'), object: 'customer', created: now(), metadata: {} }).id as string;
    const savedMethod = saveCard ? (store({ id: newId('payment_method'), object: 'payment_method', type: 'card', customer, card: { brand: 'visa', last4: '4242' } }).id as string) : paymentMethod;
    const intent = createPaymentIntent({
      amount: session.amount_total,
      currency: session.currency,
      customer,
      description: pid.description,
      metadata: pid.metadata ?? {},
      setup_future_usage: pid.setup_future_usage,
    });
    confirm(intent, saveCard ? (TEST_METHODS[paymentMethod] ? paymentMethod : savedMethod) : paymentMethod);
    Object.assign(session, { status: 'complete', payment_status: 'paid', payment_intent: intent.id, customer });
    return queueEvent('checkout.session.completed', publicView(session));
  }

  function refund(p: Obj): Obj {
    let ch: Obj;
    if (p.charge) ch = get('charge', String(p.charge), 'charge');
    else if (p.payment_intent) {
      const intent = get('payment_intent', String(p.payment_intent), 'payment_intent');
      if (!intent.latest_charge) {
        throw new StripeHttpError(400, { type: 'invalid_request_error', code: 'charge_not_refundable', message: `PaymentIntent ${String(intent.id)} does not have a successful charge to refund.` });
      }
      ch = get('charge', String(intent.latest_charge));
    } else {
      throw new StripeHttpError(400, { type: 'invalid_request_error', code: 'parameter_missing', message: 'One of the following params should be provided for this request: payment_intent or charge.' });
    }
    const left = (ch.amount as number) - (ch.amount_refunded as number);
    const amount = (p.amount as number | undefined) ?? left;
    if (amount > left || amount <= 0) {
      throw new StripeHttpError(400, { type: 'invalid_request_error', code: 'amount_too_large', param: 'amount', message: `Refund amount ($${(amount / 100).toFixed(2)}) is greater than unrefunded amount on charge ($${(left / 100).toFixed(2)})` });
    }
    const id = newId('refund');
    const txn = balanceTransaction(id, -amount, ch.currency as string, 'refund');
    const re = store({
      ...stripeFixture('refund'),
      id,
      amount,
      balance_transaction: txn.id,
      charge: ch.id,
      created: now(),
      currency: ch.currency,
      metadata: (p.metadata as Obj | undefined) ?? {},
      payment_intent: ch.payment_intent ?? null,
      reason: p.reason ?? null,
      status: 'succeeded',
    });
    ch.amount_refunded = (ch.amount_refunded as number) + amount;
    ch.refunded = ch.amount_refunded === ch.amount;
    queueEvent('charge.refunded', ch);
    return re;
  }

  function list(kind: string, url: string, q: Obj, filter: (o: Obj) => boolean = () => true): Obj {
    let all = [...objects.values()].filter((o) => o.object === kind && filter(o)).reverse(); // newest first
    const created = q.created;
    if (typeof created === 'number') all = all.filter((o) => o.created === created);
    else if (created && typeof created === 'object') {
      const r = created as Record<string, number>;
      all = all.filter((o) => {
        const c = o.created as number;
        return (r.gt === undefined || c > r.gt) && (r.gte === undefined || c >= r.gte) && (r.lt === undefined || c < r.lt) && (r.lte === undefined || c <= r.lte);
      });
    }
    if (typeof q.starting_after === 'string') {
      const at = all.findIndex((o) => o.id === q.starting_after);
      all = at < 0 ? [] : all.slice(at + 1);
    }
    const limit = Math.min(Math.max((q.limit as number | undefined) ?? 10, 1), 100);
    return { object: 'list', data: all.slice(0, limit).map(publicView), has_more: all.length > limit, url };
  }

  function handle(op: MatchedOperation, p: Obj): unknown {
    const id = (name: string) => op.pathParams[name]!;
    switch (op.key) {
      case 'POST /v1/checkout/sessions':
        return publicView(createCheckoutSession(p));
      case 'GET /v1/checkout/sessions/{session}':
        return publicView(get('checkout.session', id('session')));
      case 'GET /v1/checkout/sessions':
        return list('checkout.session', '/v1/checkout/sessions', p, (o) => p.payment_intent === undefined || o.payment_intent === p.payment_intent);
      case 'POST /v1/checkout/sessions/{session}/expire': {
        const session = get('checkout.session', id('session'));
        if (session.status !== 'open') throw new StripeHttpError(400, { type: 'invalid_request_error', message: `Only Checkout Sessions with a status in ["open"] can be expired. This Checkout Session has a status of "${String(session.status)}".` });
        session.status = 'expired';
        queueEvent('checkout.session.expired', publicView(session));
        return publicView(session);
      }
      case 'POST /v1/payment_intents':
        return createPaymentIntent(p);
      case 'GET /v1/payment_intents/{intent}':
        return get('payment_intent', id('intent'));
      case 'POST /v1/refunds':
        return refund(p);
      case 'GET /v1/refunds/{refund}':
        return get('refund', id('refund'));
      case 'GET /v1/refunds':
        return list('refund', '/v1/refunds', p);
      case 'GET /v1/balance_transactions':
        return list('balance_transaction', '/v1/balance_transactions', p, (o) => p.type === undefined || o.type === p.type);
      case 'GET /v1/events':
        return { object: 'list', data: [...events].reverse().slice(0, (p.limit as number | undefined) ?? 10), has_more: false, url: '/v1/events' };
      default:
        throw new StripeHttpError(501, { type: 'api_error', message: `The Stripe fake does not implement ${op.key} (the request itself is valid).` });
    }
  }

  const app = express();
  app.disable('x-powered-by');
  app.use(express.raw({ type: () => true, limit: '1mb' }));

  app.use((req: Request, res: Response) => {
    const rawBody = Buffer.isBuffer(req.body) ? req.body.toString('utf8') : '';
    const queryAt = req.originalUrl.indexOf('?');
    const rawQuery = queryAt < 0 ? '' : req.originalUrl.slice(queryAt + 1);
    const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : String(v)]));
    const idempotencyKey = req.get('idempotency-key') || undefined;
    const record: RecordedStripeRequest = { method: req.method, path: req.path, rawQuery, rawBody, headers, idempotencyKey, params: {}, unvalidated: {}, valid: false };
    requests.push(record);
    const answer = (status: number, body: unknown, replayed = false) => {
      record.status = status;
      record.response = body;
      record.replayed = replayed;
      res.set('Request-Id', `req_${randomBytes(7).toString('hex')}`);
      if (idempotencyKey) res.set('Idempotency-Key', idempotencyKey);
      if (replayed) res.set('Idempotent-Replayed', 'true');
      res.status(status).json(body);
    };

    const auth = req.get('authorization') ?? '';
    const key = auth.startsWith('Bearer ') ? auth.slice(7) : '';
    const keyOk = options.apiKeys ? options.apiKeys.includes(key) : key.startsWith('sk_test_');
    if (!keyOk) {
      return answer(401, { error: { type: 'invalid_request_error', message: key ? `Invalid API Key provided: ${key.slice(0, 8)}****` : 'You did not provide an API key.' } });
    }

    const op = matchOperation(req.method, req.path);
    if (!op) return answer(404, { error: { type: 'invalid_request_error', message: `Unrecognized request URL (${req.method}: ${req.path}).` } });
    Object.assign(record, { operation: op.operationId });

    const parseOptions = { depth: 20, arrayLimit: 1000, parameterLimit: 10_000, allowDots: false };
    const parsed = (req.method === 'GET' || req.method === 'DELETE' ? qs.parse(rawQuery, parseOptions) : qs.parse(rawBody, parseOptions)) as Obj;
    const validation = validateParams(op, parsed, newer, req.get('stripe-version'));
    Object.assign(record, { params: validation.params, unvalidated: validation.unvalidated, valid: validation.ok, validationError: validation.error });
    // Stripe does not remember idempotent requests refused by validation.
    if (!validation.ok) return answer(400, { error: validation.error });

    const fingerprint = createHash('sha256').update(`${req.method} ${req.path}\n${rawBody}`).digest('hex');
    if (idempotencyKey && req.method === 'POST') {
      const seen = idempotency.get(idempotencyKey);
      if (seen) {
        if (seen.fingerprint !== fingerprint) {
          return answer(400, {
            error: {
              type: 'idempotency_error',
              message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${idempotencyKey}' if you meant to execute a different request.`,
            },
          });
        }
        return answer(seen.status, structuredClone(seen.body), true);
      }
    }
    let status = 200;
    let body: unknown;
    try {
      body = handle(op, validation.params);
    } catch (error) {
      if (!(error instanceof StripeHttpError)) throw error;
      status = error.status;
      body = error.body;
    }
    if (idempotencyKey && req.method === 'POST' && status !== 501) idempotency.set(idempotencyKey, { fingerprint, status, body: structuredClone(body) });
    answer(status, body);
  });

  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    events,
    objects,
    client: (apiKey = 'sk_test_settle_fake') => new Stripe(apiKey, { host: '127.0.0.1', port, protocol: 'http', maxNetworkRetries: 0 }),
    completeCheckoutSession,
    failNextPaymentIntents(code, count = 1) {
      for (let i = 0; i < count; i++) forcedFailures.push(code);
    },
    disputeCharge(chargeId, reason = 'general') {
      const ch = get('charge', chargeId);
      ch.disputed = true;
      const dispute = store({
        ...stripeFixture('dispute'),
        id: newId('dispute'),
        amount: ch.amount,
        currency: ch.currency,
        charge: ch.id,
        payment_intent: ch.payment_intent ?? null,
        created: now(),
        reason,
        status: 'needs_response',
        metadata: {},
      });
      return queueEvent('charge.dispute.created', dispute);
    },
    closeDispute(disputeId, status) {
      const dispute = get('dispute', disputeId);
      dispute.status = status;
      return queueEvent('charge.dispute.closed', dispute);
    },
    signEvent(event, timestampSeconds = now()) {
      const payload = JSON.stringify(event, null, 2);
      return { payload, header: signStripePayload(payload, timestampSeconds, options.webhookSecret ?? 'whsec_settle_fake') };
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
