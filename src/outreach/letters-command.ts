/**
 * `settle letters batch [--date YYYY-MM-DD] [--practice SLUG] [--json]`: makes a practice's print batch now
 * (the daily job's work), or prints the one already made that day.
 */
import { Command } from 'commander';
import type { Settings } from '../config/settings.ts';
import { createLogger } from '../config/logger.ts';
import { systemClock } from '../domain/clock.ts';
import type { Practice } from '../domain/practice.ts';
import type { Database } from '../store/database.ts';
import { loadKeyring, PhiCipher } from '../store/phi-crypto.ts';
import { runPrintBatch } from './print-batch.ts';

/** What the command needs from the CLI. */
export interface LettersCommandDependencies {
  withDatabase<T>(work: (db: Database, settings: Settings) => Promise<T>): Promise<T>;
  out(text: string): void;
  exitError(code: number, message: string): Error;
  practiceFor(db: Database, slug: string | undefined): Promise<Practice>;
}

/** The `letters` command tree. */
export function lettersCommand(deps: LettersCommandDependencies): Command {
  const letters = new Command('letters').description('Printed letters: the daily print batch.');
  letters
    .command('batch')
    .description("Render the day's queued letters into one PDF (a page per letter) under SETTLE_DATA_DIR/print/, now.")
    .option('--date <YYYY-MM-DD>', "the batch's day (default: today in the practice's time zone)")
    .option('--practice <slug>', 'the practice (default: the default practice)')
    .option('--json', 'print the result as JSON')
    .action(async (options: { date?: string; practice?: string; json?: boolean }) => {
      if (options.date !== undefined && !/^\d{4}-\d{2}-\d{2}$/.test(options.date)) {
        throw deps.exitError(2, `--date must be YYYY-MM-DD (got "${options.date}").`);
      }
      const logger = createLogger({ level: 'warn', stream: process.stderr });
      await deps.withDatabase(async (db, settings) => {
        const practice = await deps.practiceFor(db, options.practice);
        const cipher = new PhiCipher(await loadKeyring({
          encryptionKeys: settings.encryptionKeys, blindIndexKey: settings.blindIndexKey, dataDir: settings.dataDir, embedded: !settings.databaseUrl, logger,
        }));
        const result = await runPrintBatch({
          db, cipher, clock: systemClock, logger, practiceId: practice.id, dataDir: settings.dataDir, ...(options.date ? { date: options.date } : {}),
        });
        const batch = result.batch;
        if (options.json) {
          deps.out(`${JSON.stringify({ date: result.date, alreadyMade: result.alreadyMade, letters: batch?.letters ?? 0, skipped: batch?.skipped ?? 0, file: result.file ?? null })}\n`);
          return;
        }
        if (!batch) {
          deps.out(`No letters queued for ${practice.slug} on ${result.date}.\n`);
          return;
        }
        const file = result.file ?? `${settings.dataDir}/print/${batch.fileName}`;
        deps.out(`${result.alreadyMade ? 'Already made' : 'Made'}: print batch ${result.date} for ${practice.slug}: ${batch.letters} letter(s), ${batch.skipped} skipped${batch.letters > 0 ? `, ${file}` : ''}\n`);
        for (const s of result.skipped) deps.out(`  skipped ${s.outboxId}: ${s.reason}\n`);
      });
    });
  return letters;
}
