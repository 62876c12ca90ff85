/**
 * Applies a verified Stripe event to the store, in ONE transaction per event (events that come together, webhook
 * deliveries at the same time and the sandbox's checkouts of a simulated day, are handled set-based in one
 * transaction per batch by `webhook-batch.ts`, with the pieces exported here):
 *
 * 1. the event id is inserted into `stripe_events` (ON CONFLICT DO NOTHING): when it was already there the
 *    event is a duplicate and nothing else happens (a concurrent delivery waits on the row lock, then sees it).
 *    A retry of an event committed before is found by one read before any transaction starts;
 * 2. the command from `commandForEvent` is applied: a succeeded payment is marked succeeded, split across the
 *    balances it pays (oldest first, `allocatePayment`), posted as ledger entries through the ledger repository
 *    and queued in the write-back outbox; a refund posts refund entries and a `refund` write-back; a dispute
 *    puts the balances it paid in the `disputed` status (out of outreach); a closed dispute lifts that hold, and
 *    when lost posts the reversal and a `reversal` write-back; a failure marks a pending payment failed.
 *
 * The event, the payment, its ledger entries and its outbox row commit together or not at all, so the webhook
 * route answers 2xx only after everything is durable and Stripe's retries change nothing.
 *
 * On the embedded database every statement is a round trip through one single-threaded session, so the handler
 * keeps them few: a retry is one read before any transaction; the event id is claimed and its payment looked up
 * and locked in one statement (`claimEvent`), which also reads the balances a pending payment is for and the
 * practice's time zone; the payment's change, its write-back and its audit event ride on the statement that
 * marks the event processed (`finishEvent`); and a change that would change nothing (the second event of a
 * payment carrying the ids already recorded) is not sent. A posted payment is BEGIN, claim, the ledger's
 * posting statements, finish, COMMIT.
 *
 * Ledger entries are keyed like any other source record (connector `settle`): resource type `Payment` with
 * source id `<payment id>/<balance id>`, `Refund` with `<payment id>/<balance id>/<cumulative refunded>`,
 * `DisputeReversal` with `<payment id>/<balance id>/<dispute id>`, each version `1`, so even a second handling
 * of the same payment through a different event could not post twice.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'winston';
import { type Clock, localDate } from '../domain/clock.ts';
import type { BalanceStatus } from '../domain/ledger.ts';
import type { Money } from '../domain/money.ts';
import { allocatePayment, allocationOrder, type AllocatableBalance } from '../domain/payment-allocation.ts';
import type { NewAuditEvent } from '../store/audit.ts';
import { withTransaction, type Database, type Queryable } from '../store/database.ts';
import { LedgerRepository, type Balance, type PostingResult } from '../store/ledger.ts';
import type { SourcePosting } from '../store/ledger-batch.ts';
import {
  isUuid, PaymentRepository, type NewWriteback, type PayableBalance, type Payment, type PaymentAllocation, type PaymentChange, type PaymentLookup, type PaymentStatus, type StripeEventRef, type StripeIds,
} from '../store/payments.ts';
import { PhiCipher } from '../store/phi-crypto.ts';
import { applyPlanCheckout, type PlanCheckoutOutcome } from './plan-service.ts';
import { commandForEvent, type StripeEventCommand } from './stripe-events.ts';
import type { StripeEventEnvelope } from './stripe-webhook.ts';

/** The connector name payment ledger entries carry. */
export const PAYMENT_LEDGER_CONNECTOR = 'settle';
/** The actor of balance status changes caused by Stripe. */
export const STRIPE_ACTOR = 'system:stripe';

export interface StripeEventHandlerDeps {
  readonly db: Database;
  readonly clock: Clock;
  /** The practice whose Stripe account sends these events; every row written belongs to it. */
  readonly practiceId: string;
  /** Not needed to post payments (no contact is read or written); pass the engine's when at hand. */
  readonly cipher?: PhiCipher;
  readonly logger: Pick<Logger, 'info' | 'warn'>;
}

