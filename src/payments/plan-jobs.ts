/**
 * Charging payment plans: the `plans.charge-due` sweep and early payoff.
 *
 * Why one recurring sweep rather than one Agenda job per installment: the installment rows ARE the schedule
 * (`next_attempt_at`), so a restart, a lost job or a second worker changes nothing; retries, cancellation and
 * payoff are row updates instead of finding and cancelling jobs. Agenda runs the recurring sweep on one worker
 * at a time, and each installment is claimed (`FOR UPDATE SKIP LOCKED` plus a lease) so overlapping sweeps on two
 * workers never take the same one. Should a sweep die after Stripe answered and before recording it, the lease
 * expires and the same attempt runs again with the same idempotency key: Stripe replays its answer, so nothing
 * is charged twice.
 *
 * The plan's state follows Stripe's synchronous answer to the off-session charge (the state machine in
 * `src/domain/payment-plan-state.ts`); the ledger follows the webhook (`payment_intent.succeeded` posts the installment's payment
 * once, like every payment). A failed charge is retried +1, +3, +7 days after the first failure;
 * `authentication_required` also sends the patient an on-session pay link (a message in the outbox); after the
 * last failure the plan defaults and its balances go back to `open`, so the cadence picks them up again.
 */
import type { Logger } from 'winston';
import type { Clock } from '../domain/clock.ts';
import { displayMoney, money, type Money } from '../domain/money.ts';
import type { Language, MessageChannel } from '../domain/outreach.ts';
import { withTransaction, type Database, type Queryable } from '../store/database.ts';
import { LedgerRepository } from '../store/ledger.ts';
import { OutreachRepository } from '../store/outreach.ts';
import { PaymentRepository } from '../store/payments.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { planState, PlanRepository, type ClaimedInstallment, type Plan } from '../store/plans.ts';
import type { JobDefinition } from '../scheduler/scheduler.ts';
import { installmentChargeParams } from './checkout.ts';
import type { GatewayFor, InstallmentChargeResult, PaymentGateway } from './gateway.ts';
import { localDate } from '../domain/payment-plan.ts';
import { applyPlanEvent, planRemainingCents, type PlanEffect } from '../domain/payment-plan-state.ts';

/** Job names of the plans stage. */
export const PLAN_JOBS = { chargeDue: 'plans.charge-due' } as const;
/** How often the sweep runs (installments are due at 10:00 practice time; a sweep every 15 minutes charges them by 10:15). */
export const PLAN_SWEEP_INTERVAL = '15 minutes';
/**
 * Installments of a sweep charged at once (a round, {@link chargeRounds}): their gateway calls overlap, and the
 * sandbox's webhook events are handled as one batch instead of one transaction each. Few enough to stay far below
 * Stripe's rate limit (25 requests a second in test mode).
 */
export const CHARGES_AT_ONCE = 10;

/** What charging plans needs. */
export interface PlanJobDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly logger: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** Decrypts guarantor contacts (for the on-session link) and encrypts the outbox recipient. */
  readonly cipher: PhiCipher;
  /** The practice's gateway (Stripe, or the sandbox). */
  readonly gatewayFor: GatewayFor;
  /** The guarantor's pay-page URL (`payLinkForGuarantor`). */
  readonly payLink: (input: { practiceId: string; guarantorId: string }) => Promise<string>;
  /** Installments one sweep takes (default 100). */
  readonly batchSize?: number;
  /** How long a claim holds an installment (default 10 minutes). */
  readonly leaseMs?: number;
  /** When Stripe is unreachable, try the same attempt again after this long (default 1 hour). */
  readonly transientRetryMs?: number;
}

/** What one sweep did. */
export interface SweepSummary {
  claimed: number;
  paid: number;
  failed: number;
  /** Stripe was unreachable: the same attempt is tried again later. */
  deferred: number;
  defaulted: number;
  completed: number;
  authenticationRequests: number;
}

const jobActor = `job:${PLAN_JOBS.chargeDue}`;

