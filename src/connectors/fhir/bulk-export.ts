/**
 * FHIR Bulk Data `$export` (system, `Patient/$export`, `Group/{id}/$export`, with `_type` and `_since`), used for
 * the first load of a connector; incremental sync carries on from the export's `transactionTime`.
 *
 * Kick-off (`Prefer: respond-async`), polling the status URL (waiting what `Retry-After` says, reporting
 * `X-Progress`), then each NDJSON file streamed line by line — never a whole file in memory — with the bearer token
 * when the manifest says `requiresAccessToken`, and the job DELETEd when done (or abandoned).
 * Lines are stored as received (the line's text, hashed as is) in batches, each batch's records one statement
 * committed alone and its quarantine entries another (see bulk-writers.ts), stored while the next lines are parsed; a
 * line that is not JSON, not a resource of the file's type, or without id is quarantined with an OperationOutcome
 * naming the line. The checkpoints move to the export's `transactionTime` only once every
 * file is stored, so an import killed half-way is simply run again (versions already stored are skipped).
 */
import { systemClock, type Clock } from '../../domain/clock.ts';
import { CheckpointRepository } from '../../store/checkpoints.ts';
import { withTransaction, type Database } from '../../store/database.ts';
import { ConnectorRunRepository, SourceRecordRepository } from '../../store/source-records.ts';
import type { FhirConnectorConfig } from './connector.ts';
import { FhirError, outcomeOf } from './errors.ts';
import { parseRetryAfter, type FhirClient } from './fhir-client.ts';
import { closeWriters, emptyBatch, openWriters } from './bulk-writers.ts';
import { classifyResource } from './sync.ts';

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

/**
 * Streams an NDJSON file's lines (blank lines skipped), each network chunk's complete lines at once (a step of an
 * async generator per line cost about 0.5 µs of CPU a line), holding at most one network chunk, the unfinished line
 * and one chunk's lines in memory. Lines are cut on the newline byte, so a multi-byte character split across chunks
 * is decoded whole. The download may take as long as it takes (hours, for a large file); it fails when the server
 * sends nothing for the client's timeout while this waits for it (not while the caller stores).
 * @throws FhirError (`timeout`) when the download stalls.
 */
export async function* ndjsonLines(client: FhirClient, url: string, requiresAccessToken: boolean): AsyncGenerator<string[]> {
  const stalled = new AbortController();
  let waitingSince: number | undefined = performance.now(); // undefined while the caller has the lines
  const watchdog = setInterval(() => {
    if (waitingSince !== undefined && performance.now() - waitingSince >= client.timeoutMs) stalled.abort();
  }, Math.max(10, client.timeoutMs / 4));
  try {
    const res = await client.send(url, { headers: { accept: 'application/fhir+ndjson' }, authenticate: requiresAccessToken, signal: stalled.signal });
    if (!res.body) return;
    const decoder = new TextDecoder('utf-8');
    let unfinished: Uint8Array[] = [];
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        waitingSince = undefined;
        const end = chunk.lastIndexOf(0x0a) + 1;
        if (end === 0) {
          unfinished.push(chunk);
          waitingSince = performance.now();
          continue;
        }
        const complete = unfinished.length === 0 ? chunk.subarray(0, end) : Buffer.concat([...unfinished, chunk.subarray(0, end)]);
        unfinished = end < chunk.length ? [chunk.subarray(end)] : [];
        const lines = withoutBlanks(decoder.decode(complete, { stream: true }).split('\n'));
        if (lines.length > 0) yield lines;
        waitingSince = performance.now();
      }
    } catch (error) {
      if (!stalled.signal.aborted) throw error;
      throw new FhirError(0, outcomeOf('timeout', `the download stalled: nothing received for ${client.timeoutMs / 1000} s`), url);
    }
    const last = withoutBlanks([decoder.decode(Buffer.concat(unfinished))]);
    if (last.length > 0) yield last;
  } finally {
    clearInterval(watchdog);
  }
}

const NOT_BLANK = /\S/;

