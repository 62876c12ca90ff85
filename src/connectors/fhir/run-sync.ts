/**
 * The FHIR sync as the CLI and the scheduler run it: `settle sync NAME [--full] [--type T]` with a progress bar and
 * a summary, `settle connectors check NAME`, the `fhir.sync` job, and each connector's schedule.
 */
import type { Agenda } from 'agenda';
import cliProgress from 'cli-progress';
import { loadDataFiles, formatProblem, type DataFile } from '../../config/data-files.ts';
import type { Logger } from '../../config/logger.ts';
import type { Clock } from '../../domain/clock.ts';
import type { Database } from '../../store/database.ts';
import { PracticeRepository } from '../../store/practices.ts';
import type { JobDefinition } from '../../scheduler/scheduler.ts';
import { importBulkExport, type BulkImportSummary, type BulkLevel } from './bulk-export.ts';
import { runConnectorCheck } from './capability-check.ts';
import { ConnectorConfigError, createFhirClient, fhirConnectorConfig, type Env, type FhirConnectorConfig } from './connector.ts';
import { FhirError } from './errors.ts';
import { SyncFailedError, syncFhirConnector, type SyncProgress, type SyncSummary } from './sync.ts';

/** The job that syncs one connector; data `{ connector: NAME }`. */
export const FHIR_SYNC_JOB = 'fhir.sync';

/**
 * The fhir-r4 connector file called `name` in a configuration directory.
 * @throws ConnectorConfigError when there is no such file, it has problems, or it is not a fhir-r4 connector.
 */
export function findFhirConnector(configDir: string, name: string): { file: DataFile; config: FhirConnectorConfig } {
  const loaded = loadDataFiles(configDir);
  const file = loaded.connectors.find((c) => c.name === name);
  if (!file) {
    const broken = loaded.problems.filter((p) => p.file === `connectors/${name}.json`);
    if (broken.length > 0) throw new ConnectorConfigError(name, `connectors/${name}.json is invalid:\n${broken.map((p) => `  ${formatProblem(p)}`).join('\n')}`);
    const names = loaded.connectors.filter((c) => c.data.transport === 'fhir-r4').map((c) => c.name);
    throw new ConnectorConfigError(name, `there is no connectors/${name}.json${names.length ? ` (FHIR connectors: ${names.join(', ')})` : ''}`);
  }
  return { file, config: fhirConnectorConfig(file.data) };
}

/** Every valid fhir-r4 connector of a configuration directory. */
export function fhirConnectors(configDir: string): FhirConnectorConfig[] {
  return loadDataFiles(configDir).connectors.filter((c) => c.data.transport === 'fhir-r4').map((c) => fhirConnectorConfig(c.data));
}

/** What `settle sync` needs. */
export interface RunSyncOptions {
  db: Database;
  /** The connector file (from `findFhirConnector` or `loadDataFiles`), or its parsed configuration. */
  connectorFile: DataFile | FhirConnectorConfig;
  practiceId: string;
  full?: boolean;
  /** Only this resource type. */
  type?: string;
  /** Load with Bulk Data `$export` instead of paged searches (a first load); `true` means a system-level export. */
  bulk?: boolean | BulkLevel;
  /** Receives the summary text. */
  out: (text: string) => void;
  /** Where the progress bar is drawn (default stderr; drawn only on a terminal unless `progressAlways`). */
  progressStream?: NodeJS.WritableStream;
  progressAlways?: boolean;
  env?: Env;
  clock?: Clock;
  fetch?: typeof fetch;
}

