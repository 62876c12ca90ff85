/**
 * The glue between stored input and the ledger, run by two jobs:
 *
 * 1. `hl7.process` — {@link processHl7Messages}: each stored HL7 message with status `received` (oldest first)
 *    becomes source records (`toSourceRecords`). In one transaction per message the records are stored
 *    (`pending`) and the message is marked `processed`; or, when any part of it cannot be converted, nothing is
 *    stored and the message is marked `failed` with every problem, located (`FT1[2]-11 invalid_value: …`).
 *    All or nothing: a DFT whose second FT1 is bad stores none of its FT1s, so after the sender's correction
 *    (or `settle hl7 reprocess`) the message posts whole. Reprocessing a message (set back to `received`) stores
 *    nothing twice (source records are keyed by connector, type, source id and version) and puts its
 *    `quarantined` records back to `pending`, so a fixed or newly added mapping gets another go at them.
 *
 * 2. `ingest.pending` — {@link ingestPendingSourceRecords}: the `pending` source records of every practice (any
 *    transport, oldest first) are claimed a batch per practice and ingested with their mappings in one
 *    transaction per batch (`ingestBatch`: set-based writes, the same results as one by one), in which each
 *    record is also marked `ingested` (posted, unchanged, duplicate, stale, recorded) or `quarantined` (the
 *    ingest quarantine holds the OperationOutcome; `GET /quarantine` lists it and can reprocess it). A batch
 *    whose transaction throws is rolled back and its records are ingested one per transaction.
 *    The mapping is the one named by a CSV connector file, else the one mapping that accepts the record's
 *    transport and resource type. **A record no mapping accepts (or that several accept) is quarantined at
 *    once** in the intake quarantine (the one `GET /connectors` counts, as nothing can be reprocessed without a
 *    mapping) with an OperationOutcome `not-supported`: "no mapping accepts ADT^A05/PID records from connector
 *    pm-hl7v2 (hl7v2-mllp)". It is not left pending: pending records are taken oldest first, so unmapped ones
 *    would pile up at the head of the queue and be re-read every minute. To ingest them after adding a
 *    mapping: restart (mappings load at start-up), then reprocess the HL7 messages (or re-sync).
 *
 * Both take rows with a row lock (`FOR UPDATE SKIP LOCKED`) and re-check their status inside the transaction,
 * so a scheduled run and one enqueued after a listener stores never handle the same row twice. A row whose
 * transaction throws (database trouble, a bug) is left as it was, logged by id, counted as `errors`, and taken
 * again by the next run. Logs carry ids and codes only.
 */
import type { OperationOutcome } from '@medplum/fhirtypes';
import type { DataFile } from '../config/data-files.ts';
import type { Logger } from '../config/logger.ts';
import { toSourceRecords, type Hl7ConversionProblem } from '../connectors/hl7v2/to-source-records.ts';
import type { Clock } from '../domain/clock.ts';
import type { SourceRecord } from '../domain/source-record.ts';
import type { MappingIssue, CompiledMapping } from '../mapping/compile.ts';
import type { MappingRegistry } from '../mapping/load.ts';
import type { JobDefinition } from '../scheduler/scheduler.ts';
import { withTransaction, type Database, type Queryable } from '../store/database.ts';
import { Hl7MessageRepository, type Hl7MessageRecord } from '../store/hl7-messages.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { PracticeRepository } from '../store/practices.ts';
import { SourceRecordRepository, type StoredSourceRecord } from '../store/source-records.ts';
import { fhirValidator } from './fhir-validation.ts';
import { ingestBatch, type BatchItem } from './batch.ts';
import type { IngestContext, IngestResult } from './pipeline.ts';

/** Job names, so the registration, the schedule and enqueuers (listener, sync) agree. */
export const INGEST_JOBS = {
  /** Stored HL7 messages → source records. */
  hl7Process: 'hl7.process',
  /** Pending source records → ledger. */
  ingestPending: 'ingest.pending',
} as const;

/** Rows taken per batch (per practice, for source records). */
export const DEFAULT_BATCH_SIZE = 100;
/** Batches one job run handles at most before leaving the rest to the next run. */
export const DEFAULT_MAX_BATCHES = 50;

/** What both stages need. */
export interface ProcessDependencies {
  db: Database;
  clock: Clock;
  logger: Logger;
}

