/**
 * The one way Settle moves money: a `PaymentGateway`. Two implementations share this contract and the same
 * parameter builders (`checkout.ts`): Stripe (the official SDK; card data never touches Settle) and the sandbox
 * (no Stripe key configured: a clearly labelled stand-in whose events go through the same webhook route and
 * handler). Callers never branch on which one they hold.
 */
import type Stripe from 'stripe';
import type { StripeRequest } from './checkout.ts';
import type { StripeBalanceTransactionLike } from './reconcile.ts';

/** A Checkout Session the patient is sent to. */
export interface CheckoutSessionRef {
  readonly id: string;
  /** Where the pay page redirects the patient (Stripe's hosted page, or the sandbox checkout page). */
  readonly url: string;
}

/** How an off-session installment charge went. */
export type InstallmentChargeResult =
  | { readonly status: 'succeeded'; readonly paymentIntentId: string; readonly chargeId: string | null }
  | {
      readonly status: 'failed';
      readonly paymentIntentId: string | null;
      /** Stripe's error code: `card_declined`, `authentication_required`, `insufficient_funds`, … */
      readonly code: string;
      readonly declineCode: string | null;
      readonly message: string;
      /** A network or Stripe-side failure (retry the same request, same idempotency key), not a decline. */
      readonly transient: boolean;
    };

/** A refund Stripe (or the sandbox) accepted. */
export interface RefundRef {
  readonly id: string;
  readonly status: string;
}

/** Moves money for a practice. */
export interface PaymentGateway {
  /** True for the sandbox: pages say so, and nothing is charged. */
  readonly sandbox: boolean;
  createCheckoutSession(request: StripeRequest<Stripe.Checkout.SessionCreateParams>): Promise<CheckoutSessionRef>;
  chargeInstallment(request: StripeRequest<Stripe.PaymentIntentCreateParams>): Promise<InstallmentChargeResult>;
  refund(request: StripeRequest<Stripe.RefundCreateParams>): Promise<RefundRef>;
  /** Balance transactions created in [from, to), for daily reconciliation (empty in the sandbox). */
  listBalanceTransactions(window: { readonly from: Date; readonly to: Date }): AsyncIterable<StripeBalanceTransactionLike>;
}

/** The gateway of a practice: its own Stripe account, the default one, or the sandbox (`practiceGateways`). */
export type GatewayFor = (practiceId: string) => Promise<PaymentGateway>;
