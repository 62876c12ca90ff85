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
  /** Batches per run at most (default {@link DEFAULT_MAX_BATCHES}); the rest waits for the next run. */
  maxBatches?: number;
}

/**
 * Runs batches of `limit` rows until one comes back short (nothing left) or makes no progress (every row
 * skipped or erroring), at most `maxBatches` times, adding each batch's counts to `total`.
 * @returns `total`.
 */
export async function drain<C extends Record<string, number>>(
  options: BatchOptions & { limit: number },
  batch: (limit: number) => Promise<C>,
  taken: (c: C) => number,
  progress: (c: C) => number,
  total: C,
): Promise<C> {
  for (let i = 0; i < (options.maxBatches ?? DEFAULT_MAX_BATCHES); i++) {
    const counts = await batch(options.limit);
    for (const key of Object.keys(counts) as (keyof C)[]) total[key] = (total[key] + counts[key]) as C[keyof C];
    if (taken(counts) < options.limit || progress(counts) === 0) break;
  }
  return total;
}
