/**
 * `settle demo`: fast-forwards the whole loop for the demo practice (fictitious patients, the sandbox EHR, a
 * simulated practice-management system, sandbox payments) over the last N days, then prints what happened and a
 * staff key to look at it in the dashboard.
 *
 *   settle demo [--days 90] [--patients 2000] [--visits-per-day 25] [--seed 42] [--timings]
 */
import { Command } from 'commander';
import { integerOption } from './options.ts';
import { createLogger } from '../config/logger.ts';
import type { Settings } from '../config/settings.ts';
import { systemClock } from '../domain/clock.ts';
import { demoSummaryText, runDemoDays } from '../demo/time-warp.ts';
import { StepTimings } from '../demo/timings.ts';
import { DEMO_PRACTICE } from '../demo/world.ts';
import { writeLiveState } from '../demo/live.ts';
import { issueApiKey } from '../store/api-keys.ts';
import type { Database } from '../store/database.ts';
import { PracticeRepository } from '../store/practices.ts';

/** What the demo command needs from the CLI. */
export interface DemoCommandDeps {
  settings: () => Settings;
  withDatabase: <T>(work: (db: Database, settings: Settings) => Promise<T>) => Promise<T>;
  out: (text: string) => void;
}

/** The `demo` command. */
export function demoCommand(deps: DemoCommandDeps): Command {
  return new Command('demo')
    .description('Run the whole loop for a demo practice (fictitious data, nothing sent) over the last N days, fast-forwarded.')
    .option('--days <n>', 'days of cadence to simulate, ending today', integerOption('--days', 1, 365), 90)
    .option('--patients <n>', 'patients of the sandbox EHR', integerOption('--patients', 0, 100_000), 2000)
    .option('--visits-per-day <n>', 'visits the practice-management system bills per day (DFT^P03 over MLLP)', integerOption('--visits-per-day', 0, 1_000), 25)
    .option('--seed <n>', 'seed of the generated data: the same seed gives the same practice', integerOption('--seed', 0, 2 ** 31 - 1), 42)
    .option('--timings', 'print where the time went: wall time per engine job and demo step')
    .action(async ({ timings: showTimings, ...options }: { days: number; patients: number; visitsPerDay: number; seed: number; timings?: boolean }) => {
      const settings = deps.settings();
      const logger = createLogger({ level: settings.logLevel === 'debug' ? 'debug' : 'warn', stream: process.stderr });
      deps.out(`Simulating ${options.days} days of ${DEMO_PRACTICE.name}: fictitious patients, sandbox EHR and payments; nothing leaves this machine.\n`);
      const timings = new StepTimings();
      const summary = await runDemoDays({ settings, logger, ...options, timings, print: (line) => deps.out(`${line}\n`) });
      deps.out(`\n${demoSummaryText(summary)}\n`);
      if (showTimings) deps.out(`\n${timings.text()}\n`);
      // The next `settle start` runs on this demo world (no backlog of its own; the key below is the one to use).
      writeLiveState(settings.dataDir, { seed: options.seed, patients: options.patients, seededAt: summary.seededAt.toISOString(), keyIssued: true });
      await deps.withDatabase(async (db) => {
        const practice = await new PracticeRepository(db.pool).findBySlug(DEMO_PRACTICE.slug);
        const created = await issueApiKey(db, systemClock, { practiceId: practice!.id, name: 'demo staff', role: 'staff', actor: 'cli:demo' });
        const url = settings.publicUrl ?? `http://${settings.host}:${settings.port}`;
        deps.out(`\nSee it: npm start, then open ${url}/dashboard and sign in with this staff key (shown once):\n\n  ${created.secret}\n\n`);
      });
    });
}
