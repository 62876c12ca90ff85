/**
 * Batch ingest: many source records of one practice in one transaction, with set-based writes
 * ({@link postMapped}), and the same results as ingesting them one by one in the same order: pending source
 * records ({@link ingestBatch}) and CSV rows (`csv-import.ts`, through {@link mapAndPost}).
 */
import type { SourceRecord } from '../domain/source-record.ts';
import type { CompiledMapping } from '../mapping/compile.ts';
import type { Queryable } from '../store/database.ts';
import { SourceRecordRepository, type StoredSourceRecord } from '../store/source-records.ts';
import { mapSource, postMapped, postOrQuarantine, quarantineRecord, type IngestContext, type IngestResult, type MappedSource } from './pipeline.ts';

/** A stored record and the mapping that accepts it. */
export interface BatchItem {
  record: StoredSourceRecord;
  mapping: CompiledMapping;
}

/**
 * Ingests records of one practice in the caller's transaction and marks each `ingested` or `quarantined`
 * ({@link mapAndPost}, then the marks).
 * @returns each record's result, in order.
 */
export async function ingestBatch(tx: Queryable, items: readonly BatchItem[], context: IngestContext & { timeZone: string }): Promise<IngestResult[]> {
  if (items.length === 0) return [];
  const results = await mapAndPost(tx, items, context);
  const practiceId = items[0]!.record.practiceId;
  const ids = (quarantined: boolean) => items.filter((_, n) => (results[n]!.status === 'quarantined') === quarantined).map((i) => i.record.id);
  const repository = new SourceRecordRepository(tx, context.clock);
  await repository.markIngested(tx, practiceId, ids(false), context.clock.now());
  await repository.markQuarantined(tx, practiceId, ids(true));
  return results;
}

/**
 * Maps and posts records of one practice in the caller's transaction, with the same results as ingesting them
 * one by one in this order (`ingestRecord`). The batch is cut into runs of distinct sources (a source's
 * next version starts a new run, so it sees the earlier one). A record that fails validation or mapping is
 * quarantined (see `context.quarantine`) without touching the ledger; the others of a run post together. A
 * batch of one record posts under a savepoint (quarantined when the ledger refuses it); when the ledger refuses
 * a record of a larger batch, the LedgerError is thrown: roll the transaction back and post the records one by
 * one (a batch of one each). With `context.dropBodiesOnceMapped`, each record's body is let go once it is mapped.
 * @returns each record's result, in order.
 */
export async function mapAndPost(
  tx: Queryable,
  items: readonly { record: SourceRecord; mapping: CompiledMapping }[],
  context: IngestContext & { timeZone: string },
): Promise<IngestResult[]> {
  const results: IngestResult[] = [];
  for (const run of runsOfDistinctSources(items)) {
    const mapped: { index: number; source: MappedSource }[] = [];
    for (const index of run) {
      const { record, mapping } = items[index]!;
      const result = mapSource(record, mapping, context);
      if (context.dropBodiesOnceMapped) record.body = undefined;
      if (result.ok) mapped.push({ index, source: result.source });
      else results[index] = await quarantineRecord(tx, record, mapping, context, result.issues);
    }
    const posted = items.length === 1 && mapped.length === 1 ? [await postOrQuarantine(tx, mapped[0]!.source, context)] : await postMapped(tx, mapped.map((m) => m.source), context);
    mapped.forEach((m, n) => (results[m.index] = posted[n]!));
  }
  return results;
}

/** Consecutive runs of the items' indexes in which no source (connector, resource type, source id) repeats. */
function runsOfDistinctSources(items: readonly { record: SourceRecord }[]): number[][] {
  const runs: number[][] = [[]];
  let sources = new Set<string>();
  items.forEach(({ record }, index) => {
    const key = JSON.stringify([record.connector, record.resourceType, record.sourceId]);
    if (sources.has(key)) {
      runs.push([]);
      sources = new Set();
    }
    sources.add(key);
    runs.at(-1)!.push(index);
  });
  return runs;
}
