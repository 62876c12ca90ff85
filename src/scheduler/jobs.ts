/**
 * Every stage's jobs, registered in one place. Each job is a thin call into its stage.
 */
import { ANALYTICS_REFRESH_INTERVAL, ANALYTICS_REFRESH_JOB, analyticsRefreshJob } from '../analytics/job.ts';
import { fhirSyncJob } from '../connectors/fhir/run-sync.ts';
import { HL7_RETENTION_JOB, hl7RetentionJob } from '../connectors/hl7v2/admin.ts';
import type { DataFile } from '../config/data-files.ts';
import { hl7ProcessJob, ingestJob, INGEST_JOBS } from '../ingest/process.ts';
import type { MappingRegistry } from '../mapping/load.ts';
import { outreachPlanJob, OUTREACH_PLAN_JOB } from '../outreach/run.ts';
import { printBatchJob, PRINT_BATCH_JOB } from '../outreach/print-batch.ts';
import { OUTREACH_DELIVER_JOB, outreachDeliverJob } from '../outreach/deliver.ts';
import type { ChannelMap } from '../outreach/channels.ts';
import type { QuietHours } from '../domain/policy.ts';
import { WRITEBACK_DELIVER_JOB, writebackDeliverJob } from '../writeback/delivery.ts';
import { planInstallmentsJob, PLAN_JOBS, PLAN_SWEEP_INTERVAL } from '../payments/plan-jobs.ts';
import { reconcileJob, RECONCILE_JOB } from '../payments/reconcile-job.ts';
import { payLinkForGuarantor } from '../store/guarantor-pay-links.ts';
import type { PaymentsWiring } from '../payments/pay-wiring.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import type { Logger } from '../config/logger.ts';
import type { Clock } from '../domain/clock.ts';
import { AuditLog } from '../store/audit.ts';
import type { Database } from '../store/database.ts';
import { upkeepEmbeddedDatabase } from '../store/embedded-upkeep.ts';
import { PracticeRepository } from '../store/practices.ts';
import type { JobRegistry, Scheduler } from './scheduler.ts';

/** What stage jobs are built from. */
export interface JobDependencies {
  db: Database;
  clock: Clock;
  logger: Logger;
  /** The connector files, for jobs that act per connector. */
  connectors: DataFile[];
  /** Where the data folders are (settings.configDir). */
  configDir: string;
  /** Encrypts patient contact fields as records are posted. */
  cipher: PhiCipher;
  /** The compiled mappings. */
  mappings: MappingRegistry;
  /** The fhir-profiles/ files inbound FHIR resources are validated against. */
  profiles: DataFile[];
  /** Asks for a job to run soon (coalesced): how one stage wakes the next instead of waiting for its schedule. */
  enqueueSoon: (name: string) => void;
  /** The policies/ files; `default` is the cadence every practice follows for now. */
  policies: DataFile[];
  /** Public URL of the engine, for links in messages. */
  publicUrl?: string;
  /** SETTLE_DATA_DIR: where print batches are written (`print/`). */
  dataDir?: string;
  /** Outreach channels by kind (`buildChannels`); a kind without one keeps its messages held in the outbox. */
  channels?: ChannelMap;
  /** Gateways and pay-link keys (`createPaymentsWiring`): plan installments and reconciliation; absent: those jobs are not registered. */
  payments?: PaymentsWiring;
}

/** Job names, so enqueuers and definitions agree. */
export const JOBS = {
  auditVerify: 'audit.verify',
  prune: 'jobs.prune',
  databaseUpkeep: 'database.upkeep',
} as const;

/** How often the embedded database is analyzed and vacuumed where it changed enough (`embedded-upkeep.ts`). */
export const DATABASE_UPKEEP_INTERVAL = '10 minutes';

/** How long finished one-off jobs stay in `agenda_jobs` as history. */
export const FINISHED_JOB_RETENTION_DAYS = 7;

