/**
 * The demo inside `settle start` (SETTLE_DEMO): when nothing real is configured (the embedded database, and no
 * connector reaching beyond this machine), the engine opens with the demo practice instead of an empty one.
 *
 * On the first start the last {@link LIVE_DEMO}.backlogDays days are fast-forwarded for a slice of the practice
 * (`runDemoDays`: sync, HL7 visits, ingest, outreach into the outbox, sandbox payments, write-backs) so the
 * dashboard is populated at once. Then the engine runs for real on the demo configuration folder (the sandbox EHR,
 * seeded the same way, and the simulated practice-management system's MLLP feed), with its demo jobs: the rest of
 * the practice arriving in batches (see `loader.ts`), a few visits billed every minute, the patients answering new
 * messages every minute (consents for new guarantors first), and the sandbox EHR's sync.
 *
 * Nothing leaves the machine: no channel is configured (messages stay in the outbox), payments are sandbox
 * payments, and write-backs go to the in-process sandbox EHR.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DateTime } from 'luxon';
import type { Logger } from 'winston';
import { loadDataFiles } from '../config/data-files.ts';
import type { Settings } from '../config/settings.ts';
import { systemClock, type Clock, localDate } from '../domain/clock.ts';
import { SandboxGateway } from '../payments/sandbox-gateway.ts';
import type { JobDefinition } from '../scheduler/scheduler.ts';
import { issueApiKey } from '../store/api-keys.ts';
import type { Database } from '../store/database.ts';
import { loadKeyring, PhiCipher } from '../store/phi-crypto.ts';
import { PracticeRepository } from '../store/practices.ts';
import type { Practice } from '../domain/practice.ts';
import { sendVisits, visitsOn } from './hl7-feed.ts';
import { batchCount, batchPatients, inFirstSlice, loadBatch, loadedPatients, loadingText, progressAfter, type LoadPlan } from './loader.ts';
import { answerMessages, recordRegistrationConsents } from './patients.ts';
import { demoSummaryText, runDemoDays } from './time-warp.ts';
import { DEMO_CONNECTORS, DEMO_PRACTICE, startDemoWorld, type DemoWorld } from './world.ts';

/**
 * The live demo's size: the practice of the issue (2,000 patients; with the past visits about 5,000 balances). The
 * first start fast-forwards only `firstSlice` of the patients, so it populates the dashboard within two minutes
 * on a busy laptop; the rest arrives in the background, `load.patientsPerBatch` patients and their share of the
 * `load.pastVisitDays` days of past visits every minute.
 */
export const LIVE_DEMO = {
  seed: 42, patients: 2_000, backlogDays: 10, backlogVisitDays: 10, visitsPerDay: 3, visitsPerMinute: 2,
  load: { firstSlice: 100, patientsPerBatch: 200, pastVisitDays: 90, visitsPerPastDay: 40 },
} as const;

/** The demo jobs added to the engine's own. */
export const DEMO_JOBS = { visits: 'demo.visits', patients: 'demo.patients', load: 'demo.load' } as const;

/** Hosts that are this machine, or reserved names that cannot be anyone's server (RFC 2606, RFC 6761). */
export function isLocalOrPlaceholderHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
  if (h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h)) return true;
  return /\.(invalid|example|test|localhost)$/.test(h) || /(^|\.)example\.(com|net|org)$/.test(h);
}

/**
 * The connector files of a configuration folder that reach beyond this machine: a fhir-r4 base URL, an hl7v2
 * listen or outbound address, that is not loopback (or a reserved placeholder such as `*.example.invalid`, as in
 * the shipped presets). A connector of another kind counts as reaching out.
 */
export function connectorsReachingOut(configDir: string): string[] {
  const outside: string[] = [];
  for (const file of loadDataFiles(configDir).connectors) {
    const data = file.data as { transport?: string; baseUrl?: string; listen?: { host?: string }; outbound?: { host?: string } };
    let hosts: (string | undefined)[];
    if (data.transport === 'fhir-r4') {
      try {
        hosts = [new URL(String(data.baseUrl)).hostname];
      } catch {
        hosts = [undefined];
      }
    } else if (data.transport === 'hl7v2-mllp') hosts = [data.listen?.host, ...(data.outbound ? [data.outbound.host] : [])];
    else if (data.transport === 'csv') hosts = [];
    else hosts = [undefined];
    if (hosts.some((h) => h === undefined || !isLocalOrPlaceholderHost(h))) outside.push(file.name);
  }
  return outside;
}