export type HandleOutcome =
  | 'duplicate' // the event id was handled before: nothing changed
  | 'payment-posted' // a payment succeeded: ledger entries and a `payment` write-back
  | 'payment-already-posted' // the other event of the same payment (checkout vs intent): ids recorded only
  | 'payment-failed'
  | 'refund-posted'
  | 'dispute-opened'
  | 'dispute-won' // hold lifted
  | 'dispute-lost' // reversal posted, hold lifted
  | 'unknown-payment' // refers to no payment of this practice: recorded, nothing else
  | 'currency-mismatch' // Stripe's currency is not the payment's: recorded and logged for staff, nothing posted
  | 'noop' // nothing to do (an older cumulative refund, an expired checkout, …)
  | 'ignored'; // not an event Settle handles

/** What handling one event did. */
export interface HandleResult {
  readonly outcome: HandleOutcome;
  readonly eventId: string;
  readonly type: string;
  readonly paymentId?: string;
  /** Ledger entries posted (reversals and new lines). */
  readonly ledgerEntries: number;
  /** Write-back ids queued in the outbox by this event. */
  readonly writebacks: readonly string[];
  /** Balances touched (posted to or status changed). */
  readonly balanceIds: readonly string[];
  /** Per balance, how the money was split (payment, refund or reversal). */
  readonly allocations?: readonly PaymentAllocation[];
  /** What a plan's Checkout payment did to its plan (activated, paid off, …). */
  readonly plan?: PlanCheckoutOutcome;
}

let ephemeralCipher: PhiCipher | undefined;
/** A throwaway cipher for a ledger repository that never touches contact fields. */
function unusedCipher(): PhiCipher {
  return (ephemeralCipher ??= new PhiCipher({ encryptionKeys: [{ id: 'unused', key: randomBytes(32) }], blindIndexKey: randomBytes(32) }));
}

/**
 * How much of each balance a refund or reversal of `delta` takes back: the youngest allocation first (the
 * reverse of how the payment was applied), skipping what earlier refunds and reversals already took back.
 */
export function returnSplit(allocations: readonly PaymentAllocation[], alreadyReturned: number, delta: number): PaymentAllocation[] {
  const out: PaymentAllocation[] = [];
  let skip = alreadyReturned;
  let left = delta;
  for (const allocation of [...allocations].reverse()) {
    if (left <= 0) break;
    let room = allocation.amountMinor;
    const skipped = Math.min(skip, room);
    skip -= skipped;
    room -= skipped;
    if (room <= 0) continue;
    const take = Math.min(room, left);
    out.push({ balanceId: allocation.balanceId, amountMinor: take });
    left -= take;
  }
  return out;
}

/** The status a balance returns to when a Stripe dispute hold is lifted. */
const liftedStatus = (balance: Balance): BalanceStatus => (balance.patientAmount.amount > 0 ? 'open' : 'paid');

/** The payment status once a dispute is over (or when a refund arrives), from its refund figure. */
function settledStatus(payment: Payment, refundedMinor: number): PaymentStatus {
  if (refundedMinor <= 0) return 'succeeded';
  return refundedMinor >= payment.amount.amount ? 'refunded' : 'partially_refunded';
}

/**
 * Handles one verified event (see the module comment).
 * @throws StripeEventError when a handled event type lacks what Settle needs (nothing is stored; answer 400);
 *   any store error (nothing is stored; answer 5xx so that Stripe retries).
 */
export async function handleStripeEvent(deps: StripeEventHandlerDeps, event: StripeEventEnvelope): Promise<HandleResult> {
  const command = commandForEvent(event);
  // A retry of an event already committed costs one read, and no transaction; a concurrent first delivery is
  // caught inside the transaction, by the event id's insert.
  const handled = (await new PaymentRepository(deps.db.pool, deps.clock).handledEvents(deps.practiceId, [eventRef(event)])).size > 0;
  const result = handled ? duplicateOf(event) : await withTransaction(deps.db, (tx) => handleInTransaction(deps, tx, event, command));
  logHandled(deps, result);
  return result;
}

