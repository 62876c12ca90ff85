/**
 * The engine process: API, worker, or both, on one database; or the MLLP listeners alone (`listen`).
 *
 * The API starts listening first, so `/healthz` answers and `/readyz` explains what is missing while
 * the database is still being reached (with backoff, never a crash loop) and migrated.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { createApi } from '../api/app.ts';
import { EngineMetrics } from '../api/metrics.ts';
import type { ReadinessCheck } from '../api/system-routes.ts';
import { registerHl7Metrics } from '../connectors/hl7v2/admin.ts';
import { asHl7v2MllpConnector, startMllpListener, type MllpListener } from '../connectors/hl7v2/mllp-server.ts';
import { DataFilesError, loadDataFiles, type DataFile } from '../config/data-files.ts';
import type { Logger } from '../config/logger.ts';
import type { Settings } from '../config/settings.ts';
import { systemClock, type Clock } from '../domain/clock.ts';
import { INGEST_JOBS } from '../ingest/process.ts';
import { scheduleConnectorSyncs } from '../connectors/fhir/run-sync.ts';
import { registerStageJobs, scheduleRecurringJobs } from '../scheduler/jobs.ts';
import { WRITEBACK_DELIVER_JOB } from '../writeback/delivery.ts';
import { JobRegistry, Scheduler, type JobDefinition } from '../scheduler/scheduler.ts';
import { openDatabase, waitForDatabase, type Database } from '../store/database.ts';
import { currentVersion, latestVersion, migrate, type MigrationResult } from '../store/migrate.ts';
import { loadKeyring, PhiCipher } from '../store/phi-crypto.ts';
import { profileProblems } from '../mapping/fhir-profiles.ts';
import { loadMappings } from '../mapping/load.ts';
import { PracticeRepository } from '../store/practices.ts';
import { AuditLog } from '../store/audit.ts';
import { createPaymentsWiring } from '../payments/pay-wiring.ts';
import { buildChannels, closeChannels } from '../outreach/channels.ts';
import type { PlanTerms } from '../domain/payment-plan.ts';

/**
 * Which parts run in this process: `start` everything; `serve` the API; `worker` jobs; `listen` the MLLP
 * listeners of the `hl7v2-mllp` connectors (one process per port, apart from replicated workers).
 */
export type EngineMode = 'start' | 'serve' | 'worker' | 'listen';

/** Options beyond the settings. */
export interface EngineOptions {
  mode: EngineMode;
  settings: Settings;
  logger: Logger;
  clock?: Clock;
  /** Job kinds added to the stages' own (tests use this to observe workers). */
  extraJobs?: JobDefinition<never>[];
  /** The interface every MLLP listener binds instead of its connector's `listen.host` (`0.0.0.0` in a container). */
  listenHost?: string;
}

/** A running engine. */
export interface Engine {
  /** Where the API listens (undefined for a worker). */
  url: string | undefined;
  /** Resolves once the database is migrated and the scheduler is up. */
  ready: Promise<void>;
  /** The open database. */
  db: Database;
  /** The MLLP listeners running (filled in once `ready` resolves; empty in `serve` and `worker`). */
  listeners: ReadonlyArray<{ connector: string; host: string; port: number }>;
  /** Stops taking work, lets running jobs finish up to the shutdown deadline, closes the database. */
  stop(): Promise<void>;
}

const VERSION = '0.1.0';

/** The practice created on first start when there is none, so a fresh install has a tenant for its keys. */
export const DEFAULT_PRACTICE = { slug: 'default', name: 'My Practice' };

/**
 * Brings a database to what every process expects: migrated, with the default practice of a fresh install.
 * The engine and every CLI command call it, so whichever runs first leaves the same state.
 */
export async function prepareDatabase(db: Database): Promise<MigrationResult> {
  const result = await migrate(db);
  await new PracticeRepository(db.pool).ensure(DEFAULT_PRACTICE);
  return result;
}

/**
 * Starts the engine.
 * @throws DataFilesError when a connector, mapping, policy or profile file is invalid: nothing starts.
 */
