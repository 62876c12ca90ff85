/**
 * FHIR Bulk Data `$export` (system, `Patient/$export`, `Group/{id}/$export`, with `_type` and `_since`), used for
 * the first load of a connector; incremental sync carries on from the export's `transactionTime`.
 *
 * Kick-off (`Prefer: respond-async`), polling the status URL (waiting what `Retry-After` says, reporting
 * `X-Progress`), then each NDJSON file streamed line by line — never a whole file in memory — with the bearer token
 * when the manifest says `requiresAccessToken`, and the job DELETEd when done (or abandoned).
 * Lines are stored as source records in batches, one transaction each; a line that is not JSON, not a resource of
 * the file's type, or without id is quarantined with an OperationOutcome. The checkpoints move to the export's
 * `transactionTime` only once every file is stored, so an import killed half-way is simply run again (versions
 * already stored are skipped).
 */
import { systemClock, type Clock } from '../../domain/clock.ts';
import { CheckpointRepository } from '../../store/checkpoints.ts';
import { withTransaction, type Database } from '../../store/database.ts';
import { ConnectorRunRepository, SourceRecordRepository } from '../../store/source-records.ts';
import type { FhirConnectorConfig } from './connector.ts';
import { FhirError, outcomeOf } from './errors.ts';
import { parseRetryAfter, type FhirClient } from './fhir-client.ts';
import { classifyResource, type ClassifiedPage } from './sync.ts';

/** What to export. */
export type BulkLevel = { kind: 'system' } | { kind: 'patient' } | { kind: 'group'; id: string };

/** The completed export's manifest. */
export interface BulkManifest {
  transactionTime: string;
  request: string;
  requiresAccessToken: boolean;
  output: { type: string; url: string; count?: number }[];
  error: { type: string; url: string }[];
}

/** Starts an export. @returns the status URL (`Content-Location`). */
export async function kickOffExport(client: FhirClient, level: BulkLevel, options: { types?: readonly string[]; since?: string } = {}): Promise<string> {
  const path = level.kind === 'system' ? '$export' : level.kind === 'patient' ? 'Patient/$export' : `Group/${encodeURIComponent(level.id)}/$export`;
  const query = new URLSearchParams();
  if (options.types?.length) query.set('_type', options.types.join(','));
  if (options.since) query.set('_since', options.since);
  const url = `${client.baseUrl}/${path}${query.size ? `?${query}` : ''}`;
  const res = await client.send(url, { headers: { prefer: 'respond-async', accept: 'application/fhir+json' } });
  await res.body?.cancel();
  const location = res.headers.get('content-location');
  if (res.status !== 202 || !location) throw new FhirError(res.status, outcomeOf('processing', 'the server did not start an asynchronous export (expected 202 with Content-Location)'), url);
  return new URL(location, `${client.baseUrl}/`).toString();
}

/**
 * Polls the status URL until the export is complete.
 * @param options.onProgress - told each `X-Progress` the server sends.
 * @param options.maxWaitMs - give up after this long (default 6 hours).
 */
export async function waitForExport(
  client: FhirClient,
  statusUrl: string,
  options: { sleep?: (ms: number) => Promise<void>; clock?: Clock; onProgress?: (progress: string) => void; maxWaitMs?: number } = {},
): Promise<BulkManifest> {
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const clock = options.clock ?? systemClock;
  const deadline = clock.now().getTime() + (options.maxWaitMs ?? 6 * 3600_000);
  for (let poll = 1; ; poll++) {
    const res = await client.send(statusUrl);
    if (res.status === 202) {
      await res.body?.cancel();
      const progress = res.headers.get('x-progress');
      if (progress) options.onProgress?.(progress);
      const wait = parseRetryAfter(res.headers.get('retry-after'), clock.now()) ?? Math.min(30_000, 1000 * 2 ** Math.min(poll - 1, 5));
      if (clock.now().getTime() + wait > deadline) throw new FhirError(202, outcomeOf('timeout', 'the export did not complete in time'), statusUrl);
      await sleep(wait);
      continue;
    }
    const manifest = (await res.json()) as BulkManifest;
    if (!Array.isArray(manifest.output) || typeof manifest.transactionTime !== 'string') {
      throw new FhirError(res.status, outcomeOf('structure', 'the export manifest lacks output or transactionTime'), statusUrl);
    }
    return manifest;
  }
}

/** Deletes an export job (done with it, or giving up). Failures are ignored: the server expires jobs anyway. */
export async function deleteExport(client: FhirClient, statusUrl: string): Promise<void> {
  try {
    const res = await client.send(statusUrl, { method: 'DELETE' });
    await res.body?.cancel();
  } catch {
    // best effort
  }
}

/** Streams an NDJSON file line by line (empty lines skipped), holding at most one chunk and one line in memory. */
export async function* ndjsonLines(client: FhirClient, url: string, requiresAccessToken: boolean): AsyncGenerator<string> {
  const res = await client.send(url, { headers: { accept: 'application/fhir+ndjson' }, authenticate: requiresAccessToken });
  if (!res.body) return;
  const decoder = new TextDecoder('utf-8');
  let pending = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    pending += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline).replace(/\r$/, '');
      pending = pending.slice(newline + 1);
      if (line.trim() !== '') yield line;
    }
  }
  pending += decoder.decode();
  if (pending.trim() !== '') yield pending.replace(/\r$/, '');
}