function configOf(file: DataFile | FhirConnectorConfig): FhirConnectorConfig {
  return 'data' in file && 'absolutePath' in file ? fhirConnectorConfig(file.data) : (file as FhirConnectorConfig);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** The summary as lines. */
export function formatSyncSummary(summary: SyncSummary): string[] {
  const lines = [
    `${summary.types.some((t) => t.error) ? 'Sync of' : 'Synced'} ${summary.connector}${summary.full ? ' (full)' : ''} in ${(summary.durationMs / 1000).toFixed(1)} s: ` +
      `${plural(summary.pages, 'page')}, ${plural(summary.resources, 'resource')}, ${summary.stored} new, ${summary.duplicates} already stored, ${summary.quarantined} quarantined.`,
  ];
  for (const t of summary.types) {
    const head = `  ${t.resourceType}: ${plural(t.pages, 'page')}, ${plural(t.resources, 'resource')}, ${t.stored} new, ${t.duplicates} already stored, ${t.quarantined} quarantined`;
    lines.push(`${head}; ${t.error ? `FAILED: ${t.error}` : `checkpoint ${t.checkpoint ?? 'none'}`}`);
    for (const w of t.warnings) lines.push(`    note: ${w}`);
  }
  if (summary.quarantined > 0) lines.push(`Quarantined entries are listed with their OperationOutcome on GET /connectors/${summary.connector}.`);
  return lines;
}

/**
 * `settle sync NAME [--full] [--type T]`: runs the sync with a progress bar (pages, resources, resources/s, and
 * the ETA when the server reports a total) and prints a summary.
 * @returns exit code 0 when every type synced, 1 otherwise (the summary says which type failed and why).
 */
export async function runSync(options: RunSyncOptions): Promise<{ code: number; summary?: SyncSummary }> {
  const { out } = options;
  let config: FhirConnectorConfig;
  let client;
  try {
    config = configOf(options.connectorFile);
    client = createFhirClient(config, { env: options.env, clock: options.clock, fetch: options.fetch });
  } catch (error) {
    if (error instanceof ConnectorConfigError) {
      out(`${error.message}\n`);
      return { code: 1 };
    }
    throw error;
  }
  if (options.bulk) return runBulk(options, config, client);
  const stream = options.progressStream ?? process.stderr;
  const bar = new cliProgress.SingleBar({
    stream,
    format: '{type} [{bar}] {resources}{of} resources | {pages} pages | {rate}/s | ETA {etaText}',
    noTTYOutput: options.progressAlways === true,
    notTTYSchedule: 1000,
    hideCursor: null,
    fps: 5,
  });
  let current: string | undefined;
  // A type's clock starts when the previous type's last page was in (or when the sync started).
  let typeStarted = performance.now();
  let lastPageAt = typeStarted;
  const payload = (p: SyncProgress) => {
    const seconds = (performance.now() - typeStarted) / 1000;
    const rate = seconds > 0 ? p.resources / seconds : 0;
    const eta = p.total !== undefined && rate > 0 ? `${Math.max(0, Math.ceil((p.total - p.resources) / rate))} s` : '-';
    return { type: `${p.resourceType} (${p.typeIndex + 1}/${p.typeCount})`, resources: p.resources, of: p.total !== undefined ? `/${p.total}` : '', pages: p.pages, rate: Math.round(rate), etaText: eta };
  };
  const onProgress = (p: SyncProgress) => {
    if (current !== p.resourceType) {
      if (current !== undefined) bar.stop();
      current = p.resourceType;
      typeStarted = lastPageAt;
      lastPageAt = performance.now();
      bar.start(p.total ?? Math.max(p.resources, 1), p.resources, payload(p));
      return;
    }
    lastPageAt = performance.now();
    if (p.total !== undefined) bar.setTotal(p.total);
    else bar.setTotal(Math.max(p.resources, 1));
    bar.update(p.resources, payload(p));
  };
  let summary: SyncSummary;
  try {
    summary = await syncFhirConnector({
      db: options.db,
      connector: config,
      practiceId: options.practiceId,
      client,
      clock: options.clock,
      full: options.full,
      types: options.type ? [options.type] : undefined,
      onProgress,
    });
  } catch (error) {
    if (current !== undefined) bar.stop();
    if (error instanceof SyncFailedError) {
      out(`${formatSyncSummary(error.summary).join('\n')}\n`);
      return { code: 1, summary: error.summary };
    }
    if (error instanceof Error && /does not pull/.test(error.message)) {
      out(`${error.message}\n`);
      return { code: 1 };
    }
    throw error;
  }
  if (current !== undefined) bar.stop();
  out(`${formatSyncSummary(summary).join('\n')}\n`);
  return { code: 0, summary };
}

/** The Bulk import summary as lines. */
export function formatBulkSummary(summary: BulkImportSummary): string[] {
  return [
    `Loaded ${summary.connector} by Bulk export in ${(summary.durationMs / 1000).toFixed(1)} s: ${plural(summary.lines, 'line')}, ${summary.stored} new, ${summary.duplicates} already stored, ${summary.quarantined} quarantined; checkpoints at ${summary.transactionTime}.`,
    ...summary.files.map((f) => `  ${f.type}: ${plural(f.lines, 'line')}, ${f.stored} new, ${f.duplicates} already stored, ${f.quarantined} quarantined`),
  ];
}

async function runBulk(options: RunSyncOptions, config: FhirConnectorConfig, client: ReturnType<typeof createFhirClient>): Promise<{ code: number }> {
  const types = options.type ? [options.type] : undefined;
  if (types && !config.resources.some((r) => r.type === options.type)) {
    options.out(`connector ${config.name} does not pull ${options.type} (it pulls ${config.resources.map((r) => r.type).join(', ')})\n`);
    return { code: 1 };
  }
  const level: BulkLevel = options.bulk === true || options.bulk === undefined || options.bulk === false ? { kind: 'system' } : options.bulk;
  try {
    const summary = await importBulkExport({
      db: options.db,
      connector: config,
      practiceId: options.practiceId,
      client,
      level,
      types,
      full: options.full,
      clock: options.clock,
      onProgress: (e) => {
        if (e.phase === 'waiting') options.out(`export in progress: ${e.progress}\n`);
      },
    });
    options.out(`${formatBulkSummary(summary).join('\n')}\n`);
    return { code: 0 };
  } catch (error) {
    if (error instanceof FhirError) {
      options.out(`Bulk export of ${config.name} failed: ${error.message}\n`);
      return { code: 1 };
    }
    throw error;
  }
}

/** What `settle connectors check NAME` needs. */
export interface RunCheckOptions {
  connectorFile: DataFile | FhirConnectorConfig;
  out: (text: string) => void;
  env?: Env;
  fetch?: typeof fetch;
  clock?: Clock;
}

/** `settle connectors check NAME`. @returns exit code 0 when every configured type is usable, else 1. */
export async function runFhirConnectorCheck(options: RunCheckOptions): Promise<number> {
  let config: FhirConnectorConfig;
  try {
    config = configOf(options.connectorFile);
  } catch (error) {
    if (error instanceof ConnectorConfigError) {
      options.out(`${error.message}\n`);
      return 1;
    }
    throw error;
  }
  const { code } = await runConnectorCheck({ connector: config, out: (line) => options.out(`${line}\n`), env: options.env, fetch: options.fetch, clock: options.clock });
  return code;
}

/** What the `fhir.sync` job is built from. */
export interface FhirSyncJobDependencies {
  db: Database;
  clock: Clock;
  logger: Logger;
  /** Where `connectors/` is (settings.configDir). */
  configDir: string;
  env?: Env;
  fetch?: typeof fetch;
}

/**
 * The `fhir.sync` job: syncs the connector named in its data (`{ connector }`) for the practice the connector file
 * names. Connector files are read at each run, so edits apply without a restart. A failed type fails the job
 * (Agenda records it; the next scheduled run resumes from the checkpoints).
 */
export function fhirSyncJob(deps: FhirSyncJobDependencies): JobDefinition<{ connector: string; full?: boolean }> {
  return {
    name: FHIR_SYNC_JOB,
    concurrency: 1,
    lockLifetimeMs: 30 * 60_000,
    async run(data) {
      const { config } = findFhirConnector(deps.configDir, data.connector);
      const practice = await new PracticeRepository(deps.db.pool).findBySlug(config.practice);
      if (!practice) throw new ConnectorConfigError(config.name, `names practice "${config.practice}", which does not exist`);
      const client = createFhirClient(config, { env: deps.env, clock: deps.clock, fetch: deps.fetch });
      try {
        const summary = await syncFhirConnector({ db: deps.db, connector: config, practiceId: practice.id, client, clock: deps.clock, full: data.full === true });
        deps.logger.info('fhir sync done', { connector: config.name, practiceId: practice.id, pages: summary.pages, resources: summary.resources, stored: summary.stored, duplicates: summary.duplicates, quarantined: summary.quarantined });
      } catch (error) {
        if (error instanceof SyncFailedError) {
          const s = error.summary;
          deps.logger.warn('fhir sync failed', { connector: config.name, practiceId: practice.id, stored: s.stored, failedTypes: s.types.filter((t) => t.error).map((t) => t.resourceType) });
        }
        throw error;
      }
    },
  };
}

/**
 * Puts each enabled fhir-r4 connector on its schedule (`every` or `cron`), one repeating `fhir.sync` job per
 * connector however many workers call this (unique on the connector name), and takes off the schedule any
 * connector that is now disabled or whose file is gone. Needs Agenda itself (`scheduler.agenda`):
 * `Scheduler.every` keeps one schedule per job name.
 * @returns the connectors scheduled.
 */
export async function scheduleFhirSyncs(
  agenda: Agenda,
  connectors: readonly FhirConnectorConfig[],
  timeZoneOf: (connector: FhirConnectorConfig) => string | undefined = () => undefined,
): Promise<string[]> {
  const scheduled: string[] = [];
  for (const connector of connectors) {
    if (connector.enabled === false) continue;
    const interval = 'every' in connector.schedule ? connector.schedule.every : connector.schedule.cron;
    const job = agenda.create(FHIR_SYNC_JOB, { connector: connector.name });
    job.unique({ 'data.connector': connector.name });
    job.repeatEvery(interval, { timezone: timeZoneOf(connector), skipImmediate: true });
    await job.save();
    scheduled.push(connector.name);
  }
  const { jobs } = await agenda.queryJobs({ name: FHIR_SYNC_JOB });
  for (const job of jobs) {
    const name = (job.data as { connector?: string } | undefined)?.connector;
    if (job.repeatInterval && name !== undefined && !scheduled.includes(name)) await agenda.cancel({ name: FHIR_SYNC_JOB, data: { connector: name } });
  }
  return scheduled;
}

/**
 * Schedules the enabled fhir-r4 connectors among `files` (a configuration's connector files), each in the time
 * zone of the practice it names (cron schedules run on the practice's clock), and unschedules the others.
 * @returns the connectors scheduled.
 */
export async function scheduleConnectorSyncs(agenda: Agenda, db: Database, files: readonly DataFile[]): Promise<string[]> {
  const connectors = files.filter((f) => f.data.transport === 'fhir-r4').map((f) => fhirConnectorConfig(f.data));
  const zones = new Map<string, string | undefined>();
  const practices = new PracticeRepository(db.pool);
  for (const connector of connectors) if (!zones.has(connector.practice)) zones.set(connector.practice, (await practices.findBySlug(connector.practice))?.timeZone);
  return scheduleFhirSyncs(agenda, connectors, (connector) => zones.get(connector.practice));
}
