/**
 * What an `ingest.pending` transaction does with the source records it claimed, in batch or one by one: records
 * no single mapping accepts go to the intake quarantine at once, the rest are ingested together
 * ({@link ingestBatch}).
 */
import type { Queryable } from '../store/database.ts';
import { SourceRecordRepository, type StoredSourceRecord } from '../store/source-records.ts';
import { ingestBatch, type BatchItem } from './batch.ts';
import { mappingFor, rawOf, unmappedOutcome } from './mapping-choice.ts';
import type { IngestPendingOptions } from './pending-batch.ts';
import type { IngestContext, IngestResult } from './pipeline.ts';

/** What happened to one taken record. */
export interface RecordOutcome {
  record: StoredSourceRecord;
  status: IngestResult['status'] | 'unmapped' | 'skipped' | 'error';
  /** The mapping it went through, or the candidates when not exactly one accepts it. */
  mapping?: string;
  candidates?: string[];
  error?: unknown;
}

/** Ingests claimed records in the caller's transaction: unmapped ones to the intake quarantine, the rest as a batch. */
export async function ingestClaimed(
  tx: Queryable,
  records: readonly StoredSourceRecord[],
  options: Pick<IngestPendingOptions, 'clock' | 'mappings' | 'connectors'>,
  context: IngestContext & { timeZone: string },
): Promise<RecordOutcome[]> {
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