/** An event as its row in `stripe_events` is keyed (the platform's own account is ''). */
export const eventRef = (event: StripeEventEnvelope): StripeEventRef => ({ id: event.id, type: event.type, account: typeof event.account === 'string' ? event.account : '' });

/** The result of an event handled before. */
export const duplicateOf = (event: StripeEventEnvelope): HandleResult => ({ outcome: 'duplicate', eventId: event.id, type: event.type, ledgerEntries: 0, writebacks: [], balanceIds: [] });

/** Claims, applies and marks processed one event inside the caller's transaction (see the module comment). */
async function handleInTransaction(deps: StripeEventHandlerDeps, tx: Queryable, event: StripeEventEnvelope, command: StripeEventCommand): Promise<HandleResult> {
  const ref = eventRef(event);
  const payments = new PaymentRepository(tx, deps.clock);
  const { claimed, payment, balances, timeZone } = await payments.claimEvent(deps.practiceId, ref, lookupOf(command));
  if (!claimed) return duplicateOf(event);
  const { effects = {}, ...applied } = await apply(handlingIn(deps, tx, timeZone, balances), command, payment);
  const done = resultOf(event, applied);
  const audit = auditOf(deps.practiceId, done);
  await payments.finishEvent(deps.practiceId, ref, done.outcome, { ...effects, ...(audit ? { audit } : {}) });
  return done;
}

/** What handling an event did, from what applying its command decided. */
export const resultOf = (event: StripeEventEnvelope, applied: Omit<Applied, 'effects'>): HandleResult =>
  ({ eventId: event.id, type: event.type, ledgerEntries: 0, writebacks: [], balanceIds: [], ...applied });

/**
 * The audit event of a handled event, when its outcome moved money or put a balance on hold (written with what it
 * changed, in the statement that marks the event processed).
 */
export function auditOf(practiceId: string, done: HandleResult): NewAuditEvent | undefined {
  if (!AUDITED_OUTCOMES.has(done.outcome)) return undefined;
  return {
    practiceId, actor: STRIPE_ACTOR, action: `payment.${done.outcome}`, entityType: 'payment', entityId: done.paymentId ?? null,
    detail: { eventId: done.eventId, type: done.type, ledgerEntries: done.ledgerEntries, writebacks: done.writebacks, balanceIds: done.balanceIds },
  };
}

/** Logs a handled event: ids and counts only. */
export function logHandled(deps: StripeEventHandlerDeps, result: HandleResult): void {
  const log = result.outcome === 'currency-mismatch' ? deps.logger.warn.bind(deps.logger) : deps.logger.info.bind(deps.logger);
  log('stripe event handled', {
    eventId: result.eventId, type: result.type, outcome: result.outcome, paymentId: result.paymentId,
    ledgerEntries: result.ledgerEntries, writebacks: result.writebacks.length,
  });
}

/** Outcomes that moved money or put a balance on hold: each is an audit event. */
const AUDITED_OUTCOMES: ReadonlySet<HandleOutcome> = new Set(['payment-posted', 'payment-failed', 'refund-posted', 'dispute-opened', 'dispute-won', 'dispute-lost']);

/** What handling writes last, in the statement that marks the event processed (`finishEvent`). */
export interface Effects {
  payment?: { id: string; change: PaymentChange };
  writebacks?: NewWriteback[];
}

/** What applying an event's command decided: its outcome and what to write last. */
export type Applied = Partial<HandleResult> & { outcome: HandleOutcome; effects?: Effects };

/** The payment an event refers to (looked up and locked once the event id is claimed); none for events that name none. */
export function lookupOf(command: StripeEventCommand): PaymentLookup | undefined {
  switch (command.kind) {
    case 'ignored':
    case 'checkout-expired':
      return undefined;
    case 'checkout-completed':
    case 'payment-succeeded':
    case 'payment-failed':
      return { ...optional('paymentId', command.refs.paymentId), ...optional('paymentIntent', command.paymentIntent) };
    case 'refunded':
      return { ...optional('paymentId', command.refs.paymentId), ...optional('paymentIntent', command.paymentIntent), charge: command.charge };
    case 'dispute-opened':
    case 'dispute-closed':
      return { ...optional('paymentIntent', command.paymentIntent), charge: command.charge };
  }
}

