/**
 * Incremental FHIR R4 sync: per connector and resource type, search from the checkpoint and store what comes back
 * as source records, a page at a time.
 *
 * - The search is `GET [base]/[type]?<connector's search>&_lastUpdated=ge<checkpoint − overlap>&_sort=_lastUpdated
 *   &_count=<pageSize>`, and each following page is the server's `next` link, exactly as given.
 * - Each page commits in ONE transaction: its valid resources as source records (a version already stored — by
 *   id + versionId — is skipped), its invalid entries into the quarantine with an OperationOutcome, and the
 *   checkpoint moved to the newest `meta.lastUpdated` seen. A sync killed at any point resumes from the last
 *   committed page: nothing lost, nothing stored twice.
 * - The overlap window (default 1 s) re-reads resources that share the boundary timestamp or that the server
 *   committed late; they are recognised as duplicates.
 * - If the server does not honour `_sort=_lastUpdated` (a resource older than one already seen arrives), moving the
 *   checkpoint page by page would be unsafe: the sync puts it back where the run started and moves it only when
 *   the search has been read to its end. `sort: false` does that from the start; `incremental: false` reads
 *   everything every time (for servers that cannot search a type by `_lastUpdated`).
 */
import { hash } from 'node:crypto';
import type { Bundle, BundleEntry, OperationOutcome } from '@medplum/fhirtypes';
import { systemClock, type Clock } from '../../domain/clock.ts';
import { CheckpointRepository } from '../../store/checkpoints.ts';
import { withTransaction, type Database } from '../../store/database.ts';
import { ConnectorRunRepository, SourceRecordRepository, type NewQuarantineEntry, type NewSourceRecord, type RunCounts } from '../../store/source-records.ts';
import type { ConnectorResource, FhirConnectorConfig } from './connector.ts';
import { FhirError } from './errors.ts';
import type { FhirClient } from './fhir-client.ts';
import { isR4ResourceType } from './resource-types.ts';

/** Progress of the resource type being synced, after each committed page. */
export interface SyncProgress {
  resourceType: string;
  /** 0-based position of this type among the types being synced, and how many there are. */
  typeIndex: number;
  typeCount: number;
  pages: number;
  resources: number;
  /** The search's `Bundle.total`, when the server reports one. */
  total?: number;
}

/** What a sync of one resource type did. */
export interface TypeSyncSummary extends RunCounts {
  resourceType: string;
  /** The `_lastUpdated` lower bound sent, if any. */
  since?: string;
  /** The checkpoint afterwards. */
  checkpoint?: string;
  /** Whether the search was read to its end. */
  complete: boolean;
  warnings: string[];
  /** Why it stopped early (a FhirError's message: status, redacted URL, outcome text). */
  error?: string;
}

/** What a sync run did. */
export interface SyncSummary extends RunCounts {
  connector: string;
  full: boolean;
  types: TypeSyncSummary[];
  durationMs: number;
  /** The connector_runs row, when recorded. */
  runId?: string;
}

/** A sync that failed for at least one resource type; what it did is in `summary`. */
export class SyncFailedError extends Error {
  readonly summary: SyncSummary;
  constructor(summary: SyncSummary) {
    const failed = summary.types.filter((t) => t.error);
    super(`sync of ${summary.connector} failed for ${failed.map((t) => `${t.resourceType} (${t.error})`).join('; ')}`);
    this.name = 'SyncFailedError';
    this.summary = summary;
  }
}

export interface SyncOptions {
  db: Database;
  connector: FhirConnectorConfig;
  practiceId: string;
  client: FhirClient;
  clock?: Clock;
  /** Ignore the checkpoints: read everything (versions already stored are still skipped). */
  full?: boolean;
  /** Only these resource types (each must be one of the connector's). */
  types?: readonly string[];
  /** Overrides the connector's `overlapSeconds` (default 1 s). */
  overlapMs?: number;
  /** Record the run in `connector_runs` (default true). */
  recordRun?: boolean;
  onProgress?(progress: SyncProgress): void;
  /** Called after each page's transaction committed (tests use it to kill the process between pages). */
  onPageCommitted?(info: { resourceType: string; page: number; checkpoint?: string }): void | Promise<void>;
  /** Called after a page was fetched, before its transaction (tests use it to kill the process mid-page). */
  onPageFetched?(info: { resourceType: string; page: number }): void | Promise<void>;
}

