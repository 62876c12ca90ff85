/**
 * The connections a Bulk import stores its batches on (see `importBulkExport`).
 *
 * Each writer holds one connection of the pool for the whole file and stores each batch with statements of their
 * own, outside any transaction block: each statement commits alone, so a batch of new versions is one round trip
 * (a transaction of its own took six: BEGIN, SET LOCAL, SAVEPOINT, INSERT, RELEASE, COMMIT), and a refused plain
 * insert needs no savepoint to be retried (see `SourceRecordRepository.storeMany`).
 * A writer's batches are stored in the order they were handed over, each sent as soon as the one before it is
 * stored (from the driver's callback, without waiting for the parsing loop to look), so the database goes from one
 * batch to the next while the next lines are parsed.
 * A batch's bodies wait in a buffer of the writer's as UTF-8 bytes, laid out as they are sent (see
 * {@link BulkWriter.addRecord}), and the buffers are used again batch after batch: the lines' text does not stay in
 * V8's heap until it is stored (copied into the old generation, each line, by the young generation's collector), and
 * no fresh memory is touched for each batch (this VM's page faults cost about 14 µs for each 4 KiB).
 */
import type pg from 'pg';
import type { Database } from '../../store/database.ts';
import type { NewSourceRecord } from '../../store/source-records.ts';
import type { ClassifiedPage } from './sync.ts';

/** Batches a writer holds handed over but not stored yet (the one being stored included), past which a hand-over waits. */
const QUEUED_BATCHES = 2;

/**
 * The size of a writer's body buffers: twice a batch's 1 MiB of JSON, so that a batch's bodies almost always lie in
 * one (a larger line gets a buffer of its own, and its batch's bodies are copied together when stored).
 */
const BODY_BUFFER_BYTES = 2 * 2 ** 20;

/** Stores one batch on the writer's connection. */
export type StoreBatch = (client: pg.PoolClient, batch: ClassifiedPage) => Promise<void>;

/** An empty batch. */
export const emptyBatch = (): ClassifiedPage => ({ records: [], quarantined: [], stamps: [] });

/** One connection, the batch being filled for it, and the batches handed over to it, stored in order. */
export class BulkWriter {
  /** The batch being filled, and its lines' length in characters. */
  batch: ClassifiedPage = emptyBatch();
  chars = 0;
  readonly client: pg.PoolClient;
  private readonly store: StoreBatch;
  /** Settles once every batch handed over is stored; rejects with the first failure (later batches are not tried). */
  private last: Promise<void> = Promise.resolve();
  private readonly queued: Promise<void>[] = [];
  /** The buffers the bodies of the batch being filled lie in (the last one is written next), and where its bytes end. */
  private bodyBuffers: Buffer[] = [];
  private bodiesEnd = 0;
  /** Body buffers of stored batches, to be used again. */
  private readonly spareBuffers: Buffer[] = [];

  constructor(client: pg.PoolClient, store: StoreBatch) {
    this.client = client;
    this.store = store;
  }

  /** Lines in the batch being filled. */
  get size(): number {
    return this.batch.records.length + this.batch.quarantined.length;
  }

  /**
   * Adds a record to the batch being filled, its body (the JSON text received) written into the batch's body buffer
   * as UTF-8 right after the one before, and a U+001E after it: the record keeps a view of those bytes, not the text,
   * and `SourceRecordRepository.storeMany` sends the batch's bodies where they lie.
   */
  addRecord(record: NewSourceRecord & { bodyText: string }): void {
    const text = record.bodyText;
    const buffer = this.bodyBufferFor(text);
    const start = this.bodiesEnd;
    const end = start + buffer.write(text, start);
    buffer[end] = 0x1e;
    this.bodiesEnd = end + 1;
    this.batch.records.push({ ...record, bodyText: undefined, bodyBytes: buffer.subarray(start, end) });
  }