export async function startEngine(options: EngineOptions): Promise<Engine> {
  // Demo mode (SETTLE_DEMO, `settle start` only): the demo practice's configuration folder and jobs (src/demo/live.ts).
  const demo = options.mode === 'start' ? await (await import('../demo/live.ts')).prepareLiveDemo({ settings: options.settings, logger: options.logger, ...(options.clock ? { clock: options.clock } : {}) }) : undefined;
  if (demo) options = { ...options, settings: demo.settings, extraJobs: [...(options.extraJobs ?? []), ...demo.extraJobs] };
  const { settings, logger, mode } = options;
  const clock = options.clock ?? systemClock;
  const dataFiles = loadDataFiles(settings.configDir);
  const problems = [...dataFiles.problems, ...profileProblems(dataFiles.profiles)];
  if (problems.length > 0) throw new DataFilesError(problems);
  if (mode === 'listen' && !dataFiles.connectors.some((c) => c.data.transport === 'hl7v2-mllp')) {
    throw new DataFilesError([{ file: 'connectors', path: '', message: 'has no hl7v2-mllp connector: settle listen has nothing to listen for' }]);
  }
  const embedded = !settings.databaseUrl;
  // Every mapping compiles now, or nothing starts (a bad FHIRPath names its file, JSON path and column).
  const mappings = loadMappings(settings.configDir);
  // Bad or missing keys stop the engine here, before anything is opened.
  const cipher = new PhiCipher(await loadKeyring({
    encryptionKeys: settings.encryptionKeys,
    blindIndexKey: settings.blindIndexKey,
    dataDir: settings.dataDir,
    embedded,
    logger,
  }));

  const db = await openDatabase({ databaseUrl: settings.databaseUrl, dataDir: settings.dataDir, poolSize: settings.dbPoolSize });
  const metrics = new EngineMetrics();
  registerHl7Metrics(metrics.registry, db);
  let scheduler: Scheduler | undefined;
  // Wakes a job soon after the stage before it produced work; many wake-ups within 250 ms make one job.
  const wakeTimers = new Map<string, NodeJS.Timeout>();
  const enqueueSoon = (name: string) => {
    if (wakeTimers.has(name)) return;
    const timer = setTimeout(() => {
      wakeTimers.delete(name);
      scheduler?.now(name, {}).catch((error: Error) => logger.warn('could not enqueue job', { job: name, error: error.message }));
    }, 250);
    timer.unref();
    wakeTimers.set(name, timer);
  };
  const payments = await createPaymentsWiring({
    db, clock, logger, dataDir: settings.dataDir, sharedDatabase: !embedded, publicUrl: settings.publicUrl,
    payLinkKeys: settings.payLinkKeys, stripeSecretKey: settings.stripeSecretKey, stripeSecretKeys: settings.stripeSecretKeys, stripeWebhookSecret: settings.stripeWebhookSecret,
    stripeWebhookSecrets: settings.stripeWebhookSecrets,
    planTerms: dataFiles.policies.find((p) => p.name === 'default')?.data.planTerms as PlanTerms | undefined, webhookPracticeSlug: DEFAULT_PRACTICE.slug,
    // A payment's write-back goes to the EHR within a second, not at the next minute's run.
    onWritebacksQueued: () => enqueueSoon(WRITEBACK_DELIVER_JOB),
  });
  // Outreach channels from settings (Twilio, SMTP, print); a kind without one stays held in the outbox.
  const channels = buildChannels({ publicUrl: settings.publicUrl, twilio: settings.twilio, env: process.env }, { db, cipher, clock });
  const registry = new JobRegistry();
  registerStageJobs(registry, {
    db,
    clock,
    logger,
    connectors: dataFiles.connectors,
    configDir: settings.configDir,
    cipher,
    mappings,
    profiles: dataFiles.profiles,
    policies: dataFiles.policies,
    publicUrl: settings.publicUrl,
    dataDir: settings.dataDir,
    enqueueSoon,
    channels,
    // Gateways and pay-link keys: one wiring for the jobs (plan installments, reconciliation) and the API.
    payments,
  });
  for (const job of options.extraJobs ?? []) registry.register(job);
  const listeners: MllpListener[] = [];
  const listening: Array<{ connector: string; host: string; port: number }> = [];
  let migrated = false;
  let schedulerUp = false;
  let server: Server | undefined;
  let url: string | undefined;
  if (mode === 'start' || mode === 'serve') {
    const api = createApi({
      configDir: settings.configDir,
      cipher,
      mappings,
      db,
      clock,
      logger,
      metrics,
      version: VERSION,
      publicUrl: settings.publicUrl,
      twilioAuthToken: settings.twilio?.authToken,
      emailBounceSecret: settings.emailBounceSecret,
      payments,
      // The live demo's loading progress, on every dashboard page of the demo practice.
      ...(demo ? { dashboardStatus: demo.status } : {}),
      readiness: {
        database: async () => check(db.pool.query('SELECT 1').then(() => 'reachable')),
        migrations: async () =>
          migrated
            ? { ok: true, detail: `at version ${latestVersion()}` }
            : check(currentVersion(db).then((v) => { throw new Error(`at version ${v}, expected ${latestVersion()}`); })),
        scheduler: () =>
          schedulerUp
            ? { ok: true, detail: mode === 'serve' ? 'enqueueing (jobs run in workers)' : 'running jobs' }
            : { ok: false, detail: 'not started yet' },
      },
    });
    server = api.app.listen(settings.port, settings.host);
    await new Promise<void>((resolve, reject) => {
      server!.once('listening', resolve);
      server!.once('error', reject);
    });
    const address = server.address() as AddressInfo;
    url = `http://${settings.host.includes(':') ? `[${settings.host}]` : settings.host}:${address.port}`;
    logger.info('api listening', { url, mode });
  }

  const bringUp = new AbortController();
  const ready = (async () => {
    await waitForDatabase(db, bringUp.signal, (error, attempt, delayMs) =>
      logger.warn('database unreachable, retrying', { attempt, delayMs, error: error.message }),
    );
    const result = await prepareDatabase(db);
    if (result.applied.length) logger.info('migrations applied', { applied: result.applied.map((m) => `${m.version}_${m.name}`) });
    migrated = true;
    // A changed connector, mapping, policy or profile file is a configuration change in each practice's audit trail.
    const configFiles = [...dataFiles.connectors, ...dataFiles.mappings, ...dataFiles.policies, ...dataFiles.profiles];
    for (const practice of await new PracticeRepository(db.pool).list()) await new AuditLog(db, clock).recordConfiguration(practice.id, configFiles);
    // Agenda connects as soon as it is built: build it once the database answers.
    scheduler = new Scheduler({ db, registry, name: `${mode}-${hostname()}-${process.pid}`, concurrency: settings.jobConcurrency });
    scheduler.onOutcome((outcome) => {
      metrics.recordJob(outcome);
      if (outcome.error) logger.warn('job failed', { job: outcome.name, jobId: outcome.jobId, error: outcome.error.message });
    });
    scheduler.onTrouble((error) => logger.warn('scheduler connection trouble', { error: error.message, code: (error as { code?: string }).code }));
    if (mode === 'start' || mode === 'listen') {
      const onStored = () => enqueueSoon(INGEST_JOBS.hl7Process);
      const started = await startListeners(dataFiles.connectors, { db, logger, clock, onStored, listenHost: options.listenHost });
      listeners.push(...started.map((s) => s.listener));
      listening.push(...started.map(({ connector, listener }) => ({ connector, host: listener.host, port: listener.port })));
    }
    if (mode === 'start' || mode === 'worker') {
      await scheduler.start();
      await scheduleRecurringJobs(scheduler, db.kind);
      const synced = await scheduleConnectorSyncs(scheduler.agenda, db, dataFiles.connectors);
      if (synced.length > 0) logger.info('connectors on their schedule', { connectors: synced });
      for (const job of demo?.recurring ?? []) await scheduler.every(job.every, job.name, job.data);
    }
    schedulerUp = true;
    logger.info('engine ready', { mode, database: db.kind });
    const runSoon = (name: string, data: Record<string, unknown>) => scheduler!.now(name, data);
    await demo?.afterReady({ db, url, runSoon }).catch((error: Error) => logger.error('demo failed to start', { error: error.message }));
  })();
  // Failures surface through `ready` and /readyz; the process stays up to report them.
  ready.catch((error: Error) => logger.error('engine failed to start', { error: error.message, code: (error as { code?: string }).code }));

  let stopping: Promise<void> | undefined;
  return {
    url,
    ready,
    db,
    listeners: listening,
    stop() {
      stopping ??= (async () => {
        logger.info('shutting down', { deadlineMs: settings.shutdownTimeoutMs });
        bringUp.abort(new Error('shutting down'));
        if (server) {
          server.close();
          server.closeIdleConnections();
        }
        await ready.catch(() => {});
        // Listeners first: they finish the commits under way and send those ACKs while the database is open.
        await Promise.all(listeners.map((listener) => listener.close()));
        for (const timer of wakeTimers.values()) clearTimeout(timer);
        const stillRunning = scheduler ? await scheduler.stop(settings.shutdownTimeoutMs) : 0;
        if (stillRunning) logger.warn('jobs still running at the deadline: another worker takes them once their lock expires', { count: stillRunning });
        server?.closeAllConnections();
        await closeChannels(channels);
        await db.close();
        await demo?.close();
        logger.info('stopped');
      })();
      return stopping;
    },
  };
}

