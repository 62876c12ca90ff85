/**
 * The Stripe `PaymentGateway`: the official `stripe` SDK, with the parameter builders' idempotency keys passed
 * through on every POST. The SDK may retry a request only with the same idempotency key (a replay at Stripe,
 * never a second charge); Settle's own retries of a declined installment are new attempts with new keys
 * (`installmentChargeParams`). Card errors on an off-session charge become an `InstallmentChargeResult`, not an
 * exception; configuration errors (a wrong key) throw.
 */
import Stripe from 'stripe';
import type { StripeRequest } from './checkout.ts';
import type { CheckoutSessionRef, InstallmentChargeResult, PaymentGateway, RefundRef } from './gateway.ts';
import type { StripeBalanceTransactionLike } from './reconcile.ts';

/** Where the SDK sends requests: Stripe by default, the Stripe fake in tests. */
export interface StripeGatewayOptions {
  readonly host?: string;
  readonly port?: number;
  readonly protocol?: 'http' | 'https';
  /** SDK network retries (same idempotency key, so a replay); default 2. */
  readonly maxNetworkRetries?: number;
  /** Request timeout in ms; default 30 s. */
  readonly timeoutMs?: number;
}

/** Stripe error codes that mean "try the same request again later", not "the card said no". */
const TRANSIENT_CODES = new Set(['lock_timeout', 'rate_limit', 'idempotency_key_in_use', 'processing_error']);

/** Whether a Stripe error is a network or Stripe-side failure (retry the same request). */
function isTransient(error: InstanceType<typeof Stripe.errors.StripeError>): boolean {
  return (
    error instanceof Stripe.errors.StripeConnectionError ||
    error instanceof Stripe.errors.StripeAPIError ||
    error instanceof Stripe.errors.StripeRateLimitError ||
    (error.code !== undefined && TRANSIENT_CODES.has(error.code)) ||
    (error.statusCode !== undefined && error.statusCode >= 500)
  );
}

/** Moves money through Stripe. */
export class StripeGateway implements PaymentGateway {
  readonly sandbox = false;
  readonly #stripe: Stripe;

  /** @param secretKey - `sk_live_…` / `sk_test_…` (or a restricted key with these permissions). */
  constructor(secretKey: string, options: StripeGatewayOptions = {}) {
    if (typeof secretKey !== 'string' || !/^(sk|rk)_/.test(secretKey)) throw new Error('the Stripe secret key must start with sk_ or rk_');
    this.#stripe = new Stripe(secretKey, {
      maxNetworkRetries: options.maxNetworkRetries ?? 2,
      timeout: options.timeoutMs ?? 30_000,
      ...(options.host !== undefined ? { host: options.host } : {}),
      ...(options.port !== undefined ? { port: options.port } : {}),
      ...(options.protocol !== undefined ? { protocol: options.protocol } : {}),
      appInfo: { name: 'Settle' },
    });
  }

  async createCheckoutSession(request: StripeRequest<Stripe.Checkout.SessionCreateParams>): Promise<CheckoutSessionRef> {
    const session = await this.#stripe.checkout.sessions.create(request.params, { idempotencyKey: request.idempotencyKey });
    if (!session.url) throw new Error(`Stripe returned checkout session ${session.id} without a url`);
    return { id: session.id, url: session.url };
  }

  async chargeInstallment(request: StripeRequest<Stripe.PaymentIntentCreateParams>): Promise<InstallmentChargeResult> {
    try {
      const intent = await this.#stripe.paymentIntents.create(request.params, { idempotencyKey: request.idempotencyKey });
      if (intent.status === 'succeeded' || intent.status === 'processing') {
        const charge = typeof intent.latest_charge === 'string' ? intent.latest_charge : (intent.latest_charge?.id ?? null);
        return { status: 'succeeded', paymentIntentId: intent.id, chargeId: charge };
      }
      const error = intent.last_payment_error;
      return {
        status: 'failed',
        paymentIntentId: intent.id,
        code: error?.code ?? (intent.status === 'requires_action' ? 'authentication_required' : 'payment_intent_not_succeeded'),
        declineCode: error?.decline_code ?? null,
        message: error?.message ?? `the payment intent is ${intent.status}`,
        transient: false,
      };
    } catch (error) {
      if (!(error instanceof Stripe.errors.StripeError)) throw error;
      if (error instanceof Stripe.errors.StripeAuthenticationError || error instanceof Stripe.errors.StripePermissionError) throw error;
      if (error instanceof Stripe.errors.StripeIdempotencyError) throw error; // a bug: same key, different request
      const transient = isTransient(error);
      return {
        status: 'failed',
        paymentIntentId: error.payment_intent?.id ?? null,
        code: error.code ?? (transient ? 'stripe_unavailable' : error.type),
        declineCode: error.decline_code ?? null,
        message: error.message,
        transient,
      };
    }
  }

  async refund(request: StripeRequest<Stripe.RefundCreateParams>): Promise<RefundRef> {
    const refund = await this.#stripe.refunds.create(request.params, { idempotencyKey: request.idempotencyKey });
    return { id: refund.id, status: refund.status ?? 'pending' };
  }

  async *listBalanceTransactions(window: { readonly from: Date; readonly to: Date }): AsyncIterable<StripeBalanceTransactionLike> {
    const created = { gte: Math.floor(window.from.getTime() / 1000), lt: Math.ceil(window.to.getTime() / 1000) };
    for await (const bt of this.#stripe.balanceTransactions.list({ created, limit: 100 })) {
      yield { id: bt.id, type: bt.type, amount: bt.amount, currency: bt.currency, source: typeof bt.source === 'string' || bt.source === null ? bt.source : { id: bt.source.id }, created: bt.created };
    }
  }
}
