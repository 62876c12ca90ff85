/**
 * Starting a checkout: the one way a payment attempt begins, whoever starts it (the pay page, the demo's
 * patients). A pending payment gets Settle's opaque id, the Checkout parameters and idempotency key are built from
 * it, the gateway (Stripe or the sandbox) opens the session, and the session id is kept on the payment so its
 * webhooks resolve.
 */
import type Stripe from 'stripe';
import type { Clock } from '../domain/clock.ts';
import type { Money } from '../domain/money.ts';
import type { Database } from '../store/database.ts';
import { PaymentRepository } from '../store/payments.ts';
import { checkoutSessionParams, type StripeRequest } from './checkout.ts';
import type { CheckoutSessionRef, PaymentGateway } from './gateway.ts';

/** What to charge and for which balances. */
export interface CheckoutStart {
  readonly practiceId: string;
  readonly guarantorId: string;
  readonly balanceIds: readonly string[];
  /** What is charged now: the amount chosen, or a plan's first installment. */
  readonly amount: Money;
  /** Where the patient lands afterwards: `<baseUrl>/pay/complete` or `/pay/cancelled`. */
  readonly baseUrl: string;
  readonly locale?: 'en' | 'es';
  readonly plan?: { readonly planId: string };
}

/** A started checkout. */
export interface StartedCheckout {
  readonly paymentId: string;
  readonly session: CheckoutSessionRef;
  /** The request sent to the gateway (the sandbox checkout page rebuilds its session from it). */
  readonly request: StripeRequest<Stripe.Checkout.SessionCreateParams>;
}

/** Creates the pending payment and opens its Checkout Session. */
export async function startCheckout(deps: { db: Database; clock: Clock; gateway: PaymentGateway }, start: CheckoutStart): Promise<StartedCheckout> {
  const payments = new PaymentRepository(deps.db.pool, deps.clock);
  const payment = await payments.createPending({ practiceId: start.practiceId, guarantorId: start.guarantorId, balanceIds: [...start.balanceIds], amount: start.amount });
  const request = checkoutSessionParams({
    paymentId: payment.id,
    guarantorId: start.guarantorId,
    amount: start.amount,
    successUrl: `${start.baseUrl}/pay/complete?payment=${payment.id}`,
    cancelUrl: `${start.baseUrl}/pay/cancelled?payment=${payment.id}`,
    ...(start.locale ? { locale: start.locale } : {}),
    ...(start.plan ? { plan: start.plan } : {}),
  });
  const session = await deps.gateway.createCheckoutSession(request);
  await payments.update(start.practiceId, payment.id, { stripe: { checkoutSession: session.id } });
  return { paymentId: payment.id, session, request };
}
