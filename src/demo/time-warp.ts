/**
 * `settle demo --days N`: the whole loop, fast-forwarded. A manual clock starts N days ago and steps one day at a
 * time; each simulated day runs the engine's own jobs in the order a real day would (sync from the sandbox EHR,
 * on the first day and weekly after it; the practice-management system's visits over MLLP, ingest, outreach
 * planning and delivery, the patients' answers through the sandbox checkout, plan installments, write-backs to
 * the sandbox EHR, the letter batch).
 * The data lands in the configured database under the demo practice, so `npm start` shows it afterwards.
 *
 * Nothing leaves the machine: no channel is configured, so every message stays in the outbox; payments are
 * sandbox payments; write-backs go to the in-process sandbox EHR.
 */
import type { MemoryRepository } from '@medplum/fhir-router';
import { DateTime } from 'luxon';
import type { Logger } from 'winston';
import { loadDataFiles, DataFilesError } from '../config/data-files.ts';
import type { Settings } from '../config/settings.ts';
import { asHl7v2MllpConnector, startMllpListener, type MllpListener } from '../connectors/hl7v2/mllp-server.ts';
import { ManualClock } from '../domain/clock.ts';
import { displayMoney, money } from '../domain/money.ts';
import { loadMappings } from '../mapping/load.ts';
import { loadPayLinkKeys } from '../payments/pay-link-keys.ts';
import { createPaymentsWiring } from '../payments/pay-wiring.ts';
import { SandboxGateway } from '../payments/sandbox-gateway.ts';
import { PRINT_BATCH_JOB } from '../outreach/print-batch.ts';
import { JobRegistry } from '../scheduler/scheduler.ts';
import { JOBS, registerStageJobs } from '../scheduler/jobs.ts';
import { openDatabase, type Database } from '../store/database.ts';
import { loadKeyring, PhiCipher } from '../store/phi-crypto.ts';
import { PracticeRepository } from '../store/practices.ts';
import { prepareDatabase } from '../cli/engine.ts';
import { sendVisits, visitsOn } from './hl7-feed.ts';
import { answerMessages, recordRegistrationConsents, type PatientResponses } from './patients.ts';
import { StepTimings } from './timings.ts';
import { DEMO_CONNECTORS, DEMO_PRACTICE, startDemoWorld } from './world.ts';

/** Options of {@link runDemoDays}. */
export interface DemoDaysOptions {
  settings: Settings;
  logger: Logger;
  days: number;
  /** Patients of the sandbox EHR (default 2,000). */
  patients: number;
  /** Visits the practice-management system bills per day (default 25). */
  visitsPerDay: number;
  seed: number;
  /** Where progress lines go (one per simulated week and the summary). */
  print: (line: string) => void;
  /** "Today" (default: now): the demo ends here. */
  now?: Date;
  /** Days of visits the practice-management system sends on the first day, its backlog (default 30). */
  backlogVisitDays?: number;
  /** Which of the patients (by seeded index) the sandbox EHR holds (default: all); see `DemoWorldOptions.include`. */
  include?: (index: number) => boolean;
  /** Collects the wall time of each step (`settle demo --timings`). */
  timings?: StepTimings;
}

/** What the fast-forwarded demo produced. */
export interface DemoSummary {
  days: number;
  /** When the sandbox EHR's seeded data starts: seeding again with the same start, seed and patients gives the same resources. */
  seededAt: Date;
  balances: number;
  openCents: number;
  messages: Record<string, number>;
  patients: PatientResponses;
  payments: number;
  writebacksDelivered: number;
  paymentReconciliationsInEhr: number;
}

/** Demo amounts are USD (the sandbox EHR and the simulated PM system bill in USD). */
const usd = (cents: number) => displayMoney(money(cents, 'USD'));

/** How far the sandbox seed's timestamps advance per patient, in days (measured: 189 days for 2,000 patients). */
const SEED_DAYS_PER_PATIENT = 0.1;

/** Days between two syncs of the sandbox EHR in the time warp (see the loop). */
const SYNC_EVERY_DAYS = 7;

