/**
 * Stripe request parameters built from Settle's domain, with idempotency keys derived from Settle's ids.
 *
 * PHI minimum necessary: Stripe receives amounts, currency, URLs and opaque Settle ids only. The builders take
 * no name, email, phone, address, birth date or statement detail, so none can leak; ids are checked to look
 * opaque (`[A-Za-z0-9_-]`, ≤ 64 characters). Which balances a payment pays stays in Settle (the payment row
 * keyed by `settle_payment_id`), not in Stripe metadata: a guarantor may have dozens of open balances and
 * metadata values stop at 500 characters. Card data never touches Settle (PCI SAQ-A): the patient types it
 * on Stripe's Checkout page.
 */
import type Stripe from 'stripe';
import type { Money } from '../domain/money.ts';

/** Why parameters cannot be built. */
export class CheckoutParamsError extends Error {
  readonly code: 'not-opaque' | 'invalid-amount' | 'invalid-url' | 'invalid-attempt';
  constructor(code: CheckoutParamsError['code'], message: string) {
    super(message);
    this.name = 'CheckoutParamsError';
    this.code = code;
  }
}

const OPAQUE = /^[A-Za-z0-9_-]{1,64}$/;

/** @throws CheckoutParamsError unless the id is opaque-looking (`[A-Za-z0-9_-]{1,64}`: no spaces, `@`, `+`, `/`). */
export function assertOpaqueId(what: string, id: string): string {
  if (typeof id !== 'string' || !OPAQUE.test(id)) throw new CheckoutParamsError('not-opaque', `${what} must be an opaque id ([A-Za-z0-9_-], at most 64 characters)`);
  return id;
}

function assertAmount(amount: Money): void {
  if (!Number.isSafeInteger(amount.amount) || amount.amount <= 0) throw new CheckoutParamsError('invalid-amount', 'the amount must be a positive integer number of minor units');
  if (!/^[A-Z]{3}$/.test(amount.currency)) throw new CheckoutParamsError('invalid-amount', 'the currency must be an ISO 4217 code');
}

function assertUrl(what: string, url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CheckoutParamsError('invalid-url', `${what} is not an absolute URL`);
  }
  const loopback = parsed.hostname === '127.0.0.1' || parsed.hostname === 'localhost';
  if (parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && loopback)) throw new CheckoutParamsError('invalid-url', `${what} must be https (http only on loopback)`);
}

/** Metadata keys Settle writes; webhook handlers read them back. */
export const METADATA = {
  paymentId: 'settle_payment_id',
  guarantorId: 'settle_guarantor_id',
  planId: 'settle_plan_id',
  installment: 'settle_installment',
  attempt: 'settle_attempt',
  refundId: 'settle_refund_id',
} as const;

/** What the pay page asks Stripe Checkout for. */
export interface CheckoutInput {
  /** Settle's payment id for this attempt: the idempotency anchor and the key webhooks resolve. */
  readonly paymentId: string;
  readonly guarantorId: string;
  /** What is charged now: the amount chosen, or a plan's first installment. */
  readonly amount: Money;
  /** Where Stripe sends the patient; `{CHECKOUT_SESSION_ID}` is filled in by Stripe. No pay-link token, no PHI. */
  readonly successUrl: string;
  readonly cancelUrl: string;
  /** When the patient chose a plan: the card is saved for off-session installments. */
  readonly plan?: { readonly planId: string };
  /** The pay page's language. */
  readonly locale?: 'en' | 'es';
  /** When the session stops accepting payment (Stripe allows 30 minutes to 24 hours ahead). */
  readonly expiresAt?: Date;
}

const LABELS = {
  en: { full: 'Account balance payment', plan: 'Payment plan: first installment' },
  es: { full: 'Pago del saldo de la cuenta', plan: 'Plan de pagos: primera cuota' },
} as const;

/** Parameters plus the idempotency key for one Stripe request. */
export interface StripeRequest<P> {
  readonly params: P;
  readonly idempotencyKey: string;
}

/**
 * Checkout Session parameters for a payment. The idempotency key is `settle-checkout-<paymentId>`: a double tap
 * on "Pay" (or a retried request) returns the same session; a new attempt gets a new payment id.
 * The line item is generic ("Account balance payment"): never a diagnosis, procedure or provider.
 */
