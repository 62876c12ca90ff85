/**
 * Verified Stripe events → what Settle must do, pure (no store, no I/O). The webhook route verifies the
 * signature (`stripe-webhook.ts`), commits the event id (idempotency: each event id handled once), then applies
 * the command this module returns.
 *
 * Stripe sends both `checkout.session.completed` and `payment_intent.succeeded` for one Checkout payment, and may
 * deliver them in either order: both carry `settle_payment_id` (Checkout copies `payment_intent_data.metadata`
 * to the intent), so the ledger must post a payment keyed by that payment id, once, whichever arrives first.
 * Refund and dispute amounts are Stripe's cumulative/total figures; the handler posts the difference from what
 * it has already recorded.
 */
import { money, type Money } from '../domain/money.ts';
import { METADATA } from './checkout.ts';
import type { StripeEventEnvelope } from './stripe-webhook.ts';

type Obj = Record<string, unknown>;

/** The Settle ids a Stripe object carries in its metadata (absent when the object was not made by Settle). */
export interface SettleRefs {
  readonly paymentId?: string;
  readonly guarantorId?: string;
  readonly planId?: string;
  readonly installment?: number;
  readonly attempt?: number;
}

export type StripeEventCommand =
  | {
      readonly kind: 'checkout-completed';
      readonly eventId: string;
      readonly refs: SettleRefs;
      readonly checkoutSession: string;
      readonly paymentIntent?: string;
      readonly customer?: string;
      /** `payment_status === 'paid'`: post the payment now (keyed by payment id). */
      readonly paid: boolean;
      readonly amount?: Money;
    }
  | {
      readonly kind: 'checkout-expired';
      readonly eventId: string;
      readonly refs: SettleRefs;
      readonly checkoutSession: string;
    }
  | {
      readonly kind: 'payment-succeeded';
      readonly eventId: string;
      readonly refs: SettleRefs;
      readonly paymentIntent: string;
      readonly amount: Money;
      readonly customer?: string;
      /** For a plan: the saved card the next installments are charged to. */
      readonly paymentMethod?: string;
      readonly charge?: string;
    }
  | {
      readonly kind: 'payment-failed';
      readonly eventId: string;
      readonly refs: SettleRefs;
      readonly paymentIntent: string;
      /** Stripe's `last_payment_error.code` (`card_declined`, `authentication_required`, …). */
      readonly code?: string;
      readonly declineCode?: string;
    }
  | {
      readonly kind: 'refunded';
      readonly eventId: string;
      readonly refs: SettleRefs;
      readonly charge: string;
      readonly paymentIntent?: string;
      /** Everything refunded on the charge so far (cumulative). */
      readonly amountRefunded: Money;
      readonly fullyRefunded: boolean;
    }
  | {
      readonly kind: 'dispute-opened' | 'dispute-closed';
      readonly eventId: string;
      readonly dispute: string;
      readonly charge: string;
      readonly paymentIntent?: string;
      readonly amount: Money;
      /** Stripe's dispute status (`needs_response`, `won`, `lost`, …). */
      readonly status: string;
    }
  | { readonly kind: 'ignored'; readonly eventId: string; readonly type: string; readonly reason: string };