const optional = <K extends string>(key: K, value: string | undefined) => (value ? { [key]: value } as Record<K, string> : {});

/** Recording Stripe ids on a payment, unless it already carries exactly these (a change that changes nothing is not sent). */
function recordIds(payment: Payment, ids: StripeIds): Effects {
  const stored: Record<keyof StripeIds, string | null> = payment.stripe;
  const changes = (Object.keys(ids) as (keyof StripeIds)[]).some((key) => ids[key] !== undefined && ids[key] !== stored[key]);
  return changes ? { payment: { id: payment.id, change: { stripe: ids } } } : {};
}

/** What handling one event works with, inside its transaction. */
export interface Handling {
  readonly deps: StripeEventHandlerDeps;
  readonly ledger: LedgerRepository;
  readonly tx: Queryable;
  /** The date posted entries carry: today in the practice's time zone. */
  readonly today: string;
  /** The balances a pending (or failed) payment is for, read with it. */
  readonly balances: readonly PayableBalance[];
}

/** What handling works with inside `tx`; the date posted is today in the practice's time zone (as LedgerRepository.today reads it). */
export function handlingIn(deps: StripeEventHandlerDeps, tx: Queryable, timeZone: string | null, balances: readonly PayableBalance[]): Handling {
  const ledger = new LedgerRepository(tx, deps.cipher ?? unusedCipher(), deps.clock);
  return { deps, ledger, tx, today: localDate(deps.clock.now(), timeZone), balances };
}

