/**
 * Source records → ledger (the `ingest.pending` job): the `pending` source records of every practice (any
 * transport, oldest first) are claimed a batch per practice and ingested with their mappings in one
 * transaction per batch (`ingestBatch`: set-based writes, the same results as one by one), in which each
 * record is also marked `ingested` (posted, unchanged, duplicate, stale, recorded) or `quarantined` (the
 * ingest quarantine holds the OperationOutcome; `GET /quarantine` lists it and can reprocess it). A batch
 * whose transaction throws is rolled back and its records are ingested one per transaction
 * (`pending-one-by-one.ts`).
 * The mapping is the one named by a CSV connector file, else the one mapping that accepts the record's
 * transport and resource type. **A record no mapping accepts (or that several accept) is quarantined at
 * once** in the intake quarantine (the one `GET /connectors` counts, as nothing can be reprocessed without a
 * mapping) with an OperationOutcome `not-supported`: "no mapping accepts ADT^A05/PID records from connector
 * pm-hl7v2 (hl7v2-mllp)". It is not left pending: pending records are taken oldest first, so unmapped ones
 * would pile up at the head of the queue and be re-read every minute. To ingest them after adding a
 * mapping: restart (mappings load at start-up), then reprocess the HL7 messages (or re-sync).
 * Records are claimed with a row lock (`FOR UPDATE SKIP LOCKED`), so concurrent runs never take one twice.
 */
import type { DataFile } from '../config/data-files.ts';
import type { Logger } from '../config/logger.ts';
import type { MappingRegistry } from '../mapping/load.ts';
import { withTransaction } from '../store/database.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { PracticeRepository } from '../store/practices.ts';
import { SourceRecordRepository } from '../store/source-records.ts';
import { DEFAULT_BATCH_SIZE, drain, ingestBatchSize, ingestDrainers, type BatchOptions, type ProcessDependencies } from './drain.ts';
import { validatorFor } from './mapping-choice.ts';
import { ingestClaimed, type RecordOutcome } from './pending-claimed.ts';
import { ingestOneByOne } from './pending-one-by-one.ts';
import type { IngestContext } from './pipeline.ts';

/** Options of {@link ingestPendingSourceRecords}. */
export interface IngestPendingOptions extends ProcessDependencies {
  cipher: PhiCipher;
  mappings: MappingRegistry;
  /**
   * StructureDefinitions (the `data` of `fhir-profiles/` files). Given (even empty), FHIR records are validated
   * against the base R4 definitions and these profiles before mapping; absent, they are not validated.
   */
  profiles?: readonly Record<string, unknown>[];
  /** Connector files: a CSV connector's `mapping` names the mapping of its records. */
  connectors?: readonly DataFile[];
  /** Records taken per practice (default {@link DEFAULT_BATCH_SIZE}). */
  limit?: number;
}

/** What {@link ingestPendingSourceRecords} did. */
export interface IngestCounts {
  /** Records taken. */
  records: number;
  /** Marked ingested, by what the ledger did. */
  posted: number;
  unchanged: number;
  duplicate: number;
  stale: number;
  recorded: number;
  /** Quarantined by the pipeline (mapping, validation or posting failed). */
  quarantined: number;
  /** Quarantined because no mapping (or more than one) accepts them. */
  unmapped: number;
  /** Taken by a concurrent run, or no longer pending. */
  skipped: number;
  /** Left pending because their transaction threw. */
  errors: number;
}

/**
 * Ingests pending source records of every practice (oldest first, up to `limit` per practice) with the
 * practice's time zone: one transaction per practice claims them, ingests them together (`ingestBatch`)
 * and marks each ingested or quarantined. When that transaction throws (a record the ledger refuses, database
 * trouble), it is rolled back and the records are ingested one per transaction instead, so one bad record
 * neither blocks nor alters the others.
 */
export async function ingestPendingSourceRecords(options: IngestPendingOptions): Promise<IngestCounts> {
  const { db, clock, logger } = options;
  const counts: IngestCounts = { records: 0, posted: 0, unchanged: 0, duplicate: 0, stale: 0, recorded: 0, quarantined: 0, unmapped: 0, skipped: 0, errors: 0 };
  const validate = validatorFor(options.profiles);
  const limit = options.limit ?? DEFAULT_BATCH_SIZE;
  for (const practice of await new PracticeRepository(db.pool).list()) {
    const context: IngestContext & { timeZone: string } = { cipher: options.cipher, clock, timeZone: practice.timeZone, validate, dropBodiesOnceMapped: true };
    let outcomes: RecordOutcome[];
    try {
      outcomes = await withTransaction(db, async (tx) => ingestClaimed(tx, await new SourceRecordRepository(tx, clock).claimPending(tx, practice.id, limit), options, context));
    } catch (error) {
      logger.warn('source record batch rolled back; ingesting its records one by one', { practiceId: practice.id, error: (error as Error).name, code: (error as { code?: string }).code });
      outcomes = await ingestOneByOne(await new SourceRecordRepository(db.pool, clock).pending(practice.id, limit), options, context);
    }
    counts.records += outcomes.length;
    for (const outcome of outcomes) {
      counts[outcome.status === 'error' ? 'errors' : outcome.status]++;
      report(logger, outcome);
    }
  }
  return counts;
}

/**
 * Ingests every pending source record, a batch at a time (each batch takes up to `batchSize` per practice,
 * by default {@link ingestBatchSize}; it ends the run when it took fewer than `batchSize` in all), `drainers` batches
 * at once (by default {@link ingestDrainers}: two on a PostgreSQL server). @returns the totals of the run.
 */
export async function drainPendingSourceRecords(options: Omit<IngestPendingOptions, 'limit'> & BatchOptions): Promise<IngestCounts> {
  return drain(
    { ...options, limit: options.batchSize ?? ingestBatchSize(options.db), drainers: options.drainers ?? ingestDrainers(options.db) },
    (limit) => ingestPendingSourceRecords({ ...options, limit }),
    (c) => c.records,
    (c) => c.records - c.skipped - c.errors,
    { records: 0, posted: 0, unchanged: 0, duplicate: 0, stale: 0, recorded: 0, quarantined: 0, unmapped: 0, skipped: 0, errors: 0 },
  );
}

/** Logs a quarantined or failed record by ids and codes only. */
function report(logger: Logger, { record, status, mapping, candidates, error }: RecordOutcome): void {
  const ids = { practiceId: record.practiceId, sourceRecordId: record.id, connector: record.connector, resourceType: record.resourceType };
  if (status === 'unmapped' || status === 'quarantined') {
    const reason = status === 'quarantined' ? 'ingest' : candidates && candidates.length > 0 ? 'ambiguous-mapping' : 'no-mapping';
    logger.warn('source record quarantined', { ...ids, reason, mapping });
  } else if (status === 'error') {
    logger.error('source record ingest failed; left pending for the next run', { ...ids, error: (error as Error).name, code: (error as { code?: string }).code });
  }
}