/** What an import did. */
export interface BulkImportSummary {
  connector: string;
  transactionTime: string;
  files: { type: string; lines: number; stored: number; duplicates: number; quarantined: number }[];
  lines: number;
  stored: number;
  duplicates: number;
  quarantined: number;
  durationMs: number;
}

export interface BulkImportOptions {
  db: Database;
  connector: FhirConnectorConfig;
  practiceId: string;
  client: FhirClient;
  level?: BulkLevel;
  /** Default: the connector's resource types. */
  types?: readonly string[];
  /** Export everything (no `_since`); default: since the oldest checkpoint of the types, when all have one. */
  full?: boolean;
  /** Lines per transaction; default 1000. */
  batchSize?: number;
  clock?: Clock;
  sleep?: (ms: number) => Promise<void>;
  onProgress?: (event: { phase: 'waiting'; progress: string } | { phase: 'importing'; type: string; lines: number }) => void;
}

/**
 * Exports the connector's types with Bulk Data and stores every line, then moves each type's checkpoint to the
 * export's `transactionTime`.
 */
export async function importBulkExport(options: BulkImportOptions): Promise<BulkImportSummary> {
  const { db, connector, practiceId, client } = options;
  const clock = options.clock ?? systemClock;
  const started = performance.now();
  const types = options.types ?? connector.resources.map((r) => r.type);
  const checkpoints = new CheckpointRepository(db.pool, clock);
  let since: string | undefined;
  if (!options.full) {
    const points = await Promise.all(types.map((t) => checkpoints.get(practiceId, connector.name, t)));
    if (points.every((p) => p !== undefined)) {
      const overlapMs = (connector.overlapSeconds ?? 1) * 1000;
      since = new Date(Math.min(...points.map((p) => Date.parse(p!.position))) - overlapMs).toISOString();
    }
  }
  const runs = new ConnectorRunRepository(db.pool, clock);
  const runId = await runs.start(practiceId, connector.name, options.full === true);
  const summary: BulkImportSummary = { connector: connector.name, transactionTime: '', files: [], lines: 0, stored: 0, duplicates: 0, quarantined: 0, durationMs: 0 };
  const counts = () => ({ pages: summary.files.length, resources: summary.lines, stored: summary.stored, duplicates: summary.duplicates, quarantined: summary.quarantined });
  let statusUrl: string | undefined;
  try {
    statusUrl = await kickOffExport(client, options.level ?? { kind: 'system' }, { types, since });
    const manifest = await waitForExport(client, statusUrl, { sleep: options.sleep, clock, onProgress: (progress) => options.onProgress?.({ phase: 'waiting', progress }) });
    summary.transactionTime = manifest.transactionTime;
    const records = new SourceRecordRepository(db.pool, clock);
    const batchSize = Math.max(1, options.batchSize ?? 1000);
    for (const output of manifest.output.filter((o) => types.includes(o.type))) {
      const file = { type: output.type, lines: 0, stored: 0, duplicates: 0, quarantined: 0 };
      summary.files.push(file);
      const context = { practiceId, connector: connector.name, resourceType: output.type };
      let batch: ClassifiedPage = { records: [], quarantined: [], stamps: [] };
      const flush = async () => {
        const current = batch;
        batch = { records: [], quarantined: [], stamps: [] };
        const stored = await withTransaction(db, async (tx) => {
          const n = await records.storeMany(tx, current.records);
          await records.quarantineMany(tx, current.quarantined);
          return n;
        });
        file.stored += stored;
        file.duplicates += current.records.length - stored;
        file.quarantined += current.quarantined.length;
        options.onProgress?.({ phase: 'importing', type: output.type, lines: file.lines });
      };
      for await (const line of ndjsonLines(client, output.url, manifest.requiresAccessToken)) {
        file.lines++;
        const where = `${output.type}.ndjson line ${file.lines}`;
        let value: unknown;
        try {
          value = JSON.parse(line);
        } catch {
          batch.quarantined.push({ practiceId, connector: connector.name, resourceType: output.type, sourceId: null, raw: line, outcome: outcomeOf('structure', `line ${file.lines} of the ${output.type} export file is not valid JSON`) });
          if (batch.records.length + batch.quarantined.length >= batchSize) await flush();
          continue;
        }
        classifyResource(value, context, where, batch);
        if (batch.records.length + batch.quarantined.length >= batchSize) await flush();
      }
      if (batch.records.length + batch.quarantined.length > 0) await flush();
      summary.lines += file.lines;
      summary.stored += file.stored;
      summary.duplicates += file.duplicates;
      summary.quarantined += file.quarantined;
    }
    // Every file is stored: incremental sync continues from the moment the export was taken.
    await withTransaction(db, async (tx) => {
      const moved = new CheckpointRepository(tx, clock);
      for (const type of types) await moved.set(practiceId, connector.name, type, new Date(manifest.transactionTime).toISOString());
    });
    summary.durationMs = performance.now() - started;
    await runs.finish(runId, counts());
    return summary;
  } catch (error) {
    summary.durationMs = performance.now() - started;
    await runs.finish(runId, counts(), `bulk export: ${(error as Error).message}`.slice(0, 2000)).catch(() => {});
    throw error;
  } finally {
    if (statusUrl) await deleteExport(client, statusUrl);
  }
}
