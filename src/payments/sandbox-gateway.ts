/**
 * The sandbox `PaymentGateway` (no Stripe key configured): sessions, off-session charges and refunds from
 * `sandbox.ts`, whose Stripe-shaped events are signed with the sandbox secret and delivered through
 * `processStripeWebhook`, the same verifier and handler as Stripe's, so the ledger, plans and write-backs
 * change exactly as they would with Stripe (several checkouts completed at once, as `settle demo` completes a
 * simulated day's: the same verifier, then the same handler for all their events in one transaction).
 * Nothing is charged; every id says `sandbox`.
 *
 * Sessions are kept in this process's memory (the sandbox is a one-machine demo); a session id is derived from
 * its idempotency key, so a repeated request returns the same session.
 */
import { createHash } from 'node:crypto';
import type Stripe from 'stripe';
import type { Logger } from 'winston';
import type { Clock } from '../domain/clock.ts';
import type { Database } from '../store/database.ts';
import { PaymentRepository } from '../store/payments.ts';
import type { StripeRequest } from './checkout.ts';
import type { CheckoutSessionRef, InstallmentChargeResult, PaymentGateway, RefundRef } from './gateway.ts';
import type { StripeBalanceTransactionLike } from './reconcile.ts';
import { completeSandboxSession, createSandboxSession, sandboxCharge, SandboxError, SANDBOX_WEBHOOK_SECRET, signSandboxEvent, type SandboxOutcome, type SandboxSession } from './sandbox.ts';
import { verifyStripeWebhook, type StripeEventEnvelope } from './stripe-webhook.ts';
import { handleStripeEvents } from './webhook-batch.ts';
import { processStripeWebhook, webhookAck, type StripeWebhookAck } from './webhook-route.ts';

/** Test payment methods the sandbox honours like Stripe's test mode does. */
const TEST_METHODS: Record<string, SandboxOutcome> = {
  pm_card_chargeDeclined: 'card_declined',
  pm_card_insufficientFunds: 'card_declined',
  pm_card_authenticationRequired: 'authentication_required',
};

export interface SandboxGatewayDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly practiceId: string;
  readonly logger: Pick<Logger, 'info' | 'warn'>;
  /** The engine's public base URL: sandbox checkout pages live at `<baseUrl>/sandbox/checkout/<id>`. */
  readonly baseUrl: string;
  /** Default `SANDBOX_WEBHOOK_SECRET`. */
  readonly webhookSecret?: string;
  /** Wakes write-back delivery after an event queued write-backs. */
  readonly onWritebacksQueued?: () => void;
  /** How an off-session charge goes (default: by test payment method id, else succeeded). */
  readonly chargeOutcome?: (request: StripeRequest<Stripe.PaymentIntentCreateParams>) => SandboxOutcome;
}

const digest = (...parts: string[]) => createHash('sha256').update(parts.join('\0')).digest('base64url').replace(/[-_]/g, 'x').slice(0, 24);

/** Sandbox payments: same contract, same events, same handler; no money moves. */
export class SandboxGateway implements PaymentGateway {
  readonly sandbox = true;
  readonly #deps: SandboxGatewayDeps;
  readonly #sessions = new Map<string, SandboxSession>();

  constructor(deps: SandboxGatewayDeps) {
    this.#deps = deps;
  }

  /** Signs an event with the sandbox secret and hands it to the webhook processing (verify, handle once, commit). */
  async deliver(event: StripeEventEnvelope): Promise<StripeWebhookAck> {
    const secret = this.#secret;
    const { payload, header } = signSandboxEvent(event, { clock: this.#deps.clock, secret });
    const { db, clock, practiceId, logger, onWritebacksQueued } = this.#deps;
    return processStripeWebhook({ db, clock, practiceId, logger, secrets: secret, ...(onWritebacksQueued ? { onWritebacksQueued } : {}) }, Buffer.from(payload), header);
  }

  /**
   * Delivers several events together: each signed and verified like {@link deliver}, then all handled as one
   * batch (`handleStripeEvents`: one set-based transaction), committed before this returns.
   * @returns the acknowledgements, in order.
   */
  async #deliverAll(events: readonly StripeEventEnvelope[]): Promise<StripeWebhookAck[]> {
    const secret = this.#secret;
    const { db, clock, practiceId, logger, onWritebacksQueued } = this.#deps;
    const verified = events.map((event) => {
      const { payload, header } = signSandboxEvent(event, { clock, secret });
      return verifyStripeWebhook(payload, header, { secrets: secret, clock });
    });
    const results = await handleStripeEvents({ db, clock, practiceId, logger }, verified);
    if (results.some((result) => result.writebacks.length > 0)) onWritebacksQueued?.();
    return results.map(webhookAck);
  }

  /** The secret sandbox events are signed and verified with. */
  get #secret(): string {
    return this.#deps.webhookSecret ?? SANDBOX_WEBHOOK_SECRET;
  }