/** Charges every installment due by now (claimed in batches until none is left). */
export async function chargeDueInstallments(deps: PlanJobDeps): Promise<SweepSummary> {
  const summary: SweepSummary = { claimed: 0, paid: 0, failed: 0, deferred: 0, defaulted: 0, completed: 0, authenticationRequests: 0 };
  const plans = new PlanRepository(deps.db.pool, deps.clock);
  for (;;) {
    const claimed = await plans.claimDue(deps.batchSize ?? 100, deps.leaseMs ?? 10 * 60_000);
    if (claimed.length === 0) break;
    summary.claimed += claimed.length;
    for (const round of chargeRounds(claimed)) await chargeRound(deps, round, summary);
    if (claimed.length < (deps.batchSize ?? 100)) break;
  }
  if (summary.claimed) deps.logger.info('plan installments charged', { ...summary });
  return summary;
}

/**
 * A claim's installments in rounds of at most {@link CHARGES_AT_ONCE}, in claim order, each round with at most one
 * installment of a plan: a plan's next installment is prepared only once the one before it is recorded.
 */
export function chargeRounds(claimed: readonly ClaimedInstallment[]): ClaimedInstallment[][] {
  const rounds: ClaimedInstallment[][] = [];
  let left = [...claimed];
  while (left.length > 0) {
    const round: ClaimedInstallment[] = [];
    const plans = new Set<string>();
    const later: ClaimedInstallment[] = [];
    for (const item of left) {
      if (round.length < CHARGES_AT_ONCE && !plans.has(item.planId)) {
        round.push(item);
        plans.add(item.planId);
      } else later.push(item);
    }
    rounds.push(round);
    left = later;
  }
  return rounds;
}

/**
 * Charges one round: each installment's payment prepared in turn, then all charged at once (Stripe's calls overlap;
 * the sandbox's webhook events arrive together and are handled as one batch, `gatherStripeEvent`), then each
 * answer recorded in turn. An installment whose step fails is logged and left claimed: the lease expires and a
 * later sweep tries the same attempt again (same idempotency key); the others go on.
 */
async function chargeRound(deps: PlanJobDeps, round: readonly ClaimedInstallment[], summary: SweepSummary): Promise<void> {
  const failed = (item: ClaimedInstallment, error: unknown) =>
    deps.logger.error('installment charge failed to run', { planId: item.planId, installment: item.number, error: (error as Error).message });
  const prepared: { item: ClaimedInstallment; charge: PreparedCharge }[] = [];
  for (const item of round) {
    try {
      const charge = await prepareCharge(deps, item);
      if (charge) prepared.push({ item, charge });
    } catch (error) {
      failed(item, error);
    }
  }
  const answered = await Promise.all(prepared.map(async ({ item, charge }) => {
    try {
      return { item, charge, result: await chargeInstallment(deps, charge) };
    } catch (error) {
      failed(item, error);
      return undefined;
    }
  }));
  for (const done of answered) {
    if (!done) continue;
    try {
      await recordCharge(deps, done.charge, done.result, summary);
    } catch (error) {
      failed(done.item, error);
    }
  }
}

/** An installment ready to charge: its plan as read, the installment, and the payment its charges are made under. */
interface PreparedCharge {
  readonly plan: Plan;
  readonly installment: Plan['installments'][number];
  readonly paymentId: string;
}