const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;

function issue(code: OperationOutcome['issue'][number]['code'], text: string, expression: string): OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, details: { text }, expression: [expression] }] };
}

function rawText(value: unknown): string {
  if (value === undefined) return 'undefined';
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Milliseconds of a FHIR instant, or undefined when absent or unparsable. */
function instantMs(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}

/** What one page holds: records to store, entries to quarantine, and the lastUpdated instants in page order. */
export interface ClassifiedPage {
  records: NewSourceRecord[];
  quarantined: NewQuarantineEntry[];
  stamps: number[];
}

/**
 * Sorts a search page's entries into source records and quarantine entries. Entries with `search.mode` `include`
 * or `outcome` (and unmarked OperationOutcomes) are not results and are left out.
 */
export function classifyPage(bundle: Bundle, context: { practiceId: string; connector: string; resourceType: string }): ClassifiedPage {
  const page: ClassifiedPage = { records: [], quarantined: [], stamps: [] };
  const entries: unknown[] = Array.isArray(bundle.entry) ? bundle.entry : [];
  entries.forEach((value, index) => {
    const where = `Bundle.entry[${index}]`;
    const quarantine = (outcome: OperationOutcome, raw: unknown, sourceId?: string) =>
      page.quarantined.push({ practiceId: context.practiceId, connector: context.connector, resourceType: context.resourceType, sourceId: sourceId ?? null, raw: rawText(raw), outcome });
    if (!value || typeof value !== 'object' || Array.isArray(value)) {
      quarantine(issue('structure', 'the Bundle entry is not a JSON object', where), value);
      return;
    }
    const entry = value as BundleEntry;
    const mode = entry.search?.mode;
    if (mode === 'include' || mode === 'outcome') return;
    classifyResource(entry.resource, context, `${where}.resource`, page, { skipUnmarkedOutcome: mode === undefined });
  });
  return page;
}

/**
 * Adds one resource (as parsed from a search page or an NDJSON line) to `page`: a source record, or a quarantine
 * entry naming what is wrong. `where` is the FHIRPath-like location quoted in the OperationOutcome.
 * @param options.skipUnmarkedOutcome - leave out an OperationOutcome (a search page's unmarked outcome entry).
 * @param options.text - the resource's JSON text as received (an NDJSON line): stored, hashed and quarantined as is,
 *   not serialised again. Without it (a resource inside a search Bundle) the body is serialised once.
 */
export function classifyResource(
  resource: unknown,
  context: { practiceId: string; connector: string; resourceType: string },
  where: string,
  page: ClassifiedPage,
  options: { skipUnmarkedOutcome?: boolean; text?: string } = {},
): void {
  const quarantine = (outcome: OperationOutcome, raw: unknown, sourceId?: string) =>
    page.quarantined.push({ practiceId: context.practiceId, connector: context.connector, resourceType: context.resourceType, sourceId: sourceId ?? null, raw: options.text ?? rawText(raw), outcome });
  if (!resource || typeof resource !== 'object' || Array.isArray(resource)) {
    quarantine(issue('structure', where.endsWith('.resource') ? 'the entry has no resource object' : 'the line is not a JSON object', where), resource);
    return;
  }
  const body = resource as Record<string, unknown>;
  const type = body.resourceType;
  if (type === 'OperationOutcome' && options.skipUnmarkedOutcome) return;
  const id = typeof body.id === 'string' ? body.id : undefined;
  if (typeof type !== 'string' || type === '') {
    quarantine(issue('required', 'the resource has no resourceType', `${where}.resourceType`), body, id);
    return;
  }
  if (!isR4ResourceType(type)) {
    quarantine(issue('invalid', `unknown resourceType "${type.slice(0, 64)}": not a FHIR R4 resource type`, `${where}.resourceType`), body, id);
    return;
  }
  if (type !== context.resourceType) {
    const what = where.startsWith('Bundle') ? `a search of ${context.resourceType} returned a ${type}` : `the ${context.resourceType} export file holds a ${type}`;
    quarantine(issue('invalid', what, `${where}.resourceType`), body, id);
    return;
  }
  if (id === undefined || id === '') {
    quarantine(issue('required', `the ${type} has no id`, `${where}.id`), body);
    return;
  }
  if (!FHIR_ID.test(id)) {
    quarantine(issue('value', `the ${type} id is not a valid FHIR id (1-64 letters, digits, "-" and ".")`, `${where}.id`), body);
    return;
  }
  const text = options.text ?? JSON.stringify(body);
  const contentHash = hash('sha256', text);
  const meta = body.meta && typeof body.meta === 'object' ? (body.meta as Record<string, unknown>) : {};
  // Without a versionId the version is named by the serialised content, the same whichever way the resource came.
  const versionId =
    typeof meta.versionId === 'string' && meta.versionId !== '' && meta.versionId.length <= 200
      ? meta.versionId
      : `sha256:${(options.text === undefined ? contentHash : hash('sha256', JSON.stringify(body))).slice(0, 32)}`;
  const lastUpdatedMs = instantMs(meta.lastUpdated);
  if (lastUpdatedMs !== undefined) page.stamps.push(lastUpdatedMs);
  page.records.push({
    practiceId: context.practiceId,
    connector: context.connector,
    transport: 'fhir-r4',
    resourceType: type,
    sourceId: id,
    versionId,
    lastUpdated: lastUpdatedMs === undefined ? null : new Date(lastUpdatedMs),
    contentHash,
    bodyText: text,
  });
}

/**
 * Syncs a connector's resource types (all, or `types`), one after another. A type that fails (the server
 * refuses the search, say) does not stop the others.
 * @throws SyncFailedError after trying every type when any failed; its `summary` says what was stored.
 */
export async function syncFhirConnector(options: SyncOptions): Promise<SyncSummary> {
  const clock = options.clock ?? systemClock;
  const { connector, db, practiceId } = options;
  const started = performance.now();
  let resources: ConnectorResource[] = connector.resources;
  if (options.types && options.types.length > 0) {
    const unknown = options.types.filter((t) => !connector.resources.some((r) => r.type === t));
    if (unknown.length > 0) {
      throw new Error(`connector ${connector.name} does not pull ${unknown.join(', ')} (it pulls ${connector.resources.map((r) => r.type).join(', ')})`);
    }
    resources = connector.resources.filter((r) => options.types!.includes(r.type));
  }
  const runs = new ConnectorRunRepository(db.pool, clock);
  const runId = options.recordRun === false ? undefined : await runs.start(practiceId, connector.name, options.full === true);
  const summary: SyncSummary = { connector: connector.name, full: options.full === true, types: [], pages: 0, resources: 0, stored: 0, duplicates: 0, quarantined: 0, durationMs: 0, runId };
  try {
    for (const [typeIndex, resource] of resources.entries()) {
      const result = await syncType(options, clock, resource, typeIndex, resources.length);
      summary.types.push(result);
      for (const key of ['pages', 'resources', 'stored', 'duplicates', 'quarantined'] as const) summary[key] += result[key];
    }
  } catch (error) {
    // Not a FHIR failure (the database went away, say): record it and let it through.
    summary.durationMs = performance.now() - started;
    if (runId) await runs.finish(runId, summary, `${(error as Error).name}: ${(error as Error).message}`.slice(0, 2000)).catch(() => {});
    throw error;
  }
  summary.durationMs = performance.now() - started;
  const failed = summary.types.filter((t) => t.error);
  if (runId) await runs.finish(runId, summary, failed.length > 0 ? failed.map((t) => `${t.resourceType}: ${t.error}`).join('; ').slice(0, 2000) : undefined);
  if (failed.length > 0) throw new SyncFailedError(summary);
  return summary;
}

async function syncType(options: SyncOptions, clock: Clock, resource: ConnectorResource, typeIndex: number, typeCount: number): Promise<TypeSyncSummary> {
  const { connector, db, practiceId, client } = options;
  const type = resource.type;
  const overlapMs = options.overlapMs ?? (connector.overlapSeconds ?? 1) * 1000;
  const incremental = resource.incremental !== false;
  const sorted = incremental && resource.sort !== false;
  const records = new SourceRecordRepository(db.pool, clock);
  const checkpoint = await new CheckpointRepository(db.pool, clock).get(practiceId, connector.name, type);
  const startMs = options.full || !incremental ? undefined : instantMs(checkpoint?.position);
  const result: TypeSyncSummary = { resourceType: type, pages: 0, resources: 0, stored: 0, duplicates: 0, quarantined: 0, complete: false, warnings: [], checkpoint: checkpoint?.position };

  const params: Record<string, string | number> = { ...resource.search };
  if (startMs !== undefined) {
    result.since = new Date(startMs - overlapMs).toISOString();
    params._lastUpdated = `ge${result.since}`;
  }
  if (sorted) params._sort = '_lastUpdated';
  params._count = connector.pageSize;

  // The checkpoint moves after each page only while the results come in _lastUpdated order.
  let hold = !sorted;
  let lastStamp = -Infinity;
  let maxSeen: number | undefined;
  const context = { practiceId, connector: connector.name, resourceType: type };
  const pages = client.searchPages(type, params);
  try {
    // The next page is fetched while this one is stored; pages still commit one at a time, in order.
    let upcoming = pages.next();
    for (;;) {
      const step = await upcoming;
      if (step.done) break;
      const bundle = step.value;
      upcoming = pages.next();
      upcoming.catch(() => {}); // surfaces when awaited; not an unhandled rejection if this page fails first
      const pageNo = result.pages + 1;
      await options.onPageFetched?.({ resourceType: type, page: pageNo });
      const page = classifyPage(bundle, context);
      let outOfOrder = false;
      for (const stamp of page.stamps) {
        if (stamp < lastStamp) outOfOrder = true;
        lastStamp = Math.max(lastStamp, stamp);
        maxSeen = maxSeen === undefined ? stamp : Math.max(maxSeen, stamp);
      }
      const rewind = outOfOrder && !hold;
      if (rewind) {
        hold = true;
        result.warnings.push(`the server did not return ${type} in _lastUpdated order: the checkpoint moves only when the search is read to its end`);
      }
      const position = hold ? undefined : newPosition(startMs, maxSeen, options.full === true);
      const stored = await withTransaction(db, async (tx) => {
        const n = await records.storeMany(tx, page.records);
        await records.quarantineMany(tx, page.quarantined);
        const checkpoints = new CheckpointRepository(tx, clock);
        if (position !== undefined) await checkpoints.set(practiceId, connector.name, type, position);
        else if (rewind) {
          // Back to where this run started (everything before it was stored by earlier runs): the pages read so far
          // may have skipped older resources still to come.
          if (checkpoint) await checkpoints.set(practiceId, connector.name, type, checkpoint.position);
          else await checkpoints.reset(practiceId, connector.name, type);
        }
        return n;
      });
      result.pages++;
      result.resources += page.records.length + page.quarantined.length;
      result.stored += stored;
      result.duplicates += page.records.length - stored;
      result.quarantined += page.quarantined.length;
      if (position !== undefined) result.checkpoint = position;
      else if (rewind) result.checkpoint = checkpoint?.position;
      options.onProgress?.({ resourceType: type, typeIndex, typeCount, pages: result.pages, resources: result.resources, total: typeof bundle.total === 'number' ? bundle.total : undefined });
      await options.onPageCommitted?.({ resourceType: type, page: result.pages, checkpoint: result.checkpoint });
    }
    result.complete = true;
    if (hold) {
      const position = newPosition(startMs, maxSeen, options.full === true);
      if (position !== undefined) {
        await new CheckpointRepository(db.pool, clock).set(practiceId, connector.name, type, position);
        result.checkpoint = position;
      }
    }
  } catch (error) {
    if (!(error instanceof FhirError)) throw error;
    result.error = error.message;
  } finally {
    await pages.return(undefined).catch(() => {});
  }
  return result;
}

/** The checkpoint after seeing `maxSeen`: never behind the run's start on an incremental sync. */
function newPosition(startMs: number | undefined, maxSeen: number | undefined, full: boolean): string | undefined {
  if (maxSeen === undefined) return startMs === undefined || full ? undefined : new Date(startMs).toISOString();
  const at = full || startMs === undefined ? maxSeen : Math.max(startMs, maxSeen);
  return new Date(at).toISOString();
}