/** A Stripe event Settle cannot read (a handled type whose object lacks what Settle needs). */
export class StripeEventError extends Error {
  readonly eventId: string;
  constructor(eventId: string, message: string) {
    super(message);
    this.name = 'StripeEventError';
    this.eventId = eventId;
  }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
/** An expandable field: the id, whether Stripe sent the id or the expanded object. */
const ref = (v: unknown): string | undefined => str(v) ?? (v && typeof v === 'object' ? str((v as Obj).id) : undefined);
const int = (v: unknown): number | undefined => (typeof v === 'string' && /^\d{1,9}$/.test(v) ? Number(v) : undefined);

/** Reads Settle's ids from Stripe metadata. */
export function settleRefs(metadata: unknown): SettleRefs {
  const m = (metadata && typeof metadata === 'object' ? metadata : {}) as Obj;
  const refs: { -readonly [K in keyof SettleRefs]: SettleRefs[K] } = {};
  const paymentId = str(m[METADATA.paymentId]), guarantorId = str(m[METADATA.guarantorId]), planId = str(m[METADATA.planId]);
  const installment = int(m[METADATA.installment]), attempt = int(m[METADATA.attempt]);
  if (paymentId) refs.paymentId = paymentId;
  if (guarantorId) refs.guarantorId = guarantorId;
  if (planId) refs.planId = planId;
  if (installment !== undefined) refs.installment = installment;
  if (attempt !== undefined) refs.attempt = attempt;
  return refs;
}

function amountOf(event: StripeEventEnvelope, amount: unknown, currency: unknown): Money {
  if (typeof amount !== 'number' || typeof currency !== 'string') throw new StripeEventError(event.id, `${event.type} ${event.id} has no amount or currency`);
  return money(amount, currency.toUpperCase());
}

function object(event: StripeEventEnvelope): Obj {
  const o = event.data?.object;
  if (!o || typeof o !== 'object') throw new StripeEventError(event.id, `${event.type} ${event.id} has no data.object`);
  return o;
}

function required(event: StripeEventEnvelope, value: string | undefined, what: string): string {
  if (!value) throw new StripeEventError(event.id, `${event.type} ${event.id} has no ${what}`);
  return value;
}

/**
 * The command for a verified event. Events for objects Settle did not create (no `settle_payment_id`) are
 * `ignored` for payments; refunds and disputes are returned anyway (they reference a charge Settle may know).
 * @throws StripeEventError for a handled type whose object is missing what Settle needs (answer 400, keep the event).
 */
export function commandForEvent(event: StripeEventEnvelope): StripeEventCommand {
  const eventId = event.id;
  switch (event.type) {
    case 'checkout.session.completed':
    case 'checkout.session.async_payment_succeeded': {
      const o = object(event);
      const refs = settleRefs(o.metadata);
      if (!refs.paymentId) return { kind: 'ignored', eventId, type: event.type, reason: 'not a Settle checkout session' };
      const paymentIntent = ref(o.payment_intent), customer = ref(o.customer);
      return {
        kind: 'checkout-completed',
        eventId,
        refs,
        checkoutSession: required(event, str(o.id), 'session id'),
        ...(paymentIntent ? { paymentIntent } : {}),
        ...(customer ? { customer } : {}),
        paid: o.payment_status === 'paid',
        ...(typeof o.amount_total === 'number' ? { amount: amountOf(event, o.amount_total, o.currency) } : {}),
      };
    }
    case 'checkout.session.expired': {
      const o = object(event);
      const refs = settleRefs(o.metadata);
      if (!refs.paymentId) return { kind: 'ignored', eventId, type: event.type, reason: 'not a Settle checkout session' };
      return { kind: 'checkout-expired', eventId, refs, checkoutSession: required(event, str(o.id), 'session id') };
    }
    case 'payment_intent.succeeded': {
      const o = object(event);
      const refs = settleRefs(o.metadata);
      if (!refs.paymentId) return { kind: 'ignored', eventId, type: event.type, reason: 'not a Settle payment intent' };
      const customer = ref(o.customer), paymentMethod = ref(o.payment_method), charge = ref(o.latest_charge);
      return {
        kind: 'payment-succeeded',
        eventId,
        refs,
        paymentIntent: required(event, str(o.id), 'payment intent id'),
        amount: amountOf(event, o.amount_received ?? o.amount, o.currency),
        ...(customer ? { customer } : {}),
        ...(paymentMethod ? { paymentMethod } : {}),
        ...(charge ? { charge } : {}),
      };
    }
    case 'payment_intent.payment_failed': {
      const o = object(event);
      const refs = settleRefs(o.metadata);
      if (!refs.paymentId) return { kind: 'ignored', eventId, type: event.type, reason: 'not a Settle payment intent' };
      const error = (o.last_payment_error && typeof o.last_payment_error === 'object' ? o.last_payment_error : {}) as Obj;
      const code = str(error.code), declineCode = str(error.decline_code);
      return {
        kind: 'payment-failed',
        eventId,
        refs,
        paymentIntent: required(event, str(o.id), 'payment intent id'),
        ...(code ? { code } : {}),
        ...(declineCode ? { declineCode } : {}),
      };
    }
    case 'charge.refunded': {
      const o = object(event);
      const paymentIntent = ref(o.payment_intent);
      const amountRefunded = amountOf(event, o.amount_refunded, o.currency);
      return {
        kind: 'refunded',
        eventId,
        refs: settleRefs(o.metadata),
        charge: required(event, str(o.id), 'charge id'),
        ...(paymentIntent ? { paymentIntent } : {}),
        amountRefunded,
        fullyRefunded: o.refunded === true || amountRefunded.amount === o.amount,
      };
    }
    case 'charge.dispute.created':
    case 'charge.dispute.closed': {
      const o = object(event);
      const paymentIntent = ref(o.payment_intent);
      return {
        kind: event.type === 'charge.dispute.created' ? 'dispute-opened' : 'dispute-closed',
        eventId,
        dispute: required(event, str(o.id), 'dispute id'),
        charge: required(event, ref(o.charge), 'charge'),
        ...(paymentIntent ? { paymentIntent } : {}),
        amount: amountOf(event, o.amount, o.currency),
        status: required(event, str(o.status), 'status'),
      };
    }
    default:
      return { kind: 'ignored', eventId, type: event.type, reason: 'event type not handled' };
  }
}
