/**
 * Group commit of inbound HL7 messages across the connections of one MLLP listener.
 *
 * Messages are committed in batches, one statement (one commit) per batch. A batch starts at once when nothing
 * is committing; while one is, the next waits for it, unless `maxBatch` messages are waiting: then up to
 * `maxInFlight` full batches commit at once, each on its own pooled connection (one is inserted while the
 * previous one is flushed to disk).
 *
 * Gathering: senders that wait for each ACK send their next message right after it. When a batch commits, its
 * senders are expected back; a batch does not start while some of them have not sent again, for at most
 * `gatherMs`. Without it, senders split into two groups that alternate (one group commits while the other
 * waits for that commit to end), so each commit carries half of them. With it, they all share one commit. A
 * lone sender never waits (it is the only one expected), and a sender that has gone quiet costs one `gatherMs`.
 *
 * Order: a sender's messages are committed in the order they were given: a message is not put in a batch while
 * an earlier message of the same sender is in one that has not committed yet. Duplicates across concurrent
 * batches are safe: PostgreSQL makes the second insert of a key wait for the first one's commit (the unique key),
 * so a duplicate is only reported once the row it duplicates is committed.
 */
import type { Hl7MessageRepository, NewHl7Message, StoreResult } from '../../store/hl7-messages.ts';

/** Where batches are committed: a {@link Hl7MessageRepository} on a pool (each call commits on its own). */
export type BatchStore = Pick<Hl7MessageRepository, 'store' | 'storeMany'>;

/** What {@link CommitBatcher} did so far (for benchmarks and diagnostics). */
export interface CommitBatcherStats {
  /** Batches committed (a failed batch retried message by message counts once). */
  batches: number;
  /** Messages given to {@link CommitBatcher.store}. */
  messages: number;
  /** Most batches that were committing at the same time. */
  peakInFlight: number;
  /** Batches that started when `gatherMs` ran out rather than when every expected sender was back. */
  gatherTimeouts: number;
  /** Milliseconds during which at least one batch was committing (what the database took; the rest is the listener and its senders). */
  committingMs: number;
}

interface Entry {
  message: NewHl7Message;
  sender: object;
  resolve: (result: StoreResult) => void;
  reject: (error: unknown) => void;
}

/** Commits messages in batches, several batches at once; see the module comment for the order and duplicate rules. */
export class CommitBatcher {
  private readonly repository: BatchStore;
  private readonly maxBatch: number;
  private readonly maxInFlight: number;
  private readonly gatherMs: number;
  private pending: Entry[] = [];
  /** Senders with a message in a batch that has not committed yet. */
  private readonly busy = new Set<object>();
  /** Senders of batches committed since the last batch started that have not sent again yet. */
  private readonly expected = new Set<object>();
  private gatherTimer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  /** When the batches now in flight started committing (the first of them, if several overlap). */
  private committingSince = 0;
  private readonly counters: CommitBatcherStats = { batches: 0, messages: 0, peakInFlight: 0, gatherTimeouts: 0, committingMs: 0 };

  /**
   * @param store where batches are committed.
   * @param options `maxBatch`: most messages per batch (at least 1); `maxInFlight`: most batches committing at once
   * (at least 1; keep it below the pool size so other work still gets a connection); `gatherMs`: longest a
   * batch waits for expected senders (0: never waits).
   */
  constructor(store: BatchStore, options: { maxBatch: number; maxInFlight: number; gatherMs: number }) {
    this.repository = store;
    this.maxBatch = Math.max(1, Math.trunc(options.maxBatch));
    this.maxInFlight = Math.max(1, Math.trunc(options.maxInFlight));
    this.gatherMs = Math.max(0, options.gatherMs);
  }

  /**
   * Resolves once the message is committed (or recognised as already stored); rejects when it could not be.
   * @param sender identifies who sent it (the connection): its messages commit in the order given.
   */
  store(message: NewHl7Message, sender: object): Promise<StoreResult> {
    this.counters.messages++;
    return new Promise((resolve, reject) => {
      this.pending.push({ message, sender, resolve, reject });
      this.expected.delete(sender);
      this.startBatches();
    });
  }

  /** The sender is gone (its connection closed): no batch waits for it. */
  forget(sender: object): void {
    if (this.expected.delete(sender)) this.startBatches();
  }

  /** A snapshot of the counters. */
  stats(): CommitBatcherStats {
    const committing = this.inFlight > 0 ? performance.now() - this.committingSince : 0;
    return { ...this.counters, committingMs: this.counters.committingMs + committing };
  }

  private startBatches(): void {
    while (this.inFlight < this.maxInFlight) {
      const batch = this.nextBatch();
      if (batch.length === 0) return;
      if (batch.length < this.maxBatch) {
        // A partial batch waits for the one in flight: its senders come back and share the next commit.
        if (this.inFlight > 0) return;
        if (this.expected.size > 0 && this.gatherMs > 0) {
          this.gatherTimer ??= setTimeout(() => {
            this.gatherTimer = undefined;
            this.counters.gatherTimeouts++;
            this.expected.clear();
            this.startBatches();
          }, this.gatherMs);
          return;
        }
      }
      clearTimeout(this.gatherTimer);
      this.gatherTimer = undefined;
      this.expected.clear();
      this.take(batch);
      if (this.inFlight++ === 0) this.committingSince = performance.now();
      this.counters.peakInFlight = Math.max(this.counters.peakInFlight, this.inFlight);
      void this.commit(batch).finally(() => {
        if (--this.inFlight === 0) this.counters.committingMs += performance.now() - this.committingSince;
        const queued = new Set(this.pending.map((entry) => entry.sender));
        for (const entry of batch) {
          this.busy.delete(entry.sender);
          if (!queued.has(entry.sender)) this.expected.add(entry.sender);
        }
        this.startBatches();
      });
    }
  }

  /** Up to `maxBatch` waiting messages whose sender has nothing uncommitted, oldest first (pending is unchanged). */
  private nextBatch(): Entry[] {
    const batch: Entry[] = [];
    const held = new Set<object>();
    for (const entry of this.pending) {
      if (batch.length === this.maxBatch) break;
      if (!this.busy.has(entry.sender) && !held.has(entry.sender)) batch.push(entry);
      else held.add(entry.sender); // a later message of this sender must not overtake this one
    }
    return batch;
  }

  /** Moves a batch from pending to in flight. */
  private take(batch: Entry[]): void {
    const taken = new Set(batch);
    this.pending = this.pending.filter((entry) => !taken.has(entry));
    for (const entry of batch) this.busy.add(entry.sender);
  }

  /** Commits a batch; when it fails, each message is tried alone so one bad row cannot fail the others. */
  private async commit(batch: Entry[]): Promise<void> {
    this.counters.batches++;
    try {
      const results = await this.repository.storeMany(batch.map((entry) => entry.message));
      batch.forEach((entry, i) => entry.resolve(results[i]));
    } catch (error) {
      if (batch.length === 1) {
        batch[0].reject(error);
        return;
      }
      for (const entry of batch) {
        await this.repository.store(entry.message).then(entry.resolve, entry.reject);
      }
    }
  }
}
