/**
 * Proposing a payment plan: the pay page calls `proposePlan` when the patient picks one of the offered plans,
 * then creates the Checkout Session for the first installment with `plan: { planId }` (the card is saved for
 * the installments). The plan stays `pending` until `checkout.session.completed` pays its first installment;
 * an abandoned Checkout leaves a pending plan that never charges anything.
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../domain/clock.ts';
import { money, type Money } from '../domain/money.ts';
import { withTransaction, type Database, type Queryable } from '../store/database.ts';
import { LedgerRepository } from '../store/ledger.ts';
import { PhiCipher } from '../store/phi-crypto.ts';
import { planState, PlanRepository } from '../store/plans.ts';
import { isUuid } from '../store/payments.ts';
import { DEFAULT_RETRY_OFFSETS_DAYS, localDate, PlanError, planSchedule, type PlanOffer } from '../domain/payment-plan.ts';
import { applyPlanEvent, planRemainingCents, startPlan } from '../domain/payment-plan-state.ts';

/** Why a plan cannot be proposed (the pay page shows the offers again). */
export class PlanProposalError extends Error {
  readonly code: 'invalid-input' | 'unknown-balance' | 'offer-mismatch';
  constructor(code: PlanProposalError['code'], message: string) {
    super(message);
    this.name = 'PlanProposalError';
    this.code = code;
  }
}

let cipher: PhiCipher | undefined;
const throwawayCipher = () => (cipher ??= new PhiCipher({ encryptionKeys: [{ id: 'unused', key: randomBytes(32) }], blindIndexKey: randomBytes(32) }));

/**
 * Stores a `pending` plan for the guarantor's balances on the offered terms, its schedule starting today in the
 * practice's time zone (installment 1 is paid at Checkout).
 * @throws PlanProposalError when a balance is not the guarantor's, the balances' total is not the offer's
 *   (the balance changed since the offers were shown), or the offer is not a valid plan; PlanError for bad terms.
 */
export async function proposePlan(
  deps: { db: Database; clock: Clock },
  input: { practiceId: string; guarantorId: string; balanceIds: string[]; offer: PlanOffer; timeZone: string },
): Promise<{ planId: string; firstInstallment: Money }> {
  const { practiceId, guarantorId, offer } = input;
  if (!isUuid(practiceId) || !isUuid(guarantorId)) throw new PlanProposalError('invalid-input', 'practiceId and guarantorId must be uuids');
  const balanceIds = [...new Set(input.balanceIds)];
  if (balanceIds.length === 0 || !balanceIds.every(isUuid)) throw new PlanProposalError('invalid-input', 'balanceIds must be one or more balance uuids');
  // Contact fields are never read here, so the ledger repository gets a throwaway cipher.
  const ledger = new LedgerRepository(deps.db.pool, throwawayCipher(), deps.clock);
  const balances = [];
  for (const id of balanceIds) {
    const balance = await ledger.getBalance(id);
    if (!balance || balance.practiceId !== practiceId || balance.guarantorId !== guarantorId) {
      throw new PlanProposalError('unknown-balance', `balance ${id} is not an open balance of guarantor ${guarantorId}`);
    }
    balances.push(balance);
  }
  const currencies = new Set(balances.map((b) => b.patientAmount.currency));
  if (currencies.size !== 1) throw new PlanProposalError('invalid-input', 'the balances of one plan must share a currency');
  const total = balances.reduce((sum, b) => sum + b.patientAmount.amount, 0);
  if (total !== offer.totalCents) {
    throw new PlanProposalError('offer-mismatch', `the balances now total ${total} minor units, not the offer's ${offer.totalCents}: show the offers again`);
  }
  let schedule;
  try {
    schedule = planSchedule({ balanceCents: offer.totalCents, months: offer.months, startDate: localDate(deps.clock.now(), input.timeZone), remainder: 'first' });
  } catch (error) {
    if (error instanceof PlanError) throw new PlanProposalError('invalid-input', `offer: ${error.message}`);
    throw error;
  }
  if (schedule[0]!.amountCents !== offer.remainderInstallmentCents || (schedule[1] && schedule[1].amountCents !== offer.installmentCents)) {
    throw new PlanProposalError('offer-mismatch', 'the offer\'s installment amounts do not split its total');
  }
  const currency = [...currencies][0]!;
  const plan = await withTransaction(deps.db, (tx) => new PlanRepository(tx, deps.clock).createPending({
    practiceId, guarantorId, balanceIds, currency, terms: offer, timeZone: input.timeZone, retryOffsetsDays: DEFAULT_RETRY_OFFSETS_DAYS, schedule,
  }));
  return { planId: plan.id, firstInstallment: money(schedule[0]!.amountCents, currency) };
}

/** What a Checkout payment carrying a plan id did to the plan. */
export type PlanCheckoutOutcome = 'activated' | 'paid-off' | 'recorded' | 'unknown-plan';

/**
 * Called by the webhook handler, inside its transaction, when a Checkout payment (or an early payoff) with a
 * plan id succeeded: a `pending` plan becomes active with installment 1 paid, the saved customer and card are
 * recorded, and its balances move to `in_plan`; the payoff payment of an active plan ends it as paid off.
 * Both Checkout events (`checkout.session.completed`, `payment_intent.succeeded`) call it; the second only
 * records the Stripe ids it carries. The remaining installments are rows the due-installments sweep charges.
 */
export async function applyPlanCheckout(
  tx: Queryable,
  deps: { clock: Clock; ledger: LedgerRepository },
  input: { practiceId: string; planId: string; paymentId: string; guarantorId: string; customer?: string; paymentMethod?: string },
): Promise<PlanCheckoutOutcome> {
  const plans = new PlanRepository(tx, deps.clock);
  const plan = await plans.getForUpdate(input.practiceId, input.planId);
  if (!plan || plan.guarantorId !== input.guarantorId) return 'unknown-plan';
  const ids = { ...(input.customer ? { customer: input.customer } : {}), ...(input.paymentMethod ? { paymentMethod: input.paymentMethod } : {}) };
  if (plan.status === 'pending') {
    const schedule = plan.installments.map((i) => ({ number: i.number, dueDate: i.dueDate, amountCents: i.amountMinor }));
    const started = startPlan(plan.id, plan.currency, schedule, { firstPaid: true, retryOffsetsDays: plan.retryOffsetsDays });
    await plans.saveState(plan, started.state, { ...ids, firstPaymentId: input.paymentId });
    if (started.state.status === 'active') {
      await deps.ledger.lockBalances(plan.balanceIds);
      for (const balanceId of plan.balanceIds) {
        const balance = await deps.ledger.getBalance(balanceId);
        if (balance && (balance.status === 'open' || balance.status === 'in_outreach') && balance.patientAmount.amount > 0) {
          await deps.ledger.setStatus(balanceId, { status: 'in_plan', actor: PLAN_ACTOR, note: `payment plan ${plan.id} started` });
        }
      }
    }
    return 'activated';
  }
  await plans.recordStripe(input.practiceId, plan.id, ids);
  if (plan.status === 'active' && plan.payoffPaymentId === input.paymentId) {
    const state = planState(plan);
    const ended = applyPlanEvent(state, { type: 'paid-off', amountCents: planRemainingCents(state), on: localDate(deps.clock.now(), plan.timeZone) });
    await plans.saveState(plan, ended.state);
    return 'paid-off';
  }
  return 'recorded';
}

/** The actor of balance status changes a plan causes. */
export const PLAN_ACTOR = 'system:payment-plan';