/** Whether `settle start` runs the demo, and why. */
export function demoDecision(settings: Settings): { demo: boolean; reason: string } {
  const mode = settings.demo ?? 'auto';
  if (mode === 'on') return { demo: true, reason: 'SETTLE_DEMO=on' };
  if (mode === 'off') return { demo: false, reason: 'SETTLE_DEMO=off' };
  if (settings.databaseUrl) return { demo: false, reason: 'a PostgreSQL server is configured (DATABASE_URL)' };
  const senders = [settings.stripeSecretKey && 'STRIPE_SECRET_KEY', settings.twilio && 'TWILIO_*', process.env.SETTLE_SMTP_URL && 'SETTLE_SMTP_URL'].filter(Boolean);
  if (senders.length > 0) return { demo: false, reason: `real services are configured: ${senders.join(', ')}` };
  const loaded = loadDataFiles(settings.configDir);
  if (loaded.problems.length > 0) return { demo: false, reason: 'the configuration folder has problems' };
  const outside = connectorsReachingOut(settings.configDir);
  if (outside.length > 0) return { demo: false, reason: `connectors reach beyond this machine: ${outside.join(', ')}` };
  return { demo: true, reason: 'embedded database and no connector reaching beyond this machine (SETTLE_DEMO=auto)' };
}

/** What the engine needs to run the demo. */
export interface LiveDemo {
  /** The settings with the demo configuration folder. */
  settings: Settings;
  extraJobs: JobDefinition<never>[];
  /** Recurring jobs to schedule besides the engine's own. */
  recurring: { every: string; name: string; data: Record<string, unknown> }[];
  /**
   * Once the engine is ready: the staff key (first start) and the demo's state. `runSoon` enqueues one of the
   * engine's jobs (the loader asks for a sync after each batch).
   */
  afterReady(engine: { db: Database; url: string | undefined; runSoon: (name: string, data: Record<string, unknown>) => Promise<unknown> }): Promise<void>;
  /** The line the dashboard shows on every page of the demo practice while it is still loading. */
  status(practice: Practice): string | undefined;
  close(): Promise<void>;
}

/** The patients `loaded` selects, except `resync` (added again, updated now, once the engine is ready). */
function withoutResync(loaded: (index: number) => boolean, resync: ReadonlySet<number>): (index: number) => boolean {
  return (index) => loaded(index) && !resync.has(index);
}

/** What `settle start` remembers of the demo between starts (`<dataDir>/demo/live.json`): the world to seed again. */
export interface LiveState {
  seed: number;
  patients: number;
  /** ISO time the sandbox EHR's data starts at (see `DemoSummary.seededAt`). */
  seededAt: string;
  /** Whether a staff key was printed already (it is printed once). */
  keyIssued: boolean;
  /**
   * The background loading of the rest of the practice: its plan, how many batches are in, and the day the past
   * visits end before (ISO date). Absent: the world is whole from the start (as `settle demo` leaves it).
   */
  load?: { plan: LoadPlan; batchesDone: number; endsBefore: string };
}

/**
 * Records the demo world for the next `settle start` (`settle demo` calls it, so the engine then runs on the
 * same sandbox EHR instead of fast-forwarding a backlog of its own).
 */
export function writeLiveState(dataDir: string, state: LiveState): void {
  mkdirSync(join(dataDir, 'demo'), { recursive: true });
  writeFileSync(join(dataDir, 'demo', 'live.json'), `${JSON.stringify(state, null, 2)}\n`);
}

/**
 * Prepares the demo for `settle start`, or returns undefined when the demo does not apply ({@link demoDecision}).
 * On the first start this fast-forwards the backlog (minutes of work at most, printed as it goes).
 */
