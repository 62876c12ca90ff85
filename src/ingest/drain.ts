/**
 * What both ingest stages share: their dependencies, batch sizes, and the loop that runs batches until the
 * work is done (`drain`).
 */
import type { Logger } from '../config/logger.ts';
import type { Clock } from '../domain/clock.ts';
import type { Database } from '../store/database.ts';

/** Rows taken per batch (per practice, for source records) when nothing else is said. */
export const DEFAULT_BATCH_SIZE = 100;
/**
 * Pending source records taken per practice and batch on a PostgreSQL server: fewer, larger transactions
 * (measured in `bench/mapping.bench.ts`). Embedded PGlite serialises connections, so it keeps
 * {@link DEFAULT_BATCH_SIZE} and its transactions short.
 */
export const SERVER_INGEST_BATCH_SIZE = 250;
/** Source records (or CSV rows) ingested per transaction on this database when nothing else is said. */
export function ingestBatchSize(db: Pick<Database, 'kind'>): number {
  return db.kind === 'server' ? SERVER_INGEST_BATCH_SIZE : DEFAULT_BATCH_SIZE;
}

/** Batches one job run handles at most before leaving the rest to the next run. */
export const DEFAULT_MAX_BATCHES = 50;

/**
 * Batches of pending source records ingested at once on a PostgreSQL server, each in its own transaction on its own
 * connection: while the database posts one batch, this process claims and maps the next (mapping is Node's work,
 * posting the server's), instead of each waiting for the other. Two keep both busy; more add connections (each new
 * server session costs ~50 ms of the server's CPU before it runs at speed) and lock waits between batches, for no more
 * overlap (`bench/mapping.bench.ts`). Embedded PGlite runs its statements in this process, one at a time: one batch.
 */
export const SERVER_INGEST_DRAINERS = 2;
/** Batches of pending source records ingested at once on this database when nothing else is said. */
export function ingestDrainers(db: Pick<Database, 'kind'>): number {
  return db.kind === 'server' ? SERVER_INGEST_DRAINERS : 1;
}

/** What both stages need. */
export interface ProcessDependencies {
  db: Database;
  clock: Clock;
  logger: Logger;
}

/** How a job run batches. */
export interface BatchOptions {
  /** Rows per batch (default {@link DEFAULT_BATCH_SIZE}; pending source records on a server {@link SERVER_INGEST_BATCH_SIZE}). */
  batchSize?: number;
  /** Batches per run at most, all drainers together (default {@link DEFAULT_MAX_BATCHES}); the rest waits for the next run. */
  maxBatches?: number;
  /**
   * Batches run at once, each drainer taking the next batch when its own is done (default 1; pending source records:
   * {@link ingestDrainers}). Only for batches that take their rows with `FOR UPDATE SKIP LOCKED`, so that drainers
   * never take the same row.
   */
  drainers?: number;
}

/**
 * Runs batches of `limit` rows until one comes back short (nothing left) or makes no progress (every row
 * skipped or erroring), at most `maxBatches` times in all, adding each batch's counts to `total`. With `drainers` > 1,
 * that many run batches at once, each stopping at its own short or fruitless batch; a batch that throws stops them all
 * after their current batch. The run settles once every one has stopped, and throws the first failure only then
 * (nothing of the run is still going when the job ends).
 * @returns `total`.
 */
export async function drain<C extends Record<string, number>>(
  options: BatchOptions & { limit: number },
  batch: (limit: number) => Promise<C>,
  taken: (c: C) => number,
  progress: (c: C) => number,
  total: C,
): Promise<C> {
  let budget = options.maxBatches ?? DEFAULT_MAX_BATCHES;
  const drainer = async () => {
    while (budget > 0) {
      budget--;
      let counts: C;
      try {
        counts = await batch(options.limit);
      } catch (error) {
        budget = 0;
        throw error;
      }
      for (const key of Object.keys(counts) as (keyof C)[]) total[key] = (total[key] + counts[key]) as C[keyof C];
      if (taken(counts) < options.limit || progress(counts) === 0) return;
    }
  };
  const ends = await Promise.allSettled(Array.from({ length: Math.max(1, options.drainers ?? 1) }, drainer));
  const failed = ends.find((end) => end.status === 'rejected');
  if (failed) throw failed.reason;
  return total;
}