// ---------------------------------------------------------------------------------------------------------
// HL7 messages → source records
// ---------------------------------------------------------------------------------------------------------

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

/**
 * Turns received HL7 messages (oldest first, up to `limit`) into source records: one transaction per message
 * stores its records and marks it processed, or marks it failed with its located problems and stores nothing.
 */
export async function processHl7Messages(options: ProcessHl7Options): Promise<Hl7ProcessCounts> {
  const { db, clock, logger } = options;
  const counts: Hl7ProcessCounts = { messages: 0, processed: 0, failed: 0, recordsStored: 0, recordsRequeued: 0, skipped: 0, errors: 0 };
  const messages = await new Hl7MessageRepository(db.pool).pending(options.limit ?? DEFAULT_BATCH_SIZE);
  counts.messages = messages.length;
  for (const message of messages) {
    // Conversion is pure: done before the transaction, which stays short.
    let records: SourceRecord[];
    let problems: Hl7ConversionProblem[];
    try {
      ({ records, problems } = toSourceRecords(message, { defaultCurrency: options.defaultCurrency }));
    } catch (error) {
      records = [];
      problems = [{ code: 'unparseable', message: `conversion failed (${(error as Error).name})` }];
    }
    try {
      const outcome = await withTransaction(db, async (tx) => {
        if (!(await claimHl7Message(tx, message))) return { kind: 'skipped' as const };
        const repository = new Hl7MessageRepository(tx);
        const now = clock.now();
        if (problems.length > 0) {
          await repository.markFailed(message.practiceId, message.id, describeHl7Problems(problems), now);
          return { kind: 'failed' as const };
        }
        const stored = await new SourceRecordRepository(tx, clock).storeMany(tx, records);
        const requeued = stored < records.length ? await requeueQuarantined(tx, records, now) : 0;
        await repository.markProcessed(message.practiceId, message.id, now);
        return { kind: 'processed' as const, stored, requeued };
      });
      if (outcome.kind === 'skipped') {
        counts.skipped++;
      } else if (outcome.kind === 'failed') {
        counts.failed++;
        logger.warn('hl7 message failed conversion', {
          practiceId: message.practiceId,
          messageId: message.id,
          connector: message.connector,
          messageType: message.messageType,
          problems: problems.map((p) => `${locationOf(p)}${p.code}`.trim()),
        });
      } else {
        counts.processed++;
        counts.recordsStored += outcome.stored;
        counts.recordsRequeued += outcome.requeued;
      }
    } catch (error) {
      counts.errors++;
      logger.error('hl7 message processing failed; left received for the next run', {
        practiceId: message.practiceId,
        messageId: message.id,
        error: (error as Error).name,
        code: (error as { code?: string }).code,
      });
    }
  }
  return counts;
}

// ---------------------------------------------------------------------------------------------------------
// Source records → ledger
// ---------------------------------------------------------------------------------------------------------

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

/** The OperationOutcome of a record no single mapping accepts. */
export function unmappedOutcome(record: Pick<SourceRecord, 'connector' | 'transport' | 'resourceType'>, candidates: readonly string[]): OperationOutcome {
  const what = `${record.resourceType} records from connector ${record.connector} (${record.transport})`;
  const text =
    candidates.length === 0
      ? `no mapping accepts ${what}; add a mapping file whose source accepts them, restart, then reprocess or re-sync`
      : `${candidates.length} mappings accept ${what} (${candidates.join(', ')}); name one in the connector file or narrow their sources`;
  return {
    resourceType: 'OperationOutcome',
    issue: [
      {
        severity: 'error',
        code: 'not-supported',
        details: { coding: [{ system: 'https://settle.dev/CodeSystem/mapping-issue', code: candidates.length === 0 ? 'no-mapping' : 'ambiguous-mapping' }], text },
        diagnostics: text,
      },
    ],
  };
}

/** Picks the mapping of a record: the one its CSV connector names, else the one that accepts it. */
export function mappingFor(
  record: Pick<SourceRecord, 'connector' | 'transport' | 'resourceType'>,
  mappings: MappingRegistry,
  connectors: readonly DataFile[] = [],
): { mapping: CompiledMapping } | { candidates: string[] } {
  if (record.transport === 'csv') {
    const named = connectors.find((c) => c.name === record.connector && c.data.transport === 'csv')?.data.mapping;
    const mapping = typeof named === 'string' ? mappings.get(named) : undefined;
    if (mapping) return { mapping };
  }
  const accepting = mappings.accepting(record.transport, record.resourceType);
  return accepting.length === 1 ? { mapping: accepting[0]! } : { candidates: accepting.map((m) => m.name) };
}

