/**
 * Gathers concurrent webhook deliveries into batches (`settleStripeEvents`, one set-based transaction each), so
 * that the embedded database, which runs one statement at a time, spends its statements per batch rather than per
 * event (group commit).
 *
 * No timer: the first delivery for a practice starts a batch at the end of the current turn of the event loop
 * (deliveries arriving in that turn join it); deliveries arriving while a batch runs wait for it and form the next,
 * up to {@link WEBHOOK_BATCH_LIMIT} events. A lone delivery is handled at once. Each delivery is answered only once
 * its batch committed (durability before acknowledgement). A process runs one batch at a time per database and
 * practice; batches of several processes on a server wait for each other's locks (taken in one order: no deadlock).
 */
import type { Database } from '../store/database.ts';
import type { StripeEventEnvelope } from './stripe-webhook.ts';
import { settleStripeEvents } from './webhook-batch.ts';
import type { HandleResult, StripeEventHandlerDeps } from './webhook-handler.ts';

/** The most events one batch handles. */
export const WEBHOOK_BATCH_LIMIT = 64;

interface Waiting {
  readonly deps: StripeEventHandlerDeps;
  readonly event: StripeEventEnvelope;
  readonly resolve: (result: HandleResult) => void;
  readonly reject: (error: unknown) => void;
}

/** Per database, per practice: the deliveries waiting for the next batch (present while a batch runs or is due). */
const queues = new WeakMap<Database, Map<string, Waiting[]>>();

/**
 * Handles a verified event in the next batch of its database and practice (see the module comment). The batch
 * runs with the deps of its first delivery (the same database and practice; clock and logger of one engine).
 * @returns once the batch committed, what handling the event did.
 * @throws StripeEventError when the event lacks what Settle needs (nothing stored: answer 400); a store error
 *   (nothing of the event stored: answer 5xx so that Stripe retries).
 */
export function gatherStripeEvent(deps: StripeEventHandlerDeps, event: StripeEventEnvelope): Promise<HandleResult> {
  let practices = queues.get(deps.db);
  if (!practices) queues.set(deps.db, (practices = new Map()));
  let waiting = practices.get(deps.practiceId);
  const start = !waiting;
  if (!waiting) practices.set(deps.practiceId, (waiting = []));
  const queue = waiting;
  const handled = new Promise<HandleResult>((resolve, reject) => queue.push({ deps, event, resolve, reject }));
  if (start) void drain(practices, deps.practiceId, queue);
  return handled;
}

/** Runs batches while deliveries wait, then forgets the queue. */
async function drain(practices: Map<string, Waiting[]>, practiceId: string, queue: Waiting[]): Promise<void> {
  while (queue.length > 0) {
    // Deliveries arriving in this turn of the event loop (those answered by the last batch sending their next) join.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const batch = queue.splice(0, WEBHOOK_BATCH_LIMIT);
    try {
      const settled = await settleStripeEvents(batch[0]!.deps, batch.map((w) => w.event));
      settled.forEach((outcome, i) => ('result' in outcome ? batch[i]!.resolve(outcome.result) : batch[i]!.reject(outcome.error)));
    } catch (error) {
      for (const w of batch) w.reject(error);
    }
  }
  practices.delete(practiceId);
}
