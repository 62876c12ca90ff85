/**
 * Handles a batch of verified Stripe events set-based: concurrent webhook deliveries gathered together
 * (`webhook-gather.ts`) and the sandbox's checkouts of a simulated day. Each event ends as it would alone
 * (`handleStripeEvent`), with a fixed number of statements per batch instead of per event:
 *
 * 1. one read finds the events handled before (Stripe's retries: duplicates, no transaction);
 * 2. BEGIN; ONE statement claims all the others by id (`claimEvents`: a concurrent delivery of the same id waits
 *    and then sees a duplicate) and finds and locks the payments they refer to, with the balances of those still
 *    pending;
 * 3. each event's command is applied in order, in memory (two events of one payment: the second sees the payment
 *    as the first left it), and the ledger postings of all payments are posted by ONE `LedgerBatch.postSources`;
 * 4. ONE statement (`finishEvents`) marks the events processed, writes the payments' changes and the write-back
 *    outbox rows and appends their audit events as one chain segment; COMMIT.
 *
 * Locks are taken in one order by every batch and by every single event: event ids (sorted), payments (by id),
 * the ledger's sources and balances (sorted), then the plans of plan Checkout payments, the practice's audit head
 * last; so concurrent batches on a server wait for each other and never deadlock.
 *
 * Batched: payment successes (`checkout.session.completed`, `payment_intent.succeeded`; a plan's Checkout payment
 * then moves its plan, after the batch's postings, as it would alone), failures, expired checkouts and ignored
 * events. Handled alone, each in its own transaction after the batch (`handleStripeEvent`): refunds and disputes
 * (rare, and they change balance statuses one by one), an event whose payment is not found (an id recorded by
 * another event might find it), and a payment sharing a balance with one already posted in the batch (its split
 * must see that balance as posted). Those whose
 * claim was made are released by the finishing statement. When the batch's transaction fails (an event the
 * database refuses), each of its events is handled alone, so one bad event fails only itself.
 */
import type { Payment, PaymentChange } from '../store/payments.ts';
import { eventKey, PaymentRepository } from '../store/payments.ts';
import { withTransaction, type Queryable } from '../store/database.ts';
import { LedgerBatch, type SourcePosting } from '../store/ledger-batch.ts';
import type { NewAuditEvent } from '../store/audit.ts';
import { commandForEvent, type StripeEventCommand } from './stripe-events.ts';
import type { StripeEventEnvelope } from './stripe-webhook.ts';
import {
  apply, auditOf, duplicateOf, entriesWritten, eventRef, handleStripeEvent, handlingIn, logHandled, lookupOf, movePlan, planPayment, resultOf, stripeIds,
  type Applied, type Handling, type HandleResult, type StripeEventHandlerDeps,
} from './webhook-handler.ts';

/** How one event of a batch ended: handled, or the error its delivery answers (nothing of it stored). */
export type SettledEvent = { result: HandleResult } | { error: unknown };

/** Command kinds a batch handles set-based; the others are handled alone (see the module comment). */
const BATCHED: ReadonlySet<StripeEventCommand['kind']> = new Set(['ignored', 'checkout-expired', 'checkout-completed', 'payment-succeeded', 'payment-failed']);

/**
 * Handles these verified events (see the module comment); a second delivery of an event id in the same batch is
 * answered as a duplicate once the first is handled (or with its error).
 * @returns per event, in order, its result or its error: a StripeEventError when it lacks what Settle needs
 *   (answer 400), a store error otherwise (answer 5xx so that Stripe retries). Every result is committed.
 * @throws a store error of the read of handled events (nothing was stored).
 */