/** Reads the plan and makes (once) the payment an installment's charges are made under; undefined when it is no longer due. */
async function prepareCharge(deps: PlanJobDeps, item: ClaimedInstallment): Promise<PreparedCharge | undefined> {
  const plans = new PlanRepository(deps.db.pool, deps.clock);
  // The payment the installment's charges are made under (created once, reused by retries).
  return withTransaction(deps.db, async (tx) => {
    const plan = await plans.on(tx).getForUpdate(item.practiceId, item.planId);
    const installment = plan?.installments.find((i) => i.number === item.number);
    if (!plan || !installment || plan.status !== 'active' || (installment.status !== 'scheduled' && installment.status !== 'retrying')) return undefined;
    let paymentId = installment.paymentId;
    if (!paymentId) {
      const payment = await new PaymentRepository(tx, deps.clock).createPending({
        practiceId: plan.practiceId, guarantorId: plan.guarantorId, balanceIds: plan.balanceIds, amount: money(installment.amountMinor, plan.currency),
      });
      paymentId = payment.id;
      await plans.on(tx).setInstallmentPayment(plan.practiceId, plan.id, installment.number, paymentId);
    }
    return { plan, installment, paymentId };
  });
}

/** The off-session charge of a prepared installment (failed at once when the plan has no saved card). */
async function chargeInstallment(deps: PlanJobDeps, { plan, installment, paymentId }: PreparedCharge): Promise<InstallmentChargeResult> {
  if (!plan.stripe.customer || !plan.stripe.paymentMethod) {
    return { status: 'failed', paymentIntentId: null, code: 'no_saved_payment_method', declineCode: null, message: 'the plan has no saved card', transient: false };
  }
  return (await deps.gatewayFor(plan.practiceId)).chargeInstallment(installmentChargeParams({
    paymentId, guarantorId: plan.guarantorId, planId: plan.id, installment: installment.number, attempt: installment.attempts + 1,
    amount: money(installment.amountMinor, plan.currency), customer: plan.stripe.customer, paymentMethod: plan.stripe.paymentMethod,
  }));
}

/** Records Stripe's answer to an installment's charge: the plan's state, its balances, an authentication request. */
async function recordCharge(deps: PlanJobDeps, { plan, installment }: PreparedCharge, result: InstallmentChargeResult, summary: SweepSummary): Promise<void> {
  const plans = new PlanRepository(deps.db.pool, deps.clock);
  const attempt = installment.attempts + 1;
  if (result.status === 'failed' && result.transient) {
    summary.deferred++;
    await plans.release(plan.practiceId, plan.id, installment.number, new Date(deps.clock.now().getTime() + (deps.transientRetryMs ?? 60 * 60_000)));
    deps.logger.warn('installment charge deferred: Stripe unreachable', { planId: plan.id, installment: installment.number, attempt, code: result.code });
    return;
  }
  const effects = await withTransaction(deps.db, async (tx) => {
    const locked = await plans.on(tx).getForUpdate(plan.practiceId, plan.id);
    if (!locked) return [];
    const on = localDate(deps.clock.now(), locked.timeZone);
    const transition = applyPlanEvent(planState(locked), result.status === 'succeeded'
      ? { type: 'charge-succeeded', installment: installment.number, attempt, on }
      : { type: 'charge-failed', installment: installment.number, attempt, on, code: result.code });
    await plans.on(tx).saveState(locked, transition.state, {
      release: installment.number, ...(result.status === 'failed' ? { failureCode: { installment: installment.number, code: result.code } } : {}),
    });
    await applyBalanceEffects(tx, deps, locked, transition.effects);
    return transition.effects;
  });
  if (result.status === 'succeeded') summary.paid++;
  else summary.failed++;
  deps.logger.info('installment charged', { planId: plan.id, installment: installment.number, attempt, status: result.status, ...(result.status === 'failed' ? { code: result.code } : {}) });
  for (const effect of effects) {
    if (effect.kind === 'plan-defaulted') summary.defaulted++;
    if (effect.kind === 'plan-completed') summary.completed++;
    if (effect.kind === 'ask-authentication') {
      if (await askToAuthenticate(deps, plan, money(effect.amountCents, plan.currency))) summary.authenticationRequests++;
    }
  }
}

