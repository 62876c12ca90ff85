/**
 * Starting a checkout: the one way a payment attempt begins, whoever starts it (the pay page, the demo's
 * patients). Settle's opaque payment id is drawn first, the Checkout parameters and idempotency key are built from
 * it, the gateway (Stripe or the sandbox) opens the session, and then the pending payment is stored once, with its
 * session id, in one statement (it used to be inserted before the session and updated after it: two statements per
 * checkout). Its webhooks still resolve: the patient reaches the session only through the URL returned after the
 * payment is stored, and every event carries the payment id in its metadata. A gateway that refuses leaves no
 * pending payment behind; a store that fails after the gateway answered leaves an unused session, which expires.
 */
import { randomUUID } from 'node:crypto';
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

/** Opens the Checkout Session of a new payment and stores the payment, pending, with its session id. */
export async function startCheckout(deps: { db: Database; clock: Clock; gateway: PaymentGateway }, start: CheckoutStart): Promise<StartedCheckout> {
  const paymentId = randomUUID();
  const request = checkoutSessionParams({
    paymentId,
    guarantorId: start.guarantorId,
    amount: start.amount,
    successUrl: `${start.baseUrl}/pay/complete?payment=${paymentId}`,
    cancelUrl: `${start.baseUrl}/pay/cancelled?payment=${paymentId}`,
    ...(start.locale ? { locale: start.locale } : {}),
    ...(start.plan ? { plan: start.plan } : {}),
  });
  const session = await deps.gateway.createCheckoutSession(request);
  await new PaymentRepository(deps.db.pool, deps.clock).createPending({
    id: paymentId, practiceId: start.practiceId, guarantorId: start.guarantorId, balanceIds: [...start.balanceIds], amount: start.amount, checkoutSessionId: session.id,
  });
  return { paymentId, session, request };
}
