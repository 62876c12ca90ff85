/**
 * HL7 messages → source records (the `hl7.process` job): each stored HL7 message with status `received` (oldest
 * first) becomes source records (`toSourceRecords`). A batch of messages is handled in one transaction: the
 * records of every message that converts are stored (`pending`) and it is marked `processed`; a message any part
 * of which cannot be converted stores nothing and is marked `failed` with every problem, located
 * (`FT1[2]-11 invalid_value: …`). When the batch's transaction fails, each message is tried in a transaction of
 * its own, so one message that cannot be stored holds back no other.
 * All or nothing: a DFT whose second FT1 is bad stores none of its FT1s, so after the sender's correction
 * (or `settle hl7 reprocess`) the message posts whole. Reprocessing a message (set back to `received`) stores
 * nothing twice (source records are keyed by connector, type, source id and version) and puts its
 * `quarantined` records back to `pending`, so a fixed or newly added mapping gets another go at them.
 * Messages are taken with a row lock (`FOR UPDATE SKIP LOCKED`) and re-checked inside the transaction.
 */
import { toSourceRecords, type Hl7ConversionProblem } from '../connectors/hl7v2/to-source-records.ts';
import type { SourceRecord } from '../domain/source-record.ts';
import { withTransaction, type Queryable } from '../store/database.ts';
import { Hl7MessageRepository, type Hl7MessageRecord } from '../store/hl7-messages.ts';
import { SourceRecordRepository } from '../store/source-records.ts';
import { DEFAULT_BATCH_SIZE, drain, type BatchOptions, type ProcessDependencies } from './drain.ts';

/** Options of {@link processHl7Messages}. */
export interface ProcessHl7Options extends ProcessDependencies {
  /** Messages taken (default {@link DEFAULT_BATCH_SIZE}). */
  limit?: number;
  /** Currency of FT1 amounts that name none (default USD). */
  defaultCurrency?: string;
}

/** What {@link processHl7Messages} did. */
export interface Hl7ProcessCounts {
  /** Messages taken. */
  messages: number;
  processed: number;
  failed: number;
  /** Source records newly stored (a reprocessed message's records are already stored: 0). */
  recordsStored: number;
  /** Stored source records of reprocessed messages put back from `quarantined` to `pending`. */
  recordsRequeued: number;
  /** Taken by a concurrent run, or no longer `received`. */
  skipped: number;
  /** Left `received` because their transaction threw. */
  errors: number;
}

/** Renders conversion problems as the message's `error`: `FT1[2]-11 invalid_value: …; PID-18 …`. */
export function describeHl7Problems(problems: readonly Hl7ConversionProblem[]): string {
  const text = problems.map((p) => `${locationOf(p)}${p.code}: ${p.message}`).join('; ');
  return text.length > 2000 ? `${text.slice(0, 1990)}… (${problems.length} problems)` : text;
}

function locationOf(problem: Hl7ConversionProblem): string {
  const at = problem.location;
  if (!at) return '';
  return `${at.segment}${at.occurrence === undefined ? '' : `[${at.occurrence}]`}${at.field === undefined ? '' : `-${at.field}`} `;
}

/** A message with what its conversion gave: its records, or the problems that fail it. */
interface Converted {
  message: Hl7MessageRecord;
  records: SourceRecord[];
  problems: Hl7ConversionProblem[];
}

/** What one transaction did with its messages. */
interface Settled {
  processed: Converted[];
  failed: Converted[];
  skipped: number;
  stored: number;
  requeued: number;
}

/**
 * Turns received HL7 messages (oldest first, up to `limit`) into source records in one transaction (see the
 * module comment), or one transaction per message when that fails.
 */
export async function processHl7Messages(options: ProcessHl7Options): Promise<Hl7ProcessCounts> {
  const { db, clock, logger } = options;
  const counts: Hl7ProcessCounts = { messages: 0, processed: 0, failed: 0, recordsStored: 0, recordsRequeued: 0, skipped: 0, errors: 0 };
  const messages = await new Hl7MessageRepository(db.pool).pending(options.limit ?? DEFAULT_BATCH_SIZE);
  counts.messages = messages.length;
  if (messages.length === 0) return counts;
  // Conversion is pure: done before the transaction, which stays short.
  const converted = messages.map((message) => convert(message, options.defaultCurrency));
  const tally = (settled: Settled) => {
    counts.processed += settled.processed.length;
    counts.failed += settled.failed.length;
    counts.skipped += settled.skipped;
    counts.recordsStored += settled.stored;
    counts.recordsRequeued += settled.requeued;
    for (const { message, problems } of settled.failed) {
      logger.warn('hl7 message failed conversion', {
        practiceId: message.practiceId,
        messageId: message.id,
        connector: message.connector,
        messageType: message.messageType,
        problems: problems.map((p) => `${locationOf(p)}${p.code}`.trim()),
      });
    }
  };
  try {
    tally(await withTransaction(db, (tx) => settle(tx, converted, clock.now(), clock)));
    return counts;
  } catch (error) {
    if (converted.length === 1) return recordError(counts, logger, converted[0]!.message, error);
  }
  for (const one of converted) {
    try {
      tally(await withTransaction(db, (tx) => settle(tx, [one], clock.now(), clock)));
    } catch (error) {
      recordError(counts, logger, one.message, error);
    }
  }
  return counts;
}

