/**
 * Group commit of Stripe webhook deliveries on the embedded database: Stripe sends several events at once (up to its concurrency per
 * endpoint), each request waiting for its 2xx. Handling each in its own transaction costs a BEGIN and a COMMIT
 * (and, on the embedded database, a turn of its single session) per event; here, events that arrive while a
 * transaction is being handled wait for it and are then handled together in the next one, through
 * `handleStripeEvents` (each event claimed, applied and marked processed exactly as alone).
 *
 * - A lone event starts at once: batching never adds waiting when there is nothing to wait for.
 * - Only on the embedded database, whose single session runs one transaction at a time anyway: events that would
 *   queue for it go together instead. On a PostgreSQL server each event keeps its own transaction, run in parallel
 *   on the pool's connections: there, two batches in flight would each hold the practice's audit head (taken by
 *   the first event's finish) while their next event waits for a payment the other batch locked, a deadlock
 *   (measured: 8 in flight, 2 batches at once, 24 events/s instead of ~480).
 * - A retry of an event already committed is answered by one read, outside any batch (as `handleStripeEvent` does).
 * - Nothing is answered before its batch commits (durability before the 2xx, as before).
 * - A batch whose transaction fails is handled again one event per transaction, so one event the store refuses
 *   neither delays nor fails the others: each request gets its own event's result or error.
 */
import { PaymentRepository } from '../store/payments.ts';
import { commandForEvent } from './stripe-events.ts';
import type { StripeEventEnvelope } from './stripe-webhook.ts';
import { handleStripeEvent, handleStripeEvents, type HandleResult, type StripeEventHandlerDeps } from './webhook-handler.ts';

interface Waiting {
  event: StripeEventEnvelope;
  resolve: (result: HandleResult) => void;
  reject: (error: unknown) => void;
}

/** Most events handled in one transaction. */
const MAX_BATCH = 32;

/** Handles the Stripe events of one endpoint (one practice's handler deps), batching those that arrive together. */
export class StripeEventBatcher {
  readonly #deps: StripeEventHandlerDeps;
  #waiting: Waiting[] = [];
  #handling = false;
  /** Transactions committed so far, batched or one by one (for tests and benchmarks). */
  transactions = 0;

  constructor(deps: StripeEventHandlerDeps) {
    this.#deps = deps;
  }

  /**
   * Handles one verified event; resolves once it is committed (or was already handled).
   * @throws StripeEventError when the event lacks what Settle needs (before anything is stored); a store error.
   */
  async handle(event: StripeEventEnvelope): Promise<HandleResult> {
    if (this.#deps.db.kind === 'server') return handleStripeEvent(this.#deps, event);
    commandForEvent(event); // refuses an unreadable event now, for this request only
    const account = typeof event.account === 'string' ? event.account : '';
    if (await new PaymentRepository(this.#deps.db.pool, this.#deps.clock).getEvent(this.#deps.practiceId, event.id, account)) {
      return { outcome: 'duplicate', eventId: event.id, type: event.type, ledgerEntries: 0, writebacks: [], balanceIds: [] };
    }
    return new Promise<HandleResult>((resolve, reject) => {
      this.#waiting.push({ event, resolve, reject });
      if (!this.#handling) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#handling = true;
    try {
      while (this.#waiting.length > 0) {
        const batch = this.#waiting.splice(0, MAX_BATCH);
        let results: HandleResult[] | undefined;
        try {
          results = await handleStripeEvents(this.#deps, batch.map((w) => w.event));
          this.transactions++;
        } catch {
          // Rolled back: nothing of the batch is stored. Each event again on its own, so one refused event fails alone.
          await Promise.all(batch.map(async (w) => {
            try {
              w.resolve(await handleStripeEvent(this.#deps, w.event));
              this.transactions++;
            } catch (error) {
              w.reject(error);
            }
          }));
          continue;
        }
        batch.forEach((w, i) => w.resolve(results[i]!));
      }
    } finally {
      this.#handling = false;
    }
  }
}

const batchers = new WeakMap<StripeEventHandlerDeps, StripeEventBatcher>();

/** The batcher of a webhook endpoint's handler deps (one per deps object: the route keeps one for its life). */
export function stripeEventBatcher(deps: StripeEventHandlerDeps): StripeEventBatcher {
  let batcher = batchers.get(deps);
  if (!batcher) batchers.set(deps, (batcher = new StripeEventBatcher(deps)));
  return batcher;
}