export async function settleStripeEvents(deps: StripeEventHandlerDeps, events: readonly StripeEventEnvelope[]): Promise<SettledEvent[]> {
  const settled = new Array<SettledEvent>(events.length);
  const commands: (StripeEventCommand | undefined)[] = events.map((event, i) => {
    try {
      return commandForEvent(event);
    } catch (error) {
      settled[i] = { error };
      return undefined;
    }
  });
  const firsts = new Map<string, number>();
  const copies: [copy: number, first: number][] = [];
  for (const [i, event] of events.entries()) {
    if (!commands[i]) continue;
    const first = firsts.get(eventKey(eventRef(event)));
    if (first === undefined) firsts.set(eventKey(eventRef(event)), i);
    else copies.push([i, first]);
  }
  const retried = await new PaymentRepository(deps.db.pool, deps.clock).handledEvents(deps.practiceId, [...firsts.values()].map((i) => eventRef(events[i]!)));
  const batch: number[] = [];
  const alone: number[] = [];
  for (const i of firsts.values()) {
    const command = commands[i]!;
    if (retried.has(eventKey(eventRef(events[i]!)))) settled[i] = { result: duplicateOf(events[i]!) };
    else if (BATCHED.has(command.kind)) batch.push(i);
    else alone.push(i);
  }
  if (batch.length > 0) {
    try {
      const results = await withTransaction(deps.db, (tx) => handleTogether(deps, tx, batch.map((i) => ({ event: events[i]!, command: commands[i]! }))));
      results.forEach((result, j) => {
        if (result) settled[batch[j]!] = { result };
        else alone.push(batch[j]!);
      });
    } catch (error) {
      deps.logger.warn('stripe event batch failed: handling its events one by one', { events: batch.length, error: error instanceof Error ? error.message : String(error) });
      alone.push(...batch);
    }
  }
  const logged = new Set(alone);
  for (const i of alone) {
    try {
      settled[i] = { result: await handleStripeEvent(deps, events[i]!) };
    } catch (error) {
      settled[i] = { error };
    }
  }
  for (const [copy, first] of copies) settled[copy] = 'result' in settled[first]! ? { result: duplicateOf(events[copy]!) } : settled[first]!;
  settled.forEach((outcome, i) => {
    if ('result' in outcome && !logged.has(i)) logHandled(deps, outcome.result);
  });
  return settled;
}

/**
 * Handles several verified events together (see the module comment), as the sandbox's checkouts of one simulated
 * day in `settle demo`. Every event handled is committed before this returns.
 * @returns the results, in order.
 * @throws the first event's error when any failed (the others are committed: each is acknowledged on its own).
 */
export async function handleStripeEvents(deps: StripeEventHandlerDeps, events: readonly StripeEventEnvelope[]): Promise<HandleResult[]> {
  if (events.length === 0) return [];
  const settled = await settleStripeEvents(deps, events);
  const failed = settled.find((outcome) => 'error' in outcome);
  if (failed) throw failed.error;
  return settled.map((outcome) => (outcome as { result: HandleResult }).result);
}

/** What one claimed event of a batch decided, before anything of the batch is written. */
interface Decided {
  readonly event: StripeEventEnvelope;
  applied: Applied;
  readonly postings: readonly SourcePosting[];
  /** A payment event's handling and payment, for its plan (a plan's Checkout payment moves it once posted). */
  readonly paid?: { readonly handling: Handling; readonly command: StripeEventCommand; readonly payment: Payment };
}

/**
 * Claims, applies and finishes a batch of events inside `tx` (steps 2 to 4 of the module comment).
 * @returns per event its result; undefined for an event released to be handled alone.
 */