  async createCheckoutSession(request: StripeRequest<Stripe.Checkout.SessionCreateParams>): Promise<CheckoutSessionRef> {
    const session = createSandboxSession(request, { clock: this.#deps.clock, baseUrl: this.#deps.baseUrl });
    if (!this.#sessions.has(session.id)) this.#sessions.set(session.id, session);
    return { id: session.id, url: session.url };
  }

  /** An open sandbox session (for the sandbox checkout page), or undefined. */
  session(id: string): SandboxSession | undefined {
    return this.#sessions.get(id);
  }

  /**
   * The patient presses "Pay" (or a decline button) on the sandbox checkout page: the events Stripe would send
   * are delivered through the webhook processing. A completed session is forgotten (a second press is a no-op).
   * @returns the webhook acknowledgements, in order; empty when the session is unknown or already completed.
   */
  async completeSession(id: string, outcome: SandboxOutcome = 'succeeded'): Promise<StripeWebhookAck[]> {
    const session = this.#sessions.get(id);
    if (!session) return [];
    const acks: StripeWebhookAck[] = [];
    for (const event of completeSandboxSession(session, { clock: this.#deps.clock, outcome })) acks.push(await this.deliver(event));
    if (outcome === 'succeeded') this.#sessions.delete(id);
    return acks;
  }

  /**
   * Several patients press "Pay" (or a decline button) on their sandbox checkout pages at once: like
   * {@link completeSession} for each, but their events are delivered together (verified one by one, then
   * handled in one transaction), in the order of `ids`. Unknown and already completed sessions are skipped.
   * @returns the webhook acknowledgements, in order.
   */
  async completeSessions(ids: readonly string[], outcome: SandboxOutcome = 'succeeded'): Promise<StripeWebhookAck[]> {
    const sessions = [...new Set(ids)].flatMap((id) => this.#sessions.get(id) ?? []);
    const acks = await this.#deliverAll(sessions.flatMap((session) => completeSandboxSession(session, { clock: this.#deps.clock, outcome })));
    if (outcome === 'succeeded') for (const session of sessions) this.#sessions.delete(session.id);
    return acks;
  }

  async chargeInstallment(request: StripeRequest<Stripe.PaymentIntentCreateParams>): Promise<InstallmentChargeResult> {
    const outcome = this.#deps.chargeOutcome?.(request) ?? TEST_METHODS[String(request.params.payment_method ?? '')] ?? 'succeeded';
    try {
      const { paymentIntent, events } = sandboxCharge(request, { clock: this.#deps.clock, outcome });
      for (const event of events) await this.deliver(event);
      return { status: 'succeeded', paymentIntentId: String(paymentIntent.id), chargeId: typeof paymentIntent.latest_charge === 'string' ? paymentIntent.latest_charge : null };
    } catch (error) {
      if (!(error instanceof SandboxError)) throw error;
      for (const event of error.events) await this.deliver(event);
      return {
        status: 'failed',
        paymentIntentId: error.paymentIntent ? String(error.paymentIntent.id) : null,
        code: error.code,
        declineCode: error.declineCode ?? null,
        message: error.message,
        transient: false,
      };
    }
  }

  /** A sandbox refund: a `charge.refunded` event for the payment behind the intent, through the same handler. */
  async refund(request: StripeRequest<Stripe.RefundCreateParams>): Promise<RefundRef> {
    const intent = String(request.params.payment_intent ?? '');
    const payments = new PaymentRepository(this.#deps.db.pool, this.#deps.clock);
    const payment = await payments.findForUpdate(this.#deps.practiceId, { paymentIntent: intent });
    if (!payment) throw new SandboxError('resource_missing', `No such payment_intent: '${intent}'`);
    const left = payment.amount.amount - payment.refundedMinor;
    const amount = request.params.amount ?? left;
    if (!Number.isSafeInteger(amount) || amount <= 0 || amount > left) throw new SandboxError('amount_too_large', `the refund amount must be between 1 and ${left} minor units`);
    const id = `re_sandbox_${digest('refund', request.idempotencyKey)}`;
    const cumulative = payment.refundedMinor + amount;
    const charge = payment.stripe.charge ?? `ch_sandbox_${digest('charge', intent)}`;
    await this.deliver({
      id: `evt_sandbox_${digest('event', 'charge.refunded', request.idempotencyKey)}`,
      object: 'event',
      api_version: null,
      created: Math.floor(this.#deps.clock.now().getTime() / 1000),
      livemode: false,
      pending_webhooks: 1,
      request: { id: null, idempotency_key: null },
      type: 'charge.refunded',
      data: {
        object: {
          id: charge, object: 'charge', livemode: false, amount: payment.amount.amount, amount_refunded: cumulative, currency: payment.amount.currency.toLowerCase(),
          payment_intent: intent, refunded: cumulative === payment.amount.amount, metadata: { ...(request.params.metadata as Record<string, string> | undefined) },
        },
      },
    });
    return { id, status: 'succeeded' };
  }

  /** The sandbox moves no money, so Stripe has no balance transactions to reconcile against. */
  async *listBalanceTransactions(): AsyncIterable<StripeBalanceTransactionLike> {}
}