/** Applies an event's command to the payment it refers to (see the module comment). */
export async function apply(handling: Handling, command: StripeEventCommand, payment: Payment | undefined): Promise<Applied> {
  const { deps, ledger } = handling;
  const practiceId = deps.practiceId;
  switch (command.kind) {
    case 'ignored':
    case 'checkout-expired':
      return { outcome: command.kind === 'ignored' ? 'ignored' : 'noop' };
    case 'checkout-completed':
    case 'payment-succeeded': {
      if (!payment) return { outcome: 'unknown-payment' };
      if (command.kind === 'checkout-completed' && !command.paid) {
        // An async payment method: the money has not moved yet; `async_payment_succeeded` follows.
        return { outcome: 'noop', paymentId: payment.id, effects: recordIds(payment, stripeIds(command)) };
      }
      const posted = await postPayment(handling, payment, command.amount ?? payment.amount, stripeIds(command));
      const plan = await movePlan(handling, command, payment, posted.outcome);
      return plan === undefined ? posted : { ...posted, plan };
    }
    case 'payment-failed': {
      if (!payment) return { outcome: 'unknown-payment' };
      if (payment.status !== 'pending') return { outcome: 'noop', paymentId: payment.id, effects: recordIds(payment, { paymentIntent: command.paymentIntent }) };
      const change: PaymentChange = { status: 'failed', failureCode: command.code ?? null, stripe: { paymentIntent: command.paymentIntent } };
      return { outcome: 'payment-failed', paymentId: payment.id, effects: { payment: { id: payment.id, change } } };
    }
    case 'refunded': {
      if (!payment) return { outcome: 'unknown-payment' };
      if (command.amountRefunded.currency !== payment.amount.currency) return { outcome: 'currency-mismatch', paymentId: payment.id };
      const cumulative = command.amountRefunded.amount;
      const room = payment.amount.amount - payment.refundedMinor - payment.reversedMinor;
      const delta = Math.min(cumulative - payment.refundedMinor, room);
      if (payment.allocations.length === 0 || delta <= 0) return { outcome: 'noop', paymentId: payment.id };
      const split = returnSplit(payment.allocations, payment.refundedMinor + payment.reversedMinor, delta);
      const posted = await postReturn(handling, 'Refund', payment.id, String(cumulative), split, payment.amount.currency, 'Card refund');
      const refundedMinor = payment.refundedMinor + delta;
      const change: PaymentChange = { refundedMinor, status: payment.status === 'disputed' ? 'disputed' : settledStatus(payment, refundedMinor), stripe: { charge: command.charge } };
      const writebackId = `refund-${payment.id}-${cumulative}`;
      const writeback: NewWriteback = { practiceId, paymentId: payment.id, kind: 'refund', writebackId, amount: { amount: delta, currency: payment.amount.currency }, allocations: split };
      return {
        outcome: 'refund-posted', paymentId: payment.id, ledgerEntries: posted.entries, balanceIds: posted.balanceIds, writebacks: [writebackId], allocations: split,
        effects: { payment: { id: payment.id, change }, writebacks: [writeback] },
      };
    }
    case 'dispute-opened': {
      if (!payment) return { outcome: 'unknown-payment' };
      const effects: Effects = { payment: { id: payment.id, change: { status: 'disputed', stripe: { dispute: command.dispute, charge: command.charge } } } };
      const balanceIds: string[] = [];
      await ledger.lockBalances(payment.allocations.map((a) => a.balanceId));
      for (const { balanceId } of payment.allocations) {
        await ledger.setStatus(balanceId, { status: 'disputed', actor: STRIPE_ACTOR, note: `Stripe dispute ${command.dispute} on payment ${payment.id}` });
        balanceIds.push(balanceId);
      }
      return { outcome: 'dispute-opened', paymentId: payment.id, balanceIds, effects };
    }
    case 'dispute-closed': {
      if (!payment) return { outcome: 'unknown-payment' };
      const lost = command.status === 'lost';
      let posted = { entries: 0, balanceIds: [] as string[] };
      const writebacks: string[] = [];
      const queued: NewWriteback[] = [];
      let split: PaymentAllocation[] = [];
      let reversedMinor = payment.reversedMinor;
      await ledger.lockBalances(payment.allocations.map((a) => a.balanceId));
      if (lost) {
        const delta = Math.min(command.amount.amount, payment.amount.amount - payment.refundedMinor - payment.reversedMinor);
        if (command.amount.currency !== payment.amount.currency) return { outcome: 'currency-mismatch', paymentId: payment.id };
        if (delta > 0 && payment.allocations.length > 0) {
          split = returnSplit(payment.allocations, payment.refundedMinor + payment.reversedMinor, delta);
          posted = await postReturn(handling, 'DisputeReversal', payment.id, command.dispute, split, payment.amount.currency, 'Card dispute lost');
          reversedMinor += delta;
          const writebackId = `reversal-${payment.id}-${command.dispute}`;
          queued.push({ practiceId, paymentId: payment.id, kind: 'reversal', writebackId, amount: { amount: delta, currency: payment.amount.currency }, allocations: split });
          writebacks.push(writebackId);
        }
      }
      // Lost: the payment stays `disputed` (its money went back); won or closed with a warning: as before.
      const change: PaymentChange = { reversedMinor, status: lost ? 'disputed' : settledStatus(payment, payment.refundedMinor) };
      const touched = new Set(posted.balanceIds);
      for (const { balanceId } of payment.allocations) {
        const balance = await ledger.getBalance(balanceId);
        if (balance?.status !== 'disputed') continue;
        await ledger.setStatus(balanceId, { status: liftedStatus(balance), actor: STRIPE_ACTOR, note: `Stripe dispute ${command.dispute} closed: ${command.status}` });
        touched.add(balanceId);
      }
      return {
        outcome: lost ? 'dispute-lost' : 'dispute-won', paymentId: payment.id, ledgerEntries: posted.entries, writebacks, balanceIds: [...touched],
        ...(lost ? { allocations: split } : {}),
        effects: { payment: { id: payment.id, change }, writebacks: queued },
      };
    }
  }
}

