/**
 * A payment plan's life as a pure state machine: (state, event) → (state, effects). The scheduler turns
 * effects into Agenda jobs and messages; the webhook handler and the installment job turn Stripe outcomes into
 * events. Applying the same event twice changes nothing and yields no effects (webhooks and jobs repeat).
 *
 * - The first installment is paid at Checkout; the others are charged off-session on their due dates.
 * - A failed charge is retried on the retry schedule (+1, +3, +7 days from the first failure); after the last
 *   retry fails the plan defaults: remaining charges are cancelled and the balance returns to its cadence.
 * - `authentication_required` also asks the patient to pay that installment on-session (a pay link).
 * - Paying off early settles exactly the unpaid remainder and cancels what was scheduled.
 */
import { DEFAULT_RETRY_OFFSETS_DAYS, onInstallmentFailure, PlanError, type Installment } from './payment-plan.ts';

export type InstallmentStatus = 'scheduled' | 'retrying' | 'paid' | 'cancelled';

export interface InstallmentState extends Installment {
  readonly status: InstallmentStatus;
  /** Charge attempts made so far (failures plus the success, if any). */
  readonly attempts: number;
  /** ISO date of the first failed attempt (retry offsets count from it). */
  readonly firstFailureOn?: string;
  /** ISO date of the next attempt while `scheduled` or `retrying`. */
  readonly nextAttemptOn?: string;
}

export type PlanStatus = 'active' | 'completed' | 'paid-off' | 'defaulted' | 'cancelled';

export interface PlanState {
  readonly planId: string;
  readonly currency: string;
  readonly status: PlanStatus;
  readonly installments: readonly InstallmentState[];
  readonly retryOffsetsDays: readonly number[];
}

export type PlanEvent =
  | { readonly type: 'charge-succeeded'; readonly installment: number; readonly attempt: number; readonly on: string }
  | { readonly type: 'charge-failed'; readonly installment: number; readonly attempt: number; readonly on: string; readonly code?: string }
  | { readonly type: 'paid-off'; readonly amountCents: number; readonly on: string }
  /** Staff ended the plan (balance disputed, written off, …). */
  | { readonly type: 'cancelled'; readonly on: string };

export type PlanEffect =
  /** Charge `installment` (attempt number `attempt`) on `on`; key the Stripe request with both. */
  | { readonly kind: 'schedule-charge'; readonly installment: number; readonly attempt: number; readonly on: string; readonly amountCents: number }
  /** Drop any scheduled charge jobs of these installments. */
  | { readonly kind: 'cancel-charges'; readonly installments: readonly number[] }
  /** Send the patient an on-session link for this installment (the bank wants them present). */
  | { readonly kind: 'ask-authentication'; readonly installment: number; readonly amountCents: number }
  /** The plan is over unpaid: put the balance back on its cadence with `remainingCents` due. */
  | { readonly kind: 'plan-defaulted'; readonly remainingCents: number }
  | { readonly kind: 'plan-completed'; readonly how: 'installments' | 'paid-off' };

export interface Transition {
  readonly state: PlanState;
  readonly effects: readonly PlanEffect[];
}

const unpaidCents = (state: PlanState) =>
  state.installments.reduce((sum, i) => (i.status === 'paid' ? sum : sum + i.amountCents), 0);

/** Cents still owed on the plan (the early payoff amount). */
export function planRemainingCents(state: PlanState): number {
  return state.status === 'active' ? unpaidCents(state) : 0;
}

/**
 * A new plan from its schedule, its first installment already paid at Checkout (`firstPaid`, the usual case)
 * or not. Effects: one `schedule-charge` per unpaid installment on its due date.
 */
export function startPlan(
  planId: string,
  currency: string,
  schedule: readonly Installment[],
  options: { firstPaid?: boolean; retryOffsetsDays?: readonly number[] } = {},
): Transition {
  if (schedule.length === 0) throw new PlanError('invalid-months', 'a plan needs at least one installment');
  const firstPaid = options.firstPaid ?? true;
  const installments = schedule.map((i): InstallmentState =>
    i.number === 1 && firstPaid ? { ...i, status: 'paid', attempts: 1 } : { ...i, status: 'scheduled', attempts: 0, nextAttemptOn: i.dueDate },
  );
  const state: PlanState = { planId, currency, status: 'active', installments, retryOffsetsDays: options.retryOffsetsDays ?? DEFAULT_RETRY_OFFSETS_DAYS };
  const effects: PlanEffect[] = installments
    .filter((i) => i.status === 'scheduled')
    .map((i) => ({ kind: 'schedule-charge', installment: i.number, attempt: 1, on: i.dueDate, amountCents: i.amountCents }));
  if (installments.every((i) => i.status === 'paid')) {
    return { state: { ...state, status: 'completed' }, effects: [{ kind: 'plan-completed', how: 'installments' }] };
  }
  return { state, effects };
}