/** The lines that are not blank, without a trailing CR (CRLF line ends), in place. */
function withoutBlanks(lines: string[]): string[] {
  let kept = 0;
  for (const line of lines) if (NOT_BLANK.test(line)) lines[kept++] = line.endsWith('\r') ? line.slice(0, -1) : line;
  lines.length = kept;
  return lines;
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

/** What {@link importBulkExport} needs. */
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
  /** Lines per stored batch (one statement), unless the batch reaches 1 MiB of JSON first; default 1,000. */
  batchSize?: number;
  /**
   * Batches stored at once, each by a writer on a connection of its own held for the file, while the next lines are
   * parsed; default 2 on a PostgreSQL server, 1 on the embedded database (which runs one statement at a time
   * anyway); at most the pool's size less one.
   */
  writers?: number;
  clock?: Clock;
  sleep?: (ms: number) => Promise<void>;
  onProgress?: (
    event: { phase: 'waiting'; progress: string } | { phase: 'downloading'; type: string } | { phase: 'importing'; type: string; lines: number },
  ) => void;
}

/** A batch is also cut at this many bytes of JSON, so memory stays flat whatever the line sizes. */
const MAX_BATCH_CHARS = 2 ** 20;

/**
 * Exports the connector's types with Bulk Data and stores every line, then moves each type's checkpoint to the
 * export's `transactionTime`.
 *
 * Lines are parsed and classified as they stream in, while earlier batches are stored. A resource's lines always
 * go to the same writer (chosen by its id), so its versions are stored in file order and two writers never
 * insert the same identity; quarantine entries all go to the first writer, in file order.
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
    for (const output of manifest.output.filter((o) => types.includes(o.type))) {
      options.onProgress?.({ phase: 'downloading', type: output.type });
      const file = await importFile(options, clock, output, manifest.requiresAccessToken);
      summary.files.push(file);
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

type FileSummary = BulkImportSummary['files'][number];

/** Streams one export file into the store; settles only once every batch it handed over is stored (or failed). */
async function importFile(options: BulkImportOptions, clock: Clock, output: BulkManifest['output'][number], requiresAccessToken: boolean): Promise<FileSummary> {
  const { db, practiceId, connector } = options;
  const records = new SourceRecordRepository(db.pool, clock);
  const batchSize = Math.max(1, options.batchSize ?? 1000);
  const file: FileSummary = { type: output.type, lines: 0, stored: 0, duplicates: 0, quarantined: 0 };
  const context = { practiceId, connector: connector.name, resourceType: output.type };

  const writers = await openWriters(db, options.writers ?? (db.kind === 'server' ? 2 : 1), async (client, batch) => {
    const stored = await records.storeMany(client, batch.records);
    await records.quarantineMany(client, batch.quarantined);
    file.stored += stored;
    file.duplicates += batch.records.length - stored;
    file.quarantined += batch.quarantined.length;
    options.onProgress?.({ phase: 'importing', type: output.type, lines: file.stored + file.duplicates + file.quarantined });
  });
  const scratch = emptyBatch();
  try {
    for await (const lines of ndjsonLines(options.client, output.url, requiresAccessToken)) for (const line of lines) {
      file.lines++;
      let value: unknown;
      let parsed = true;
      try {
        value = JSON.parse(line);
      } catch {
        parsed = false;
        scratch.quarantined.push({ practiceId, connector: connector.name, resourceType: output.type, sourceId: null, raw: line, outcome: outcomeOf('structure', `line ${file.lines} of the ${output.type} export file is not valid JSON`) });
      }
      if (parsed) classifyResource(value, context, `${output.type}.ndjson line ${file.lines}`, scratch, { text: line });
      const record = scratch.records.pop();
      const writer = writers[record ? writerOf(record.sourceId, writers.length) : 0]!;
      if (record?.bodyText !== undefined) writer.addRecord(record);
      else writer.batch.quarantined.push(scratch.quarantined.pop()!);
      scratch.stamps.length = 0;
      writer.chars += line.length;
      if (writer.size >= batchSize || writer.chars >= MAX_BATCH_CHARS) await writer.handOver();
    }
    for (const writer of writers) if (writer.size > 0) await writer.handOver();
    await Promise.all(writers.map((w) => w.stored()));
  } finally {
    await closeWriters(db, writers);
  }
  return file;
}

/** The writer of a resource id (a string hash, so the same id always goes to the same writer). */
function writerOf(id: string, writers: number): number {
  if (writers === 1) return 0;
  let h = 0;
  for (let i = 0; i < id.length; i++) h = (Math.imul(h, 31) + id.charCodeAt(i)) | 0;
  return (h >>> 0) % writers;
}
