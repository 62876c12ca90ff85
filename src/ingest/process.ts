/**
 * The glue between stored input and the ledger, run by two jobs (each takes its rows with a row lock,
 * `FOR UPDATE SKIP LOCKED`, and re-checks their status inside the transaction, so a scheduled run and one
 * enqueued after a listener stores never handle the same row twice; a row whose transaction throws is left as
 * it was, logged by id, counted as `errors`, and taken again by the next run; logs carry ids and codes only):
 *
 * 1. `hl7.process` — stored HL7 messages → source records (`hl7-process.ts`, {@link drainHl7Messages}).
 * 2. `ingest.pending` — pending source records → ledger, a batch per practice and transaction
 *    (`pending-batch.ts`, {@link drainPendingSourceRecords}), one record per transaction when a batch throws
 *    (`pending-one-by-one.ts`).
 */
import type { JobDefinition } from '../scheduler/scheduler.ts';
import type { BatchOptions, ProcessDependencies } from './drain.ts';
import { drainHl7Messages } from './hl7-process.ts';
import { validatorFor } from './mapping-choice.ts';
import { drainPendingSourceRecords, type IngestPendingOptions } from './pending-batch.ts';

/** Job names, so the registration, the schedule and enqueuers (listener, sync) agree. */
export const INGEST_JOBS = {
  /** Stored HL7 messages → source records. */
  hl7Process: 'hl7.process',
  /** Pending source records → ledger. */
  ingestPending: 'ingest.pending',
} as const;

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

/**
 * The `ingest.pending` job: pending source records → ledger. Data: `{}`. Its FHIR validator is built here, when the
 * engine defines its jobs: loading the R4 definitions takes about a second of the event loop, which the first run
 * would otherwise take from the listeners and the API.
 * @throws ProfileError when a profile's differential cannot be built into a snapshot.
 */
export function ingestJob(
  deps: ProcessDependencies & BatchOptions & Pick<IngestPendingOptions, 'cipher' | 'mappings' | 'profiles' | 'connectors'>,
): JobDefinition<Record<string, never>> {
  validatorFor(deps.profiles);
  return {
    name: INGEST_JOBS.ingestPending,
    concurrency: 1,
    async run() {
      const counts = await drainPendingSourceRecords(deps);
      if (counts.records > 0) deps.logger.info('source records ingested', { ...counts });
    },
  };
}