function replace(state: PlanState, updated: InstallmentState): PlanState {
  return { ...state, installments: state.installments.map((i) => (i.number === updated.number ? updated : i)) };
}

const unchanged = (state: PlanState): Transition => ({ state, effects: [] });

/**
 * Applies an event. Events for a plan that is no longer active, for an installment already paid, or for an
 * attempt older than the installment's latest are no-ops (duplicates and late arrivals).
 * @throws PlanError for an unknown installment or a payoff of the wrong amount.
 */
export function applyPlanEvent(state: PlanState, event: PlanEvent): Transition {
  if (state.status !== 'active') return unchanged(state);
  switch (event.type) {
    case 'cancelled': {
      const open = state.installments.filter((i) => i.status !== 'paid');
      return {
        state: { ...state, status: 'cancelled', installments: state.installments.map((i) => (i.status === 'paid' ? i : { ...i, status: 'cancelled', nextAttemptOn: undefined })) },
        effects: open.length ? [{ kind: 'cancel-charges', installments: open.map((i) => i.number) }] : [],
      };
    }
    case 'paid-off': {
      const remaining = unpaidCents(state);
      if (event.amountCents !== remaining) throw new PlanError('invalid-amount', `the payoff is ${remaining} cents, not ${event.amountCents}`);
      const open = state.installments.filter((i) => i.status !== 'paid');
      return {
        state: { ...state, status: 'paid-off', installments: state.installments.map((i) => (i.status === 'paid' ? i : { ...i, status: 'cancelled', nextAttemptOn: undefined })) },
        effects: [...(open.length ? [{ kind: 'cancel-charges' as const, installments: open.map((i) => i.number) }] : []), { kind: 'plan-completed', how: 'paid-off' }],
      };
    }
    case 'charge-succeeded':
    case 'charge-failed': {
      const installment = state.installments.find((i) => i.number === event.installment);
      if (!installment) throw new PlanError('invalid-months', `plan ${state.planId} has no installment ${event.installment}`);
      if (installment.status === 'paid' || installment.status === 'cancelled' || event.attempt <= installment.attempts) return unchanged(state);
      if (event.type === 'charge-succeeded') {
        const paid: InstallmentState = { ...installment, status: 'paid', attempts: event.attempt, nextAttemptOn: undefined };
        const next = replace(state, paid);
        if (next.installments.every((i) => i.status === 'paid')) {
          return { state: { ...next, status: 'completed' }, effects: [{ kind: 'plan-completed', how: 'installments' }] };
        }
        return { state: next, effects: [] };
      }
      const firstFailureOn = installment.firstFailureOn ?? event.on;
      const failures = event.attempt; // every attempt so far failed
      const decision = onInstallmentFailure(firstFailureOn, failures, event.code, state.retryOffsetsDays);
      const ask: PlanEffect[] = decision.askPatientToAuthenticate ? [{ kind: 'ask-authentication', installment: installment.number, amountCents: installment.amountCents }] : [];
      if (decision.action === 'retry') {
        const retrying: InstallmentState = { ...installment, status: 'retrying', attempts: event.attempt, firstFailureOn, nextAttemptOn: decision.retryOn };
        return {
          state: replace(state, retrying),
          effects: [...ask, { kind: 'schedule-charge', installment: installment.number, attempt: event.attempt + 1, on: decision.retryOn, amountCents: installment.amountCents }],
        };
      }
      const failed: InstallmentState = { ...installment, status: 'retrying', attempts: event.attempt, firstFailureOn, nextAttemptOn: undefined };
      const defaulted = replace(state, failed);
      const remainingCents = unpaidCents(defaulted);
      const open = defaulted.installments.filter((i) => i.status !== 'paid');
      return {
        state: { ...defaulted, status: 'defaulted', installments: defaulted.installments.map((i) => (i.status === 'paid' ? i : { ...i, status: 'cancelled', nextAttemptOn: undefined })) },
        // No on-session request after default: the balance goes back to its cadence, which sends its own link.
        effects: [{ kind: 'cancel-charges', installments: open.map((i) => i.number) }, { kind: 'plan-defaulted', remainingCents }],
      };
    }
  }
}