/**
 * Starts an MLLP listener for every `hl7v2-mllp` connector file (on `listenHost` when given).
 * @throws when a connector names a practice that does not exist (nothing is left listening).
 */
async function startListeners(
  connectors: DataFile[],
  deps: { db: Database; logger: Logger; clock: Clock; onStored: () => void; listenHost?: string },
): Promise<Array<{ connector: string; listener: MllpListener }>> {
  const started: Array<{ connector: string; listener: MllpListener }> = [];
  try {
    for (const file of connectors.filter((c) => c.data.transport === 'hl7v2-mllp')) {
      const configured = asHl7v2MllpConnector(file.data);
      const connector = deps.listenHost ? { ...configured, listen: { ...configured.listen, host: deps.listenHost } } : configured;
      const practice = await new PracticeRepository(deps.db.pool).findBySlug(connector.practice ?? DEFAULT_PRACTICE.slug);
      if (!practice) throw new Error(`${file.file}: practice "${connector.practice}" does not exist`);
      const listener = await startMllpListener({ db: deps.db, practiceId: practice.id, connector, logger: deps.logger, clock: deps.clock, onStored: deps.onStored });
      deps.logger.info('mllp listening', { connector: connector.name, host: listener.host, port: listener.port });
      started.push({ connector: connector.name, listener });
    }
    return started;
  } catch (error) {
    await Promise.all(started.map(({ listener }) => listener.close()));
    throw error;
  }
}

async function check(probe: Promise<string>): Promise<ReadinessCheck> {
  try {
    return { ok: true, detail: await probe };
  } catch (error) {
    return { ok: false, detail: (error as Error).message };
  }
}