/** Runs N simulated days of the demo practice. */
export async function runDemoDays(options: DemoDaysOptions): Promise<DemoSummary> {
  const { settings, logger, days } = options;
  const zone = DEMO_PRACTICE.timeZone;
  const today = DateTime.fromJSDate(options.now ?? new Date(), { zone }).startOf('day');
  const first = today.minus({ days });
  const clock = new ManualClock(first.set({ hour: 8 }).toJSDate());
  const embedded = !settings.databaseUrl;
  const timings = options.timings ?? new StepTimings();
  // The first day (the whole EHR and the visit backlog) is timed apart from the days after it (set in the loop).
  let firstDay = false;
  const timed = <T>(step: string, work: () => Promise<T>) => timings.time(firstDay ? `${step} (day 1)` : step, work);
  const cipher = new PhiCipher(await timed('setup: keys', () => loadKeyring({ encryptionKeys: settings.encryptionKeys, blindIndexKey: settings.blindIndexKey, dataDir: settings.dataDir, embedded, logger })));
  const db = await timed('setup: open database', () => openDatabase({ databaseUrl: settings.databaseUrl, dataDir: settings.dataDir, poolSize: settings.dbPoolSize }));
  let listener: MllpListener | undefined;
  // The seeded resources' lastUpdated (and so their invoice dates) advance about 0.1 day per patient from the start:
  // starting that much earlier keeps every one of them before the first simulated day, none in the future.
  const seededAt = first.minus({ days: 1 + Math.ceil(options.patients * SEED_DAYS_PER_PATIENT) }).toJSDate();
  const world = await timed('setup: sandbox EHR', () => startDemoWorld({ dataDir: settings.dataDir, configDir: settings.configDir, patients: options.patients, seed: options.seed, start: seededAt, clock, ...(options.include ? { include: options.include } : {}) }));
  try {
    await timed('setup: migrations', () => prepareDatabase(db));
    const practice = await new PracticeRepository(db.pool).ensure(DEMO_PRACTICE);
    const files = loadDataFiles(world.configDir);
    if (files.problems.length) throw new DataFilesError(files.problems);
    const publicUrl = settings.publicUrl ?? `http://${settings.host}:${settings.port}`;
    const payLinkKeys = await loadPayLinkKeys({ keys: settings.payLinkKeys, dataDir: settings.dataDir, shared: !embedded, logger });
    const registry = new JobRegistry();
    // Sandbox gateways only (never Stripe, whatever is configured): plan installments are charged in the sandbox.
    const payments = await timed('setup: payments', () => createPaymentsWiring({ db, clock, logger, dataDir: settings.dataDir, sharedDatabase: !embedded, publicUrl, payLinkKeys: settings.payLinkKeys, stripeSecretKey: undefined, stripeWebhookSecret: undefined }));
    registerStageJobs(registry, {
      db, clock, logger, cipher, publicUrl, payLinkKeys,
      connectors: files.connectors, configDir: world.configDir, mappings: loadMappings(world.configDir), profiles: files.profiles, policies: files.policies,
      dataDir: settings.dataDir, enqueueSoon: () => {}, channels: {}, payments,
    } as Parameters<typeof registerStageJobs>[1]);
    const jobs = new Map(registry.list().map((j) => [j.name, j]));
    const run = async (name: string, data: Record<string, unknown> = {}) => {
      const job = jobs.get(name);
      if (!job) return logger.warn('demo: no such job', { job: name });
      const started = performance.now();
      await timed(name, () => job.run(data as never, { jobId: `demo-${name}`, failures: 0 }));
      logger.debug('demo job', { job: name, ms: Math.round(performance.now() - started) });
    };
    const pms = files.connectors.find((c) => c.name === DEMO_CONNECTORS.pms)!;
    listener = await startMllpListener({ db, practiceId: practice.id, connector: asHl7v2MllpConnector(pms.data), logger, clock, onStored: () => {} });
    const gateway = new SandboxGateway({ db, clock, practiceId: practice.id, logger, baseUrl: publicUrl });
    const ingestAll = async () => {
      for (let round = 0; round < 1_000; round++) {
        await run('hl7.process');
        await run('ingest.pending');
        const { rows } = await timed('demo: ingest poll', () => db.pool.query<{ n: number }>(
          `SELECT (SELECT count(*) FROM hl7_messages WHERE practice_id = $1 AND status = 'received')::int
                + (SELECT count(*) FROM source_records WHERE practice_id = $1 AND status = 'pending')::int AS n`,
          [practice.id],
        ));
        if (rows[0]!.n === 0) return;
      }
    };

    const totals: PatientResponses = { messages: 0, paidInFull: 0, plans: 0, disputes: 0, collectedCents: 0 };
    let lastSeq = (await db.pool.query<{ seq: string }>('SELECT coalesce(max(seq), 0)::text AS seq FROM outbox WHERE practice_id = $1', [practice.id])).rows[0]!.seq;
    let visitNumber = Number((await db.pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM hl7_messages WHERE practice_id = $1`, [practice.id])).rows[0]!.n) + 1;
    let registeredUntil = new Date(0);
    for (let d = 0; d < days; d++) {
      const day = first.plus({ days: d });
      firstDay = d === 0;
      // Morning: the EHR's changes and yesterday's visits come in (the first day brings the whole EHR and the last
      // month's visits). After the first day the sandbox EHR changes only by Settle's own write-backs, which the
      // sync does not read, so a weekly sync finds what a daily one would (nothing) at a seventh of the cost.
      clock.set(day.set({ hour: 8 }).toJSDate());
      if (d % SYNC_EVERY_DAYS === 0) await run('fhir.sync', { connector: DEMO_CONNECTORS.ehr });
      const backlog = options.backlogVisitDays ?? 30;
      const visitDays = d === 0 ? Array.from({ length: backlog }, (_, i) => day.minus({ days: backlog - i })) : [day.minus({ days: 1 })];
      const visits = visitDays.flatMap((visitDay) => {
        const billed = visitsOn(options.seed, visitDay.toISODate()!, visitNumber, options.visitsPerDay);
        visitNumber += billed.length;
        return billed;
      });
      const started = performance.now();
      await timed('demo: visits (MLLP)', () => sendVisits({ ...listener!, logger }, visits));
      logger.debug('demo visits sent', { count: visits.length, ms: Math.round(performance.now() - started) });
      await ingestAll();
      // The embedded database's upkeep (the engine's job every 10 minutes, here once a simulated day): PGlite has no
      // autovacuum, and without it the statements reading the tables the demo fills keep plans made when they were
      // empty (the webhook batch's claim read every payment of the practice per event by day 90: 7x slower).
      if (embedded) await run(JOBS.databaseUpkeep);
      await timed('demo: consents', () => recordRegistrationConsents({ db, clock, cipher, practiceId: practice.id, seed: options.seed }, registeredUntil));
      registeredUntil = clock.now();
      // Noon at the practice: today's reminders, and the patients who answer them. Not earlier: a patient's quiet
      // hours are judged in their own zone, and at 10:00 in New York it is 07:00 in Portland, Oregon (quiet until 08:00),
      // so the demo's one planning round a day would never text or email the practice's patients on Pacific time.
      clock.set(day.set({ hour: 12 }).toJSDate());
      await run('outreach.plan');
      await run('outreach.deliver');
      const answered = await timed('demo: answers', () => answerMessages({ db, clock, cipher, logger, gateway, practiceId: practice.id, timeZone: zone, seed: options.seed, baseUrl: publicUrl, timings }, lastSeq));
      lastSeq = answered.lastSeq;
      for (const key of Object.keys(totals) as (keyof PatientResponses)[]) totals[key] += answered.responses[key];
      // Afternoon: installments, write-backs to the EHR, the letters' print batch.
      clock.set(day.set({ hour: 14 }).toJSDate());
      await run('plans.charge-due');
      await run('writeback.deliver');
      clock.set(day.set({ hour: 18 }).toJSDate());
      await run(PRINT_BATCH_JOB);
      if ((d + 1) % 7 === 0 || d === days - 1) {
        options.print(`  day ${String(d + 1).padStart(3)} (${day.toISODate()}): ${totals.messages} messages, ${totals.paidInFull} paid in full, ${totals.plans} plans, ${totals.disputes} disputes, ${usd(totals.collectedCents)} collected`);
      }
    }
    return { ...(await summarize(db, practice.id, days, totals, world.sandbox.repo)), seededAt };
  } finally {
    await listener?.close();
    await world.close();
    await db.close();
  }
}

async function summarize(db: Database, practiceId: string, days: number, patients: PatientResponses, repo: MemoryRepository): Promise<Omit<DemoSummary, 'seededAt'>> {
  const q = async <T>(sql: string) => (await db.pool.query<T & object>(sql, [practiceId])).rows;
  const [balances] = await q<{ n: number; open: string }>(`SELECT count(*)::int AS n, coalesce(sum(patient_amount_minor) FILTER (WHERE status = 'open'), 0)::text AS open FROM balances WHERE practice_id = $1`);
  const messages = Object.fromEntries((await q<{ channel: string; n: number }>('SELECT channel, count(*)::int AS n FROM outbox WHERE practice_id = $1 GROUP BY channel ORDER BY channel')).map((r) => [r.channel, r.n]));
  const [payments] = await q<{ n: number }>(`SELECT count(*)::int AS n FROM payments WHERE practice_id = $1 AND status = 'succeeded'`);
  const [writebacks] = await q<{ n: number }>(`SELECT count(*)::int AS n FROM writeback_outbox WHERE practice_id = $1 AND status = 'delivered'`);
  const reconciliations = await repo.searchResources({ resourceType: 'PaymentReconciliation', count: 10_000 });
  return {
    days,
    balances: balances!.n,
    openCents: Number(balances!.open),
    messages,
    patients,
    payments: payments!.n,
    writebacksDelivered: writebacks!.n,
    paymentReconciliationsInEhr: reconciliations.length,
  };
}

/** The summary as printed. */
export function demoSummaryText(s: DemoSummary): string {
  return [
    `Demo: ${s.days} days of ${DEMO_PRACTICE.name} (fictitious patients; nothing was sent to anyone).`,
    `  balances            ${s.balances} (${usd(s.openCents)} still open)`,
    `  messages (outbox)   ${Object.entries(s.messages).map(([c, n]) => `${n} ${c}`).join(', ') || 'none'}`,
    `  patients            ${s.patients.paidInFull} paid in full, ${s.patients.plans} chose a plan, ${s.patients.disputes} disputed; ${usd(s.patients.collectedCents)} collected at checkout`,
    `  payments            ${s.payments} succeeded (sandbox)`,
    `  write-backs         ${s.writebacksDelivered} delivered; ${s.paymentReconciliationsInEhr} PaymentReconciliation in the sandbox EHR`,
  ].join('\n');
}