export async function prepareLiveDemo(options: { settings: Settings; logger: Logger; clock?: Clock; out?: (text: string) => void }): Promise<LiveDemo | undefined> {
  const { settings, logger } = options;
  const decision = demoDecision(settings);
  if (!decision.demo) {
    if ((settings.demo ?? 'auto') === 'auto') logger.info('demo not started', { reason: decision.reason });
    return undefined;
  }
  const out = options.out ?? ((text: string) => process.stdout.write(text));
  const clock = options.clock ?? systemClock;
  const stateFile = join(settings.dataDir, 'demo', 'live.json');
  out(`\n*** DEMO: ${DEMO_PRACTICE.name} — fictitious patients, a sandbox EHR on this machine, sandbox payments. Nothing is sent to anyone. ***\n`);
  out(`    (${decision.reason}; set SETTLE_DEMO=off to start without it)\n`);
  let state: LiveState;
  // On a restart the last batch loaded is added again, updated now: the engine may have stopped before syncing it
  // (a batch it had synced comes back unchanged).
  let resync: number[] = [];
  if (existsSync(stateFile)) {
    state = JSON.parse(readFileSync(stateFile, 'utf8')) as LiveState;
    if (state.load && state.load.batchesDone > 0) resync = batchPatients(state.load.plan, state.load.batchesDone - 1);
  } else {
    const plan: LoadPlan = { patients: LIVE_DEMO.patients, ...LIVE_DEMO.load };
    out(`    First start: fast-forwarding the last ${LIVE_DEMO.backlogDays} days for ${plan.firstSlice} of its ${plan.patients.toLocaleString('en-US')} patients; the rest arrives in the background…\n`);
    const summary = await runDemoDays({
      settings, logger, days: LIVE_DEMO.backlogDays, patients: LIVE_DEMO.patients, visitsPerDay: LIVE_DEMO.visitsPerDay, seed: LIVE_DEMO.seed,
      backlogVisitDays: LIVE_DEMO.backlogVisitDays, now: clock.now(), print: () => {}, include: (i) => inFirstSlice(plan, i),
    });
    out(`${demoSummaryText(summary).replace(/^/gm, '    ')}\n`);
    const endsBefore = DateTime.fromJSDate(clock.now(), { zone: DEMO_PRACTICE.timeZone }).startOf('day').minus({ days: LIVE_DEMO.backlogDays + LIVE_DEMO.backlogVisitDays });
    state = { seed: LIVE_DEMO.seed, patients: LIVE_DEMO.patients, seededAt: summary.seededAt.toISOString(), keyIssued: false, load: { plan, batchesDone: 0, endsBefore: endsBefore.toISODate()! } };
    writeLiveState(settings.dataDir, state);
  }
  const world: DemoWorld = await startDemoWorld({
    dataDir: settings.dataDir, configDir: settings.configDir, patients: state.patients, seed: state.seed, start: new Date(state.seededAt),
    ...(state.load ? { include: withoutResync(loadedPatients(state.load.plan, state.load.batchesDone), new Set(resync)) } : {}),
  });
  const cipher = new PhiCipher(await loadKeyring({ encryptionKeys: settings.encryptionKeys, blindIndexKey: settings.blindIndexKey, dataDir: settings.dataDir, embedded: !settings.databaseUrl, logger }));
  let live: {
    db: Database; practiceId: string; gateway: SandboxGateway; lastSeq: string; registeredUntil: Date; baseUrl: string;
    runSoon: (name: string, data: Record<string, unknown>) => Promise<unknown>;
  } | undefined;
  const loading = () => (state.load && state.load.batchesDone < batchCount(state.load.plan) ? state.load : undefined);

  const visitsJob: JobDefinition<Record<string, never>> = {
    name: DEMO_JOBS.visits,
    concurrency: 1,
    async run() {
      if (!live) return;
      const { rows } = await live.db.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM hl7_messages WHERE practice_id = $1', [live.practiceId]);
      const today = localDate(clock.now(), DEMO_PRACTICE.timeZone);
      const visits = visitsOn(state.seed, today, Number(rows[0]!.n) + 1, LIVE_DEMO.visitsPerMinute);
      await sendVisits({ ...world.mllp, logger }, visits);
    },
  };
  const patientsJob: JobDefinition<Record<string, never>> = {
    name: DEMO_JOBS.patients,
    concurrency: 1,
    async run() {
      if (!live) return;
      const { db, practiceId } = live;
      await recordRegistrationConsents({ db, clock, cipher, practiceId, seed: state.seed }, live.registeredUntil);
      live.registeredUntil = clock.now();
      const answered = await answerMessages({ db, clock, cipher, logger, gateway: live.gateway, practiceId, timeZone: DEMO_PRACTICE.timeZone, seed: state.seed, baseUrl: live.baseUrl }, live.lastSeq);
      live.lastSeq = answered.lastSeq;
      if (answered.responses.messages > 0) logger.info('demo patients answered', { ...answered.responses });
    },
  };

  const loadJob: JobDefinition<Record<string, never>> = {
    name: DEMO_JOBS.load,
    concurrency: 1,
    async run() {
      const load = loading();
      if (!live || !load) return;
      const started = performance.now();
      const loaded = await loadBatch({ world, logger, plan: load.plan, seed: state.seed, endsBefore: DateTime.fromISO(load.endsBefore, { zone: DEMO_PRACTICE.timeZone }) }, load.batchesDone);
      state = { ...state, load: { ...load, batchesDone: load.batchesDone + 1 } };
      writeLiveState(settings.dataDir, state);
      await live.runSoon('fhir.sync', { connector: DEMO_CONNECTORS.ehr });
      logger.info('demo batch loaded', { batch: load.batchesDone + 1, of: batchCount(load.plan), ...loaded, ms: Math.round(performance.now() - started) });
    },
  };

  // The demo never reaches a real service, even with SETTLE_DEMO=on next to real credentials: no channel, no Stripe.
  if (process.env.SETTLE_SMTP_URL) logger.warn('demo: SETTLE_SMTP_URL ignored (nothing is sent in the demo)');
  delete process.env.SETTLE_SMTP_URL;
  return {
    settings: { ...settings, configDir: world.configDir, twilio: undefined, stripeSecretKey: undefined, stripeSecretKeys: new Map(), stripeWebhookSecret: undefined },
    extraJobs: [visitsJob, patientsJob, loadJob] as JobDefinition<never>[],
    recurring: [
      ...(loading() ? [{ every: '1 minute', name: DEMO_JOBS.load, data: {} }] : []),
      { every: '1 minute', name: DEMO_JOBS.visits, data: {} },
      { every: '1 minute', name: DEMO_JOBS.patients, data: {} },
      // The sandbox EHR syncs on its connector file's schedule, as a real EHR's does (scheduleConnectorSyncs).
    ],
    async afterReady(engine) {
      const practice = await new PracticeRepository(engine.db.pool).ensure(DEMO_PRACTICE);
      const baseUrl = settings.publicUrl ?? engine.url ?? `http://${settings.host}:${settings.port}`;
      const { rows } = await engine.db.pool.query<{ seq: string }>('SELECT coalesce(max(seq), 0)::text AS seq FROM outbox WHERE practice_id = $1', [practice.id]);
      live = {
        db: engine.db, practiceId: practice.id, baseUrl, lastSeq: rows[0]!.seq, registeredUntil: clock.now(), runSoon: engine.runSoon,
        gateway: new SandboxGateway({ db: engine.db, clock, practiceId: practice.id, logger, baseUrl }),
      };
      if (resync.length > 0) {
        await world.addPatients(resync);
        await engine.runSoon('fhir.sync', { connector: DEMO_CONNECTORS.ehr });
        resync = [];
      }
      const dashboard = `${baseUrl}/dashboard`;
      if (!state.keyIssued) {
        const created = await issueApiKey(engine.db, clock, { practiceId: practice.id, name: 'demo staff', role: 'staff', actor: 'demo:start' });
        state = { ...state, keyIssued: true };
        writeLiveState(settings.dataDir, state);
        out(`\n*** DEMO ready: open ${dashboard} and sign in with this staff key (shown once, stored only as a hash):\n\n    ${created.secret}\n\n`);
      } else {
        out(`\n*** DEMO: open ${dashboard}; for a staff key run: settle apikey create --practice ${DEMO_PRACTICE.slug} --role staff --name "demo staff"\n\n`);
      }
    },
    status(practice) {
      const load = loading();
      return load && practice.slug === DEMO_PRACTICE.slug ? loadingText(progressAfter(load.plan, load.batchesDone)) : undefined;
    },
    async close() {
      live = undefined;
      await world.close();
    },
  };
}
