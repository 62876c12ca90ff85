/**
 * `settle paylink GUARANTOR_ID [--practice SLUG]`: prints the guarantor's pay link (the one outreach sends,
 * issued when there is no usable one), to try the pay page by hand or read it to a patient on the phone.
 */
import { Command } from 'commander';
import type { Settings } from '../config/settings.ts';
import { systemClock } from '../domain/clock.ts';
import type { Database } from '../store/database.ts';
import { loadPayLinkKeys } from './pay-link-keys.ts';
import { payLinkForGuarantor } from '../store/guarantor-pay-links.ts';

/** What the command needs from main.ts. */
export interface PayLinkCommandDependencies {
  withDatabase<T>(work: (db: Database, settings: Settings) => Promise<T>): Promise<T>;
  out(text: string): void;
  exitError(code: 1 | 2, message: string): Error;
  practiceFor(db: Database, slug: string | undefined): Promise<{ id: string }>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The `paylink` command. */
export function payLinkCommand(deps: PayLinkCommandDependencies): Command {
  return new Command('paylink')
    .description("Print a guarantor's pay link (reused while it has more than a week left, else a new one).")
    .argument('<guarantorId>', 'the guarantor id (as GET /balances shows it)')
    .option('--practice <slug>', 'the practice (default: default)')
    .action(async (guarantorId: string, options: { practice?: string }) => {
      if (!UUID.test(guarantorId)) throw deps.exitError(2, `"${guarantorId}" is not a guarantor id (a uuid, as GET /balances shows it)`);
      await deps.withDatabase(async (db, settings) => {
        const practice = await deps.practiceFor(db, options.practice);
        const keys = await loadPayLinkKeys({ keys: settings.payLinkKeys, dataDir: settings.dataDir, shared: settings.databaseUrl !== undefined, logger: { warn: (m: string) => void process.stderr.write(`${m}\n`) } as never });
        try {
          deps.out(`${await payLinkForGuarantor({ db, clock: systemClock, keys, publicUrl: settings.publicUrl }, { practiceId: practice.id, guarantorId })}\n`);
        } catch (error) {
          if (error instanceof RangeError) throw deps.exitError(1, error.message);
          throw error;
        }
      });
    });
}