/** A defaulted or cancelled plan's balances go back to `open` (their cadence resumes). */
async function applyBalanceEffects(tx: Queryable, deps: Pick<PlanJobDeps, 'clock' | 'cipher'>, plan: Plan, effects: readonly PlanEffect[]): Promise<void> {
  if (!effects.some((e) => e.kind === 'plan-defaulted')) return;
  const ledger = new LedgerRepository(tx, deps.cipher, deps.clock);
  for (const balanceId of plan.balanceIds) {
    const balance = await ledger.getBalance(balanceId);
    if (balance?.status === 'in_plan') await ledger.setStatus(balanceId, { status: 'open', actor: jobActor, note: `payment plan ${plan.id} defaulted` });
  }
}

const AUTH_TEXT: Record<Language, (practice: string, amount: string, link: string) => string> = {
  en: (practice, amount, link) => `${practice}: your bank asks you to confirm your payment plan installment of ${amount}. Pay securely: ${link}`,
  es: (practice, amount, link) => `${practice}: su banco le pide confirmar la cuota de su plan de pagos de ${amount}. Pague de forma segura: ${link}`,
};

/**
 * Writes the on-session pay link to the outbox: by text when the guarantor consented to texts and has not
 * opted out, else by email when not opted out. Practice name, amount and link only.
 * @returns false when there is no reachable address (logged, by ids).
 */
async function askToAuthenticate(deps: PlanJobDeps, plan: Plan, amount: Money): Promise<boolean> {
  const ledger = new LedgerRepository(deps.db.pool, deps.cipher, deps.clock);
  const outreach = new OutreachRepository(deps.db.pool, deps.cipher, deps.clock);
  const contact = await ledger.getGuarantorContact(plan.guarantorId);
  const phone = contact?.phones?.[0];
  const email = contact?.email;
  const rules = await outreach.contactRules(plan.practiceId, { ...(phone ? { sms: phone } : {}), ...(email ? { email } : {}) });
  const optedOut = (channel: MessageChannel) => rules.optOuts.some((o) => o.channel === channel && !o.optedBackInAt);
  const consented = (channel: MessageChannel) => rules.consents.some((c) => c.channel === channel && !c.revokedAt);
  let channel: MessageChannel | undefined;
  let recipient: string | undefined;
  if (phone && consented('sms') && !optedOut('sms')) [channel, recipient] = ['sms', phone];
  else if (email && !optedOut('email')) [channel, recipient] = ['email', email];
  if (!channel || !recipient) {
    deps.logger.warn('no reachable contact for an authentication request', { planId: plan.id, guarantorId: plan.guarantorId });
    return false;
  }
  const language: Language = contact?.language?.toLowerCase().startsWith('es') ? 'es' : 'en';
  const { rows } = await deps.db.pool.query<{ name: string }>('SELECT name FROM practices WHERE id = $1', [plan.practiceId]);
  const link = await deps.payLink({ practiceId: plan.practiceId, guarantorId: plan.guarantorId });
  const body = AUTH_TEXT[language](rows[0]?.name ?? 'Your clinic', displayMoney(amount, language === 'es' ? 'es-US' : 'en-US'), link);
  await outreach.addToOutbox({
    practiceId: plan.practiceId, balanceId: plan.balanceIds[0]!, channel, recipient, body, language, template: 'plan-authentication-required',
    ...(channel === 'email' ? { subject: language === 'es' ? 'Confirme el pago de su plan' : 'Please confirm your payment plan installment' } : {}),
  });
  return true;
}

/** The recurring `plans.charge-due` job. */
export function planInstallmentsJob(deps: PlanJobDeps): JobDefinition<Record<string, never>> {
  // A long sweep (many installments due after downtime) keeps its Agenda lock for up to 30 minutes.
  return { name: PLAN_JOBS.chargeDue, concurrency: 1, lockLifetimeMs: 30 * 60_000, async run() { await chargeDueInstallments(deps); } };
}

/** How an early payoff went. */
export type PayoffResult =
  | { readonly status: 'paid-off'; readonly planId: string; readonly paymentId: string; readonly amount: Money }
  | { readonly status: 'failed'; readonly planId: string; readonly paymentId: string; readonly amount: Money; readonly code: string; readonly transient: boolean };