/**
 * What a plan's Checkout payment (see {@link isPlanCheckout}) does to its plan once the payment is posted (or was
 * already): the plan is activated, paid off or has the saved card recorded. Installments carry their number and are
 * recorded by the sweep that charged them, from Stripe's synchronous answer.
 * @returns the plan's outcome; undefined when the event is not a plan's Checkout payment or posted nothing.
 */
export async function movePlan(handling: Handling, command: StripeEventCommand, payment: Payment, outcome: HandleOutcome): Promise<PlanCheckoutOutcome | undefined> {
  if (command.kind !== 'checkout-completed' && command.kind !== 'payment-succeeded') return undefined;
  if (!isPlanCheckout(command) || (outcome !== 'payment-posted' && outcome !== 'payment-already-posted')) return undefined;
  return applyPlanCheckout(handling.tx, { clock: handling.deps.clock, ledger: handling.ledger }, {
    practiceId: handling.deps.practiceId, planId: command.refs.planId!, paymentId: payment.id, guarantorId: payment.guarantorId,
    ...(command.customer ? { customer: command.customer } : {}),
    ...(command.kind === 'payment-succeeded' && command.paymentMethod ? { paymentMethod: command.paymentMethod } : {}),
  });
}

/**
 * Whether an event is a plan's first installment (or its early payoff) paid through Checkout, which also moves its
 * plan: installments carry their number and are recorded by the sweep that charged them.
 */
export const isPlanCheckout = (command: StripeEventCommand): boolean =>
  (command.kind === 'checkout-completed' || command.kind === 'payment-succeeded') && command.refs.installment === undefined && isUuid(command.refs.planId);

/** The Stripe ids a payment event carries, to record on its payment. */
export function stripeIds(command: Extract<StripeEventCommand, { kind: 'checkout-completed' | 'payment-succeeded' }>): StripeIds {
  const ids: StripeIds = {};
  if (command.kind === 'checkout-completed') ids.checkoutSession = command.checkoutSession;
  if (command.paymentIntent) ids.paymentIntent = command.paymentIntent;
  if (command.customer) ids.customer = command.customer;
  if (command.kind === 'payment-succeeded' && command.charge) ids.charge = command.charge;
  return ids;
}

/** Marks a payment succeeded, posts it to its balances and queues its write-back (once per payment). */
async function postPayment(handling: Handling, payment: Payment, amount: Money, ids: StripeIds): Promise<Applied> {
  const { postings, ...planned } = planPayment(handling.deps.practiceId, { payment, amount, ids, balances: handling.balances, today: handling.today });
  if (postings.length === 0) return planned;
  const results = await handling.ledger.postSources(handling.deps.practiceId, postings);
  return { ...planned, ledgerEntries: entriesWritten(results) };
}

/** How many ledger entries these postings wrote (new entries and reversals). */
export const entriesWritten = (results: readonly PostingResult[]): number => results.reduce((sum, result) => sum + result.posted + result.reversed, 0);

/**
 * What succeeding a payment does, decided without writing anything: a payment still pending (or failed) is split
 * across the balances it is for (read with it), each part a ledger posting, marked succeeded and queued for
 * write-back; any other is already posted (its Stripe ids recorded). The ledger postings are the caller's to post.
 * @throws Error when the payment names no balance of its practice in its currency.
 */