  /**
   * The body buffer `text` and the U+001E after it go into: the batch's current one while they fit (a UTF-16 unit is at
   * most 3 bytes of UTF-8), else a spare one or a new one, or one of their size when they are larger.
   */
  private bodyBufferFor(text: string): Buffer {
    const current = this.bodyBuffers.at(-1);
    const room = current === undefined ? 0 : current.length - this.bodiesEnd;
    if (current !== undefined && text.length * 3 + 1 <= room) return current;
    const bytes = Buffer.byteLength(text) + 1;
    if (current !== undefined && bytes <= room) return current;
    const buffer = bytes <= BODY_BUFFER_BYTES ? (this.spareBuffers.pop() ?? Buffer.allocUnsafe(BODY_BUFFER_BYTES)) : Buffer.allocUnsafe(bytes);
    this.bodyBuffers.push(buffer);
    this.bodiesEnd = 0;
    return buffer;
  }

  /**
   * Hands the batch being filled over to be stored after the ones before it, first waiting while
   * {@link QUEUED_BATCHES} are already waiting (so memory holds at most that many batches and one filling).
   * @throws the failure of an earlier batch.
   */
  async handOver(): Promise<void> {
    while (this.queued.length >= QUEUED_BATCHES) await this.queued[0];
    const batch = this.batch;
    const buffers = this.bodyBuffers;
    this.batch = emptyBatch();
    this.chars = 0;
    this.bodyBuffers = [];
    this.bodiesEnd = 0;
    const stored = this.last.then(() => this.store(this.client, batch));
    this.last = stored;
    this.queued.push(stored);
    // Stored batches settle in order: the first queued is this one. A failure is thrown by the next hand-over or by stored().
    const settled = () => {
      this.queued.shift();
      // The statements are done with the bodies: the buffers take the next batches' (a larger one is let go).
      for (const buffer of buffers) if (buffer.length === BODY_BUFFER_BYTES) this.spareBuffers.push(buffer);
    };
    stored.then(settled, () => {});
  }

  /** Settles once every batch handed over is stored. @throws the first failure. */
  stored(): Promise<void> {
    return this.last;
  }
}

/**
 * Opens up to `count` writers, each on a connection of the pool, one connection always left to the pool (for the
 * run's heartbeat and checkpoints). On a PostgreSQL server each connection commits without waiting for the disk
 * (`synchronous_commit = off` for its session, until {@link closeWriters}): safe, since the checkpoints move only in
 * the import's last commit, synchronous, which flushes every batch before it; a batch lost with the server is
 * exported and stored again. Not on the embedded database, whose one session every connection shares (the setting
 * would reach them all), and which does not wait for the disk anyway (PGlite runs with fsync off).
 */
export async function openWriters(db: Database, count: number, store: StoreBatch): Promise<BulkWriter[]> {
  const writers: BulkWriter[] = [];
  try {
    for (let i = 0; i < Math.max(1, Math.min(count, (db.connection.max ?? 10) - 1)); i++) {
      const client = await db.pool.connect();
      writers.push(new BulkWriter(client, store));
      if (db.kind === 'server') await client.query('SET synchronous_commit = off');
    }
  } catch (error) {
    await closeWriters(db, writers);
    throw error;
  }
  return writers;
}

/**
 * Waits until every writer's batches are stored or failed, then gives the connections back to the pool (settings
 * reset; a connection whose batch failed is closed instead). Never throws: the failures are {@link BulkWriter.stored}'s.
 */
export async function closeWriters(db: Database, writers: readonly BulkWriter[]): Promise<void> {
  const ends = await Promise.allSettled(writers.map((w) => w.stored()));
  for (const [i, writer] of writers.entries()) {
    if (ends[i]!.status === 'rejected') {
      writer.client.release(true);
      continue;
    }
    try {
      if (db.kind === 'server') await writer.client.query('RESET synchronous_commit');
      writer.client.release();
    } catch (error) {
      writer.client.release(error as Error);
    }
  }
}
