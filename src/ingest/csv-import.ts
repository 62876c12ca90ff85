/**
 * CSV statement import: streams a file through csv-parse, maps and posts its rows a batch per transaction
 * ({@link mapAndPost}; a batch the ledger refuses is posted again one row per transaction, so a bad row never
 * loses the good ones), and reports every bad row as `line N, column C (Header): reason` while importing the
 * good ones. Each row is a
 * source record named by the mapping's key columns (else file and line) and versioned by its content, so
 * re-running the same file changes nothing and next month's export of an item replaces its contribution.
 */
import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { basename } from 'node:path';
import cliProgress from 'cli-progress';
import { parse } from 'csv-parse';
import type { Clock } from '../domain/clock.ts';
import type { SourceRecord } from '../domain/source-record.ts';
import type { CompiledMapping, MappingIssue } from '../mapping/compile.ts';
import { withTransaction, type Database } from '../store/database.ts';
import { LedgerError } from '../store/ledger.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { PracticeRepository } from '../store/practices.ts';
import { mapAndPost } from './batch.ts';
import { ingestBatchSize } from './drain.ts';
import type { IngestContext, IngestResult } from './pipeline.ts';

/** Options of {@link importCsv}. */
export interface CsvImportOptions {
  db: Database;
  practiceId: string;
  /** Connector name the rows are recorded under (the csv connector file, or `csv-import`). */
  connector: string;
  mapping: CompiledMapping;
  file: string;
  cipher: PhiCipher;
  clock: Clock;
  delimiter?: string;
  /** Told as the file is read: bytes read so far and the file size (for a progress bar). */
  onProgress?: (bytesRead: number, totalBytes: number) => void;
  /** Rows posted per transaction (default {@link ingestBatchSize}). */
  batchSize?: number;
}

/** What an import did. */
export interface CsvImportSummary {
  rows: number;
  posted: number;
  unchanged: number;
  /** Rows whose version was already imported (a re-run). */
  duplicate: number;
  stale: number;
  bad: number;
  /** One per bad row problem: `line N, column C (Header): reason`. */
  problems: string[];
}

/** A row read, waiting for its batch: its source record, or why it cannot be one. */
type ReadRow = { line: number; record: SourceRecord } | { line: number; problem: string };

/**
 * Imports a CSV file. Never throws for bad rows (they are reported); throws when the file cannot be read, the
 * header is missing or the database fails (the batches before stay imported; a re-run finishes the rest).
 */
export async function importCsv(options: CsvImportOptions): Promise<CsvImportSummary> {
  const practice = await new PracticeRepository(options.db.pool).findById(options.practiceId);
  if (!practice) throw new Error(`CSV import: no practice ${options.practiceId}`);
  const context: IngestContext & { timeZone: string } = { cipher: options.cipher, clock: options.clock, quarantine: false, timeZone: practice.timeZone };
  const batchSize = options.batchSize ?? ingestBatchSize(options.db);
  const total = statSync(options.file).size;
  const modified = statSync(options.file).mtime;
  const summary: CsvImportSummary = { rows: 0, posted: 0, unchanged: 0, duplicate: 0, stale: 0, bad: 0, problems: [] };
  const stream = createReadStream(options.file);
  let bytes = 0;
  stream.on('data', (chunk) => {
    bytes += chunk.length;
    options.onProgress?.(bytes, total);
  });
  const parser = stream.pipe(
    parse({ bom: true, info: true, trim: true, skip_empty_lines: true, relax_column_count: true, delimiter: options.delimiter ?? ',' }),
  );
  let header: string[] | undefined;
  let batch: ReadRow[] = [];
  const flush = async () => {
    await importRows(options, context, batch, header!, summary);
    batch = [];
  };
  let unreadable: string | undefined;
  try {
    for await (const { record: cells, info } of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
      if (!header) {
        header = cells;
        continue;
      }
      summary.rows++;
      const line = info.lines;
      if (cells.length !== header.length) {
        batch.push({ line, problem: `line ${line}: has ${cells.length} columns, the header has ${header.length}` });
      } else {
        batch.push({ line, record: csvRecord(options, Object.fromEntries(header.map((name, i) => [name, cells[i]!])), line, modified) });
      }
      if (batch.length >= batchSize) await flush();
    }
  } catch (error) {
    const e = error as Error & { code?: string; lines?: number };
    if (!e.code?.startsWith('CSV_')) throw error;
    unreadable = `line ${e.lines ?? '?'}: ${e.message.replace(/^Invalid [^:]*: /, '')} (the rest of the file was not read)`;
  }
  if (batch.length > 0) await flush();
  if (unreadable) {
    summary.bad++;
    summary.problems.push(unreadable);
  }
  return summary;
}