const validators = new WeakMap<readonly Record<string, unknown>[], (record: SourceRecord) => MappingIssue[]>();

function validatorFor(profiles: readonly Record<string, unknown>[] | undefined): ((record: SourceRecord) => MappingIssue[]) | undefined {
  if (profiles === undefined) return undefined;
  let validate = validators.get(profiles);
  if (!validate) {
    validate = fhirValidator(profiles);
    validators.set(profiles, validate);
  }
  return validate;
}

/** The raw text an intake quarantine entry keeps: the HL7 message, else the body as JSON. */
function rawOf(record: SourceRecord): string {
  const body = record.body as { message?: unknown } | null;
  return record.transport === 'hl7v2-mllp' && typeof body?.message === 'string' ? body.message : JSON.stringify(record.body);
}

/** What happened to one taken record. */
interface RecordOutcome {
  record: StoredSourceRecord;
  status: IngestResult['status'] | 'unmapped' | 'skipped' | 'error';
  /** The mapping it went through, or the candidates when not exactly one accepts it. */
  mapping?: string;
  candidates?: string[];
  error?: unknown;
}

/**
 * Ingests pending source records of every practice (oldest first, up to `limit` per practice) with the
 * practice's time zone: one transaction per practice claims them, ingests them together ({@link ingestBatch})
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
    const context: IngestContext & { timeZone: string } = { cipher: options.cipher, clock, timeZone: practice.timeZone, validate };
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

/** Ingests claimed records in the caller's transaction: unmapped ones to the intake quarantine, the rest as a batch. */
async function ingestClaimed(tx: Queryable, records: readonly StoredSourceRecord[], options: IngestPendingOptions, context: IngestContext & { timeZone: string }): Promise<RecordOutcome[]> {
  const outcomes: RecordOutcome[] = [];
  const items: BatchItem[] = [];
  const repository = new SourceRecordRepository(tx, options.clock);
  for (const record of records) {
    const chosen = mappingFor(record, options.mappings, options.connectors);
    if ('mapping' in chosen) {
      items.push({ record, mapping: chosen.mapping });
      continue;
    }
    await repository.quarantine(tx, {
      practiceId: record.practiceId,
      connector: record.connector,
      resourceType: record.resourceType,
      sourceId: record.sourceId,
      sourceRecordId: record.id,
      raw: rawOf(record),
      outcome: unmappedOutcome(record, chosen.candidates),
    });
    outcomes.push({ record, status: 'unmapped', candidates: chosen.candidates });
  }
  const results = await ingestBatch(tx, items, context);
  items.forEach((item, n) => outcomes.push({ record: item.record, status: results[n]!.status, mapping: item.mapping.name }));
  return outcomes;
}