async function handleTogether(
  deps: StripeEventHandlerDeps, tx: Queryable, items: readonly { event: StripeEventEnvelope; command: StripeEventCommand }[],
): Promise<(HandleResult | undefined)[]> {
  const payments = new PaymentRepository(tx, deps.clock);
  const { claims, timeZone } = await payments.claimEvents(deps.practiceId, items.map(({ event, command }) => ({ event: eventRef(event), refs: lookupOf(command) ?? {} })));
  // Payments as this batch leaves them, and the balances its payments post to.
  const current = new Map<string, Payment>();
  const posting = new Set<string>();
  const decided: (Decided | 'duplicate' | 'released')[] = [];
  for (const [j, { event, command }] of items.entries()) {
    const claim = claims[j]!;
    const found = claim.payment && (current.get(claim.payment.id) ?? claim.payment);
    const handling = handlingIn(deps, tx, timeZone, claim.balances);
    let outcome: Decided | 'duplicate' | 'released';
    if (!claim.claimed) outcome = 'duplicate';
    else if (lookupOf(command) && !found) outcome = 'released';
    else if ((command.kind === 'checkout-completed' && command.paid) || command.kind === 'payment-succeeded') {
      const payment = found!;
      const pending = payment.status === 'pending' || payment.status === 'failed';
      if (pending && payment.balanceIds.some((id) => posting.has(id))) outcome = 'released';
      else {
        const { postings, ...applied } = planPayment(deps.practiceId, { payment, amount: command.amount ?? payment.amount, ids: stripeIds(command), balances: claim.balances, today: handling.today });
        if (postings.length > 0) for (const id of payment.balanceIds) posting.add(id);
        outcome = { event, applied, postings, paid: { handling, command, payment } };
      }
    } else outcome = { event, applied: await apply(handling, command, found), postings: [] };
    if (typeof outcome === 'object' && outcome.applied.effects?.payment) {
      const { id, change } = outcome.applied.effects.payment;
      current.set(id, changed(current.get(id) ?? found!, change));
    }
    decided.push(outcome);
  }
  const postings = decided.flatMap((d) => (typeof d === 'object' ? d.postings : []));
  const posted = postings.length > 0 ? await new LedgerBatch(tx, deps.clock).postSources(deps.practiceId, postings) : [];
  // Plans move after every payment is posted, in event order (one event alone posts, then moves its plan: `apply`).
  for (const d of decided) {
    if (typeof d !== 'object' || !d.paid) continue;
    const plan = await movePlan(d.paid.handling, d.paid.command, d.paid.payment, d.applied.outcome);
    if (plan !== undefined) d.applied = { ...d.applied, plan };
  }
  let next = 0;
  const results = decided.map((d, j): HandleResult | undefined => {
    if (d === 'released') return undefined;
    if (d === 'duplicate') return duplicateOf(items[j]!.event);
    const { effects: _effects, ...applied } = d.applied;
    const mine = posted.slice(next, (next += d.postings.length));
    const ledgerEntries = (applied.ledgerEntries ?? 0) + entriesWritten(mine);
    return resultOf(d.event, { ...applied, ledgerEntries });
  });
  const changes = new Map<string, PaymentChange>();
  const audit: NewAuditEvent[] = [];
  decided.forEach((d, j) => {
    if (typeof d !== 'object') return;
    const payment = d.applied.effects?.payment;
    if (payment) changes.set(payment.id, merged(changes.get(payment.id), payment.change));
    const event = auditOf(deps.practiceId, results[j]!);
    if (event) audit.push(event);
  });
  await payments.finishEvents(
    deps.practiceId,
    results.flatMap((result, j) => (result && result.outcome !== 'duplicate' ? [{ ...eventRef(items[j]!.event), outcome: result.outcome }] : [])),
    {
      payments: [...changes].map(([id, change]) => ({ id, change })),
      writebacks: decided.flatMap((d) => (typeof d === 'object' ? d.applied.effects?.writebacks ?? [] : [])),
      audit,
      released: decided.flatMap((d, j) => (d === 'released' ? [eventRef(items[j]!.event)] : [])),
    },
  );
  return results;
}

/** Two changes of one payment as one (the later one's fields win, as two updates in turn would leave it). */
function merged(before: PaymentChange | undefined, after: PaymentChange): PaymentChange {
  if (!before) return after;
  return { ...before, ...after, stripe: { ...before.stripe, ...after.stripe }, succeeded: before.succeeded === true || after.succeeded === true };
}

/** A payment as a change leaves it (what the next event of the batch sees). */
function changed(payment: Payment, change: PaymentChange): Payment {
  const s = change.stripe ?? {};
  return {
    ...payment,
    status: change.status ?? payment.status,
    allocations: change.allocations ? [...change.allocations] : payment.allocations,
    amount: change.amount ?? payment.amount,
    refundedMinor: change.refundedMinor ?? payment.refundedMinor,
    reversedMinor: change.reversedMinor ?? payment.reversedMinor,
    failureCode: change.failureCode !== undefined ? change.failureCode : payment.failureCode,
    stripe: {
      checkoutSession: s.checkoutSession ?? payment.stripe.checkoutSession, paymentIntent: s.paymentIntent ?? payment.stripe.paymentIntent,
      charge: s.charge ?? payment.stripe.charge, customer: s.customer ?? payment.stripe.customer, dispute: s.dispute ?? payment.stripe.dispute,
    },
  };
}