/** Why a plan cannot be paid off. */
export class PayoffError extends Error {
  readonly code: 'not-found' | 'not-active' | 'no-saved-card';
  constructor(code: PayoffError['code'], message: string) {
    super(message);
    this.name = 'PayoffError';
    this.code = code;
  }
}

/**
 * Pays off an active plan early: the unpaid remainder (no interest, no fee) is charged to the saved card
 * off-session, the plan ends as `paid-off` and its scheduled charges are cancelled; the ledger posts the
 * payment when its webhook arrives. A second call while the first payoff payment is unsettled reuses it (and
 * its idempotency key), so a double tap charges once.
 * @throws PayoffError when the plan is unknown, not active, or has no saved card.
 */
export async function payOffPlan(
  deps: { db: Database; clock: Clock; gateway: PaymentGateway; cipher: PhiCipher; logger?: Pick<Logger, 'info'> },
  input: { practiceId: string; planId: string },
): Promise<PayoffResult> {
  const plans = new PlanRepository(deps.db.pool, deps.clock);
  const prepared = await withTransaction(deps.db, async (tx) => {
    const plan = await plans.on(tx).getForUpdate(input.practiceId, input.planId);
    if (!plan) throw new PayoffError('not-found', `no payment plan ${input.planId}`);
    if (plan.status !== 'active') throw new PayoffError('not-active', `payment plan ${plan.id} is ${plan.status}, not active`);
    if (!plan.stripe.customer || !plan.stripe.paymentMethod) throw new PayoffError('no-saved-card', `payment plan ${plan.id} has no saved card`);
    const amount = money(planRemainingCents(planState(plan)), plan.currency);
    const payments = new PaymentRepository(tx, deps.clock);
    const previous = plan.payoffPaymentId ? await payments.get(plan.practiceId, plan.payoffPaymentId) : undefined;
    let paymentId = previous && previous.status === 'pending' && previous.amount.amount === amount.amount ? previous.id : undefined;
    if (!paymentId) {
      paymentId = (await payments.createPending({ practiceId: plan.practiceId, guarantorId: plan.guarantorId, balanceIds: plan.balanceIds, amount })).id;
      await plans.on(tx).setPayoffPayment(plan.practiceId, plan.id, paymentId);
    }
    return { plan, amount, paymentId };
  });
  const { plan, amount, paymentId } = prepared;
  const firstUnpaid = plan.installments.find((i) => i.status !== 'paid')!;
  const built = installmentChargeParams({
    paymentId, guarantorId: plan.guarantorId, planId: plan.id, installment: firstUnpaid.number, attempt: 1, amount,
    customer: plan.stripe.customer!, paymentMethod: plan.stripe.paymentMethod!,
  });
  // A payoff is not an installment: its metadata names the plan and payment only (the webhook then recognises
  // the plan's payoff payment), and its idempotency key is the payoff payment's.
  const metadata = { ...(built.params.metadata as Record<string, string>) };
  delete metadata.settle_installment;
  delete metadata.settle_attempt;
  const result = await deps.gateway.chargeInstallment({ params: { ...built.params, metadata }, idempotencyKey: `settle-plan-payoff-${paymentId}` });
  if (result.status === 'failed') return { status: 'failed', planId: plan.id, paymentId, amount, code: result.code, transient: result.transient };
  await withTransaction(deps.db, async (tx) => {
    const locked = await plans.on(tx).getForUpdate(plan.practiceId, plan.id);
    if (!locked || locked.status !== 'active') return; // the webhook got there first
    const state = planState(locked);
    const ended = applyPlanEvent(state, { type: 'paid-off', amountCents: planRemainingCents(state), on: localDate(deps.clock.now(), locked.timeZone) });
    await plans.on(tx).saveState(locked, ended.state);
  });
  deps.logger?.info('payment plan paid off', { planId: plan.id, paymentId, amountMinor: amount.amount });
  return { status: 'paid-off', planId: plan.id, paymentId, amount };
}