/** Ingests each record in its own transaction (claimed again; one taken meanwhile by another run is skipped). */
async function ingestOneByOne(records: readonly StoredSourceRecord[], options: IngestPendingOptions, context: IngestContext & { timeZone: string }): Promise<RecordOutcome[]> {
  const outcomes: RecordOutcome[] = [];
  for (const record of records) {
    try {
      outcomes.push(
        ...(await withTransaction(options.db, async (tx) =>
          (await claimSourceRecord(tx, record)) ? ingestClaimed(tx, [record], options, context) : [{ record, status: 'skipped' as const }],
        )),
      );
    } catch (error) {
      outcomes.push({ record, status: 'error', error });
    }
  }
  return outcomes;
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

// ---------------------------------------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------------------------------------

/** How a job run batches. */
export interface BatchOptions {
  /** Rows per batch (default {@link DEFAULT_BATCH_SIZE}). */
  batchSize?: number;
  /** Batches per run at most (default {@link DEFAULT_MAX_BATCHES}); the rest waits for the next run. */
  maxBatches?: number;
}

/**
 * Runs batches until one comes back short (nothing left) or makes no progress (every row skipped or erroring),
 * at most `maxBatches` times.
 */
async function drain<C extends object>(options: BatchOptions, batch: (limit: number) => Promise<C>, taken: (c: C) => number, progress: (c: C) => number, add: (total: C, c: C) => void, total: C): Promise<C> {
  const limit = options.batchSize ?? DEFAULT_BATCH_SIZE;
  for (let i = 0; i < (options.maxBatches ?? DEFAULT_MAX_BATCHES); i++) {
    const counts = await batch(limit);
    add(total, counts);
    if (taken(counts) < limit || progress(counts) === 0) break;
  }
  return total;
}

function addCounts<C extends Record<string, number>>(total: C, counts: C): void {
  for (const key of Object.keys(counts) as (keyof C)[]) total[key] = (total[key] + counts[key]) as C[keyof C];
}

/** Handles every received HL7 message, a batch at a time. @returns the totals of the run. */
export async function drainHl7Messages(options: Omit<ProcessHl7Options, 'limit'> & BatchOptions): Promise<Hl7ProcessCounts> {
  return drain(
    options,
    (limit) => processHl7Messages({ ...options, limit }),
    (c) => c.messages,
    (c) => c.processed + c.failed,
    addCounts,
    { messages: 0, processed: 0, failed: 0, recordsStored: 0, recordsRequeued: 0, skipped: 0, errors: 0 },
  );
}

/**
 * Ingests every pending source record, a batch at a time (each batch takes up to `batchSize` per practice;
 * it ends the run when it took fewer than `batchSize` in all). @returns the totals of the run.
 */
export async function drainPendingSourceRecords(options: Omit<IngestPendingOptions, 'limit'> & BatchOptions): Promise<IngestCounts> {
  return drain(
    options,
    (limit) => ingestPendingSourceRecords({ ...options, limit }),
    (c) => c.records,
    (c) => c.records - c.skipped - c.errors,
    addCounts,
    { records: 0, posted: 0, unchanged: 0, duplicate: 0, stale: 0, recorded: 0, quarantined: 0, unmapped: 0, skipped: 0, errors: 0 },
  );
}

/** The `hl7.process` job: stored HL7 messages → source records. Data: `{}`. */
export function hl7ProcessJob(
  deps: ProcessDependencies &
    BatchOptions & {
      defaultCurrency?: string;
      /** Called after a run that stored or requeued source records (e.g. to enqueue `ingest.pending` at once). */
      onRecordsStored?: (count: number) => Promise<unknown>;
    },
): JobDefinition<Record<string, never>> {
  return {
    name: INGEST_JOBS.hl7Process,
    concurrency: 1,
    async run() {
      const counts = await drainHl7Messages(deps);
      if (counts.messages > 0) deps.logger.info('hl7 messages processed', { ...counts });
      const stored = counts.recordsStored + counts.recordsRequeued;
      if (stored > 0) await deps.onRecordsStored?.(stored);
    },
  };
}

/** The `ingest.pending` job: pending source records → ledger. Data: `{}`. */
export function ingestJob(
  deps: ProcessDependencies & BatchOptions & Pick<IngestPendingOptions, 'cipher' | 'mappings' | 'profiles' | 'connectors'>,
): JobDefinition<Record<string, never>> {
  return {
    name: INGEST_JOBS.ingestPending,
    concurrency: 1,
    async run() {
      const counts = await drainPendingSourceRecords(deps);
      if (counts.records > 0) deps.logger.info('source records ingested', { ...counts });
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Row claims and status changes the repositories do not offer (yet)
// ---------------------------------------------------------------------------------------------------------

/** Locks a message for this transaction; false when another run holds it or it is no longer `received`. */
async function claimHl7Message(tx: Queryable, message: Pick<Hl7MessageRecord, 'practiceId' | 'id'>): Promise<boolean> {
  const { rows } = await tx.query<{ status: string }>('SELECT status FROM hl7_messages WHERE practice_id = $1 AND id = $2 FOR UPDATE SKIP LOCKED', [message.practiceId, message.id]);
  return rows[0]?.status === 'received';
}

/** Locks a source record for this transaction; false when another run holds it or it is no longer `pending`. */
async function claimSourceRecord(tx: Queryable, record: Pick<StoredSourceRecord, 'practiceId' | 'id'>): Promise<boolean> {
  const { rows } = await tx.query<{ status: string }>('SELECT status FROM source_records WHERE practice_id = $1 AND id = $2 FOR UPDATE SKIP LOCKED', [record.practiceId, record.id]);
  return rows[0]?.status === 'pending';
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