/**
 * Posts a batch of rows in one transaction; when the ledger refuses one of them (the transaction is rolled
 * back), each row in its own transaction instead, so the refused row is reported and the others import.
 * Tallies the results in `summary`, problems in line order.
 */
async function importRows(options: CsvImportOptions, context: IngestContext & { timeZone: string }, rows: readonly ReadRow[], header: string[], summary: CsvImportSummary): Promise<void> {
  const items = rows.flatMap((row) => ('record' in row ? [{ record: row.record, mapping: options.mapping }] : []));
  let results: IngestResult[] = [];
  try {
    if (items.length > 0) results = await withTransaction(options.db, (tx) => mapAndPost(tx, items, context));
  } catch (error) {
    if (!(error instanceof LedgerError)) throw error;
    results = [];
    for (const item of items) results.push(...(await withTransaction(options.db, (tx) => mapAndPost(tx, [item], context))));
  }
  let n = 0;
  for (const row of rows) {
    if (!('record' in row)) {
      summary.bad++;
      summary.problems.push(row.problem);
      continue;
    }
    const result = results[n++]!;
    if (result.status === 'quarantined') {
      summary.bad++;
      summary.problems.push(...result.issues.map((issue) => `line ${row.line}, ${describeIssue(issue, options.mapping, header)}`));
    } else if (result.status === 'posted' || result.status === 'recorded') summary.posted++;
    else summary[result.status]++;
  }
}

/** The source record of one CSV row. */
export function csvRecord(options: Pick<CsvImportOptions, 'practiceId' | 'connector' | 'mapping' | 'file'>, row: Record<string, string>, line: number, lastUpdated: Date): SourceRecord {
  const content = JSON.stringify(row);
  const hash = createHash('sha256').update(content).digest('hex');
  const key = options.mapping.csvKey?.map((column) => row[column] ?? '');
  const sourceId = key && key.every((k) => k !== '') ? key.join('|') : `${basename(options.file)}:${line}`;
  return {
    practiceId: options.practiceId,
    connector: options.connector,
    transport: 'csv',
    resourceType: 'csv-row',
    sourceId,
    versionId: hash.slice(0, 32),
    lastUpdated,
    contentHash: hash,
    body: { row, line },
  };
}

/** `column C (Header): reason` when the issue is about a column, else the mapping path and reason. */
function describeIssue(issue: MappingIssue, mapping: CompiledMapping, header: string[]): string {
  const column = mapping.sourceOf(issue.path);
  const index = column === undefined ? -1 : header.indexOf(column);
  if (index >= 0) return `column ${index + 1} (${column}): ${issue.message}`;
  if (column !== undefined) return `column "${column}" (not in the header): ${issue.message}`;
  return `${issue.path}: ${issue.message}`;
}

/**
 * `settle import csv FILE --mapping NAME`: imports with a progress bar (on `progress`, when given, e.g.
 * `process.stderr` on a terminal), prints each bad row and a summary.
 * @returns the exit code: 0 when every row imported (or was already imported), 1 when some rows are bad.
 */
export async function runImportCsv(options: CsvImportOptions & { print: (line: string) => void; progress?: NodeJS.WritableStream }): Promise<number> {
  const bar = options.progress
    ? new cliProgress.SingleBar(
        { stream: options.progress, format: `${basename(options.file)} {bar} {percentage}% | {value}/{total} bytes`, hideCursor: true, clearOnComplete: true },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  bar?.start(statSync(options.file).size, 0);
  let summary: CsvImportSummary;
  try {
    summary = await importCsv({ ...options, onProgress: (bytes, total) => { bar?.update(bytes); options.onProgress?.(bytes, total); } });
  } finally {
    bar?.stop();
  }
  for (const problem of summary.problems) options.print(problem);
  options.print(
    `${summary.rows} rows: ${summary.posted} imported, ${summary.duplicate} already imported, ${summary.unchanged} unchanged, ${summary.stale} older than what is stored, ${summary.bad} bad`,
  );
  return summary.bad > 0 ? 1 : 0;
}
