/**
 * `settle analytics refresh [--practice SLUG]`: refreshes the analytics rollup now (what the `analytics.refresh`
 * job does every few minutes). `settle analytics backfill [--batch N]`: fills the birth year and ZIP3 of patients
 * stored before migration 0017 from their encrypted contact fields (idempotent), then refreshes the rollup.
 */
import { Command } from 'commander';
import { BACKFILL_BATCH_SIZE, backfillDemographics } from '../analytics/backfill.ts';
import { refreshAllRollups, refreshRollup, type RollupRefresh } from '../analytics/rollup.ts';
import type { Database } from '../store/database.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { integerOption } from './options.ts';

/** What the `analytics` command needs from `settle` (main.ts's helpers). */
export interface AnalyticsCommandDependencies {
  withDatabase<T>(work: (db: Database) => Promise<T>): Promise<T>;
  out(text: string): void;
  practiceFor(db: Database, slug: string | undefined): Promise<{ id: string; slug: string }>;
  /** The PHI cipher of the configured keys. */
  cipher(): Promise<PhiCipher>;
}

/** The `settle analytics` command. */
export function analyticsCommand(deps: AnalyticsCommandDependencies): Command {
  const analytics = new Command('analytics').description('The analytics rollup the measures read.');
  const print = (refresh: RollupRefresh, slug: string) =>
    deps.out(`${slug}: analytics as of ${refresh.asOf.toISOString()} (refreshed in ${(refresh.durationMs / 1000).toFixed(1)} s)\n`);
  const refreshAll = async (db: Database) => {
    const slugs = new Map((await db.pool.query<{ id: string; slug: string }>('SELECT id, slug FROM practices')).rows.map((p) => [p.id, p.slug]));
    for (const refresh of await refreshAllRollups(db.pool)) print(refresh, slugs.get(refresh.practiceId) ?? refresh.practiceId);
  };
  analytics
    .command('refresh')
    .description("Refresh every practice's analytics rollup (or one's) now.")
    .option('--practice <slug>', 'only this practice')
    .action(async (options: { practice?: string }) => {
      await deps.withDatabase(async (db) => {
        if (!options.practice) return refreshAll(db);
        const practice = await deps.practiceFor(db, options.practice);
        print(await refreshRollup(db.pool, practice.id), practice.slug);
      });
    });
  analytics
    .command('backfill')
    .description('Fill the birth year and ZIP3 of patients stored before they were kept (decrypting in batches; safe to run again), then refresh.')
    .option('--batch <n>', 'patients per batch', integerOption('--batch', 1, 10_000), BACKFILL_BATCH_SIZE)
    .action(async (options: { batch: number }) => {
      const batchSize = options.batch;
      const cipher = await deps.cipher();
      await deps.withDatabase(async (db) => {
        const undecryptable: string[] = [];
        const done = await backfillDemographics(db, cipher, { batchSize, onUndecryptable: (id) => undecryptable.push(id) });
        deps.out(`${done.scanned} patient(s) without a birth year or ZIP3 looked at: ${done.birthYears} birth year(s) and ${done.zip3s} ZIP3(s) filled\n`);
        if (done.undecryptable > 0) deps.out(`${done.undecryptable} field(s) could not be decrypted (patients ${undecryptable.slice(0, 10).join(', ')}${undecryptable.length > 10 ? ', …' : ''})\n`);
        await refreshAll(db);
      });
    });
  return analytics;
}
