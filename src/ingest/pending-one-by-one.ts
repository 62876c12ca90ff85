/**
 * The `ingest.pending` fallback when a batch's transaction threw: each record in its own transaction, so one
 * record the ledger refuses is quarantined (or left pending on database trouble) without touching the others.
 */
import { withTransaction, type Queryable } from '../store/database.ts';
import type { StoredSourceRecord } from '../store/source-records.ts';
import type { IngestPendingOptions } from './pending-batch.ts';
import { ingestClaimed, type RecordOutcome } from './pending-claimed.ts';
import type { IngestContext } from './pipeline.ts';

/** Ingests each record in its own transaction (claimed again; one taken meanwhile by another run is skipped). */
export async function ingestOneByOne(
  records: readonly StoredSourceRecord[],
  options: Pick<IngestPendingOptions, 'db' | 'clock' | 'mappings' | 'connectors'>,
  context: IngestContext & { timeZone: string },
): Promise<RecordOutcome[]> {
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

/** Locks a source record for this transaction; false when another run holds it or it is no longer `pending`. */
async function claimSourceRecord(tx: Queryable, record: Pick<StoredSourceRecord, 'practiceId' | 'id'>): Promise<boolean> {
  const { rows } = await tx.query<{ status: string }>('SELECT status FROM source_records WHERE practice_id = $1 AND id = $2 FOR UPDATE SKIP LOCKED', [record.practiceId, record.id]);
  return rows[0]?.status === 'pending';
}