export function checkoutSessionParams(input: CheckoutInput): StripeRequest<Stripe.Checkout.SessionCreateParams> {
  const paymentId = assertOpaqueId('paymentId', input.paymentId);
  const guarantorId = assertOpaqueId('guarantorId', input.guarantorId);
  const planId = input.plan ? assertOpaqueId('planId', input.plan.planId) : undefined;
  assertAmount(input.amount);
  assertUrl('successUrl', input.successUrl);
  assertUrl('cancelUrl', input.cancelUrl);
  const locale = input.locale ?? 'en';
  const metadata: Record<string, string> = { [METADATA.paymentId]: paymentId, [METADATA.guarantorId]: guarantorId };
  if (planId) metadata[METADATA.planId] = planId;
  // Assigned property by property so that tsc checks every name against the SDK's (current API version) types,
  // while the Stripe fake checks the request against Stripe's published OpenAPI document.
  const params: Stripe.Checkout.SessionCreateParams = {
    mode: 'payment',
    success_url: input.successUrl,
    cancel_url: input.cancelUrl,
    client_reference_id: paymentId,
    locale,
    submit_type: 'pay',
    line_items: [
      {
        quantity: 1,
        price_data: {
          currency: input.amount.currency.toLowerCase(),
          unit_amount: input.amount.amount,
          product_data: { name: LABELS[locale][planId ? 'plan' : 'full'] },
        },
      },
    ],
    metadata,
    // The payment intent carries the same ids, so payment_intent.* and charge.* events resolve too.
    payment_intent_data: { metadata: { ...metadata } },
  };
  if (planId) {
    // Saves the payment method for off-session installments; Checkout then offers only methods that can be
    // reused off-session. (`payment_method_types` is gone from the API version the SDK pins: not sent.)
    params.payment_intent_data!.setup_future_usage = 'off_session';
    params.customer_creation = 'always';
  }
  if (input.expiresAt) params.expires_at = Math.floor(input.expiresAt.getTime() / 1000);
  return { params, idempotencyKey: `settle-checkout-${paymentId}` };
}

/** One off-session installment charge of a plan. */
export interface InstallmentChargeInput {
  readonly paymentId: string;
  readonly guarantorId: string;
  readonly planId: string;
  readonly installment: number;
  /** 1 for the scheduled charge, 2.. for retries: each attempt is its own request, so a retry is never a replay of the decline. */
  readonly attempt: number;
  readonly amount: Money;
  /** Stripe customer and saved payment method from the completed Checkout (opaque Stripe ids). */
  readonly customer: string;
  readonly paymentMethod: string;
}

/**
 * PaymentIntent parameters for an installment: `off_session` + `confirm`, idempotency key
 * `settle-plan-<planId>-i<n>-a<attempt>` (an Agenda job run twice charges once; a retry charges again).
 */
export function installmentChargeParams(input: InstallmentChargeInput): StripeRequest<Stripe.PaymentIntentCreateParams> {
  const planId = assertOpaqueId('planId', input.planId);
  const paymentId = assertOpaqueId('paymentId', input.paymentId);
  const guarantorId = assertOpaqueId('guarantorId', input.guarantorId);
  assertOpaqueId('customer', input.customer);
  assertOpaqueId('paymentMethod', input.paymentMethod);
  assertAmount(input.amount);
  for (const [what, n] of [['installment', input.installment], ['attempt', input.attempt]] as const) {
    if (!Number.isSafeInteger(n) || n < 1) throw new CheckoutParamsError('invalid-attempt', `${what} must be a positive integer`);
  }
  return {
    params: {
      amount: input.amount.amount,
      currency: input.amount.currency.toLowerCase(),
      customer: input.customer,
      payment_method: input.paymentMethod,
      off_session: true,
      confirm: true,
      metadata: {
        [METADATA.paymentId]: paymentId,
        [METADATA.guarantorId]: guarantorId,
        [METADATA.planId]: planId,
        [METADATA.installment]: String(input.installment),
        [METADATA.attempt]: String(input.attempt),
      },
    },
    idempotencyKey: `settle-plan-${planId}-i${input.installment}-a${input.attempt}`,
  };
}

/** A refund started from the API or CLI. */
export interface RefundInput {
  readonly refundId: string;
  /** The Stripe payment intent of the payment being refunded. */
  readonly paymentIntent: string;
  /** Omitted: the whole remaining amount. */
  readonly amount?: Money;
  readonly reason?: 'duplicate' | 'requested_by_customer';
}

/** Refund parameters, idempotency key `settle-refund-<refundId>`. */
export function refundParams(input: RefundInput): StripeRequest<Stripe.RefundCreateParams> {
  const refundId = assertOpaqueId('refundId', input.refundId);
  assertOpaqueId('paymentIntent', input.paymentIntent);
  if (input.amount) assertAmount(input.amount);
  return {
    params: {
      payment_intent: input.paymentIntent,
      ...(input.amount ? { amount: input.amount.amount } : {}),
      ...(input.reason ? { reason: input.reason } : {}),
      metadata: { [METADATA.refundId]: refundId },
    },
    idempotencyKey: `settle-refund-${refundId}`,
  };
}