function convert(message: Hl7MessageRecord, defaultCurrency: string | undefined): Converted {
  try {
    return { message, ...toSourceRecords(message, { defaultCurrency }) };
  } catch (error) {
    return { message, records: [], problems: [{ code: 'unparseable', message: `conversion failed (${(error as Error).name})` }] };
  }
}

/** Locks the messages still `received`, stores the records of those that convert and marks each processed or failed. */
async function settle(tx: Queryable, converted: readonly Converted[], now: Date, clock: ProcessDependencies['clock']): Promise<Settled> {
  const repository = new Hl7MessageRepository(tx);
  const claimed = await repository.claimReceived(converted.map((c) => c.message));
  const mine = converted.filter((c) => claimed.has(c.message.id));
  const failed = mine.filter((c) => c.problems.length > 0);
  const processed = mine.filter((c) => c.problems.length === 0);
  const records = processed.flatMap((c) => c.records);
  const stored = await new SourceRecordRepository(tx, clock).storeMany(tx, records);
  const requeued = stored < records.length ? await requeueQuarantined(tx, records, now) : 0;
  await repository.settle(
    mine.map(({ message, problems }) => ({ practiceId: message.practiceId, id: message.id, error: problems.length > 0 ? describeHl7Problems(problems) : null })),
    now,
  );
  return { processed, failed, skipped: converted.length - mine.length, stored, requeued };
}

/** A message whose transaction threw stays `received` for the next run. */
function recordError(counts: Hl7ProcessCounts, logger: ProcessDependencies['logger'], message: Hl7MessageRecord, error: unknown): Hl7ProcessCounts {
  counts.errors++;
  logger.error('hl7 message processing failed; left received for the next run', {
    practiceId: message.practiceId,
    messageId: message.id,
    error: (error as Error).name,
    code: (error as { code?: string }).code,
  });
  return counts;
}

/** Handles every received HL7 message, a batch at a time. @returns the totals of the run. */
export async function drainHl7Messages(options: Omit<ProcessHl7Options, 'limit'> & BatchOptions): Promise<Hl7ProcessCounts> {
  return drain(
    { ...options, limit: options.batchSize ?? DEFAULT_BATCH_SIZE },
    (limit) => processHl7Messages({ ...options, limit }),
    (c) => c.messages,
    (c) => c.processed + c.failed,
    { messages: 0, processed: 0, failed: 0, recordsStored: 0, recordsRequeued: 0, skipped: 0, errors: 0 },
  );
}

/**
 * Puts the already-stored, quarantined versions of these records back to `pending` (a reprocessed message),
 * resolving their open intake quarantine entries. @returns how many.
 */
async function requeueQuarantined(tx: Queryable, records: readonly SourceRecord[], at: Date): Promise<number> {
  if (records.length === 0) return 0;
  const { rows } = await tx.query<{ id: string }>(
    `UPDATE source_records s SET status = 'pending', ingested_at = NULL
     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[]) AS k (practice_id, connector, resource_type, source_id, version_id)
     WHERE s.practice_id = k.practice_id AND s.connector = k.connector AND s.resource_type = k.resource_type
       AND s.source_id = k.source_id AND s.version_id = k.version_id AND s.status = 'quarantined'
     RETURNING s.id::text AS id`,
    [records.map((r) => r.practiceId), records.map((r) => r.connector), records.map((r) => r.resourceType), records.map((r) => r.sourceId), records.map((r) => r.versionId)],
  );
  if (rows.length > 0) {
    await tx.query('UPDATE quarantine SET resolved_at = $2 WHERE source_record_id = ANY($1::bigint[]) AND resolved_at IS NULL', [rows.map((r) => r.id), at]);
  }
  return rows.length;
}