export function planPayment(
  practiceId: string, { payment, amount, ids, balances: payable, today }: { payment: Payment; amount: Money; ids: StripeIds; balances: readonly PayableBalance[]; today: string },
): Applied & { postings: SourcePosting[] } {
  if (payment.status !== 'pending' && payment.status !== 'failed') {
    return { outcome: 'payment-already-posted', paymentId: payment.id, effects: recordIds(payment, ids), postings: [] };
  }
  if (amount.currency !== payment.amount.currency) return { outcome: 'currency-mismatch', paymentId: payment.id, postings: [] };
  const balances = payable.filter((b) => b.practiceId === practiceId && b.patientAmount.currency === amount.currency);
  if (balances.length === 0) throw new Error(`payment ${payment.id} names no balance of its practice in ${amount.currency}`);
  const allocations = allocate(amount.amount, balances);
  const byId = new Map(balances.map((b) => [b.id, b]));
  const postings = allocations.map((allocation): SourcePosting => {
    const balance = byId.get(allocation.balanceId)!;
    return {
      version: { connector: PAYMENT_LEDGER_CONNECTOR, resourceType: 'Payment', sourceId: `${payment.id}/${balance.id}`, versionId: '1', lastUpdated: null },
      target: { accountId: balance.accountId, guarantorId: balance.guarantorId, patientId: balance.patientId },
      lines: [{ lineKey: 'payment', kind: 'payment', amount: { amount: allocation.amountMinor, currency: amount.currency }, serviceDate: today, payer: 'patient', serviceCode: null, description: 'Card payment' }],
    };
  });
  const writebackId = `payment-${payment.id}`;
  return {
    outcome: 'payment-posted', paymentId: payment.id, balanceIds: allocations.map((a) => a.balanceId), writebacks: [writebackId], allocations, postings,
    effects: {
      payment: { id: payment.id, change: { status: 'succeeded', allocations, amount, stripe: ids, failureCode: null, succeeded: true } },
      writebacks: [{ practiceId, paymentId: payment.id, kind: 'payment', writebackId, amount, allocations }],
    },
  };
}

/**
 * Oldest balance first via `allocatePayment`. Stripe has already taken the money, so a payment larger than
 * what is owed now (the balance changed after checkout) is never refused: the excess stays on the oldest
 * balance as a credit for staff to refund or apply.
 */
function allocate(amountMinor: number, balances: readonly PayableBalance[]): PaymentAllocation[] {
  const allocatable: AllocatableBalance[] = balances.map((b) => ({ balanceId: b.id, openCents: b.patientAmount.amount, oldestServiceDate: b.oldestOpenDate ?? '9999-12-31' }));
  const owed = allocatable.reduce((sum, b) => sum + Math.max(0, b.openCents), 0);
  const split = owed > 0 ? allocatePayment(Math.min(amountMinor, owed), allocatable) : [];
  const allocations = split.map((a) => ({ balanceId: a.balanceId, amountMinor: a.amountCents }));
  const excess = amountMinor - Math.min(amountMinor, owed);
  if (excess > 0) {
    const oldest = allocationOrder(allocatable)[0]!.balanceId;
    const existing = allocations.find((a) => a.balanceId === oldest);
    if (existing) existing.amountMinor += excess;
    else allocations.unshift({ balanceId: oldest, amountMinor: excess });
  }
  return allocations;
}

/** Posts a refund or dispute reversal: a negative payment line per balance (the balance goes back up). */
async function postReturn(
  { deps: { practiceId }, ledger, today }: Handling, resourceType: 'Refund' | 'DisputeReversal', paymentId: string, key: string,
  split: readonly PaymentAllocation[], currency: string, description: string,
): Promise<{ entries: number; balanceIds: string[] }> {
  const postings: SourcePosting[] = [];
  for (const part of split) {
    const balance = await ledger.getBalance(part.balanceId);
    if (!balance) throw new Error(`balance ${part.balanceId} of payment ${paymentId} is gone`);
    postings.push({
      version: { connector: PAYMENT_LEDGER_CONNECTOR, resourceType, sourceId: `${paymentId}/${balance.id}/${key}`, versionId: '1', lastUpdated: null },
      target: { accountId: balance.accountId, guarantorId: balance.guarantorId, patientId: balance.patientId },
      lines: [{ lineKey: resourceType === 'Refund' ? 'refund' : 'reversal', kind: 'payment', amount: { amount: -part.amountMinor, currency }, serviceDate: today, payer: 'patient', serviceCode: null, description }],
    });
  }
  const results = await ledger.postSources(practiceId, postings);
  const entries = entriesWritten(results);
  const balanceIds = split.map((part) => part.balanceId);
  return { entries, balanceIds };
}