/** Registers the jobs of every stage. */
export function registerStageJobs(registry: JobRegistry, deps: JobDependencies): void {
  registry.register(hl7RetentionJob(deps));
  registry.register(fhirSyncJob(deps));
  registry.register(hl7ProcessJob({ ...deps, onRecordsStored: async () => deps.enqueueSoon(INGEST_JOBS.ingestPending) }));
  registry.register(ingestJob({ ...deps, profiles: deps.profiles.map((p) => p.data) }));
  const defaultPolicy = deps.policies.find((p) => p.name === 'default');
  if (defaultPolicy) {
    // Each practice follows policies/<its slug>.json, else default; messages carry pay links signed with the payments keys.
    const plan = outreachPlanJob({ ...deps, defaultPolicy: defaultPolicy.data, ...(deps.payments ? { payLinkKeys: deps.payments.keys } : {}) });
    // What planning wrote to the outbox goes out soon after, not at the next minute.
    registry.register<{ practiceId?: string }>({ ...plan, run: async (data, context) => { await plan.run(data, context); deps.enqueueSoon(OUTREACH_DELIVER_JOB); } });
  }
  registry.register(outreachDeliverJob({
    ...deps, channels: deps.channels ?? {}, quietHours: (defaultPolicy?.data as { quietHours?: QuietHours } | undefined)?.quietHours,
  }));
  registry.register(printBatchJob(deps));
  registry.register(writebackDeliverJob(deps));
  registry.register(analyticsRefreshJob(deps));
  if (deps.payments) {
    const { gatewayFor, keys } = deps.payments;
    registry.register(planInstallmentsJob({
      ...deps, gatewayFor, payLink: (input) => payLinkForGuarantor({ db: deps.db, clock: deps.clock, keys, publicUrl: deps.publicUrl }, input),
    }));
    registry.register(reconcileJob({ ...deps, gatewayFor }));
  }
  registry.register<Record<string, never>>({
    name: JOBS.auditVerify,
    concurrency: 1,
    async run() {
      const audit = new AuditLog(deps.db, deps.clock);
      for (const practice of await new PracticeRepository(deps.db.pool).list()) {
        const broken = await audit.verify(practice.id);
        if (broken) deps.logger.error('audit chain broken', { practiceId: practice.id, eventId: broken.eventId, reason: broken.reason });
      }
    },
  });
  registry.register<Record<string, never>>({
    name: JOBS.prune,
    concurrency: 1,
    async run() {
      const cutoff = new Date(deps.clock.now().getTime() - FINISHED_JOB_RETENTION_DAYS * 86_400_000);
      const { rowCount } = await deps.db.pool.query(
        "DELETE FROM agenda_jobs WHERE type = 'normal' AND next_run_at IS NULL AND last_finished_at < $1",
        [cutoff],
      );
      if (rowCount) deps.logger.info('finished jobs pruned', { count: rowCount, olderThan: cutoff.toISOString() });
    },
  });
  // PGlite has no autovacuum: the engine analyzes and vacuums the embedded database itself (a server does its own).
  if (deps.db.kind === 'embedded') {
    registry.register<Record<string, never>>({
      name: JOBS.databaseUpkeep,
      concurrency: 1,
      async run() {
        const done = await upkeepEmbeddedDatabase(deps.db.pool);
        if (done.vacuumed.length + done.analyzed.length > 0) deps.logger.debug('embedded database upkeep', { ...done });
      },
    });
  }
}

/**
 * Puts the recurring jobs on the schedule (idempotent: one schedule however many workers start); `database` is the
 * engine's database kind (the embedded one also gets its upkeep).
 */
export async function scheduleRecurringJobs(scheduler: Scheduler, database: Database['kind']): Promise<void> {
  await scheduler.every('1 day', JOBS.auditVerify, {});
  if (database === 'embedded') await scheduler.every(DATABASE_UPKEEP_INTERVAL, JOBS.databaseUpkeep, {});
  await scheduler.every('1 hour', JOBS.prune, {});
  await scheduler.every('1 day', HL7_RETENTION_JOB, {});
  // Stored HL7 messages become source records, and source records become ledger entries, every minute.
  await scheduler.every('1 minute', INGEST_JOBS.hl7Process, {});
  await scheduler.every('1 minute', INGEST_JOBS.ingestPending, {});
  // Hourly: a second run the same day sends nothing twice, and picks up what quiet hours held back.
  await scheduler.every('1 hour', OUTREACH_PLAN_JOB, {});
  // Hourly: each practice's letters become one print batch once a day, after PRINT_BATCH_HOUR local time.
  await scheduler.every('1 hour', PRINT_BATCH_JOB, {});
  // Outbox rows go to their channels every minute (planning wakes it sooner); retries wait out their backoff.
  await scheduler.every('1 minute', OUTREACH_DELIVER_JOB, {});
  // Write-backs due (new, or failed and past their backoff) go to the EHR every minute; a new payment wakes it sooner.
  await scheduler.every('1 minute', WRITEBACK_DELIVER_JOB, {});
  // Plan installments fall due at 10:00 practice time: a sweep every 15 minutes charges them (and retries).
  await scheduler.every(PLAN_SWEEP_INTERVAL, PLAN_JOBS.chargeDue, {});
  // Yesterday's payments, refunds and write-backs against Stripe's balance transactions.
  await scheduler.every('1 day', RECONCILE_JOB, {});
  // The analytics rollup the measures read: what was posted since shows within minutes (and on demand).
  await scheduler.every(ANALYTICS_REFRESH_INTERVAL, ANALYTICS_REFRESH_JOB, {});
}
