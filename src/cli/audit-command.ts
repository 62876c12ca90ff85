/**
 * `settle audit verify [--practice SLUG]`: recomputes each practice's audit chain and compares it with the
 * recorded head. Prints one line per practice; exits 1 naming the first broken event when an event was
 * altered or deleted behind Settle's back.
 */
import { Command } from 'commander';
import { systemClock } from '../domain/clock.ts';
import { AuditLog } from '../store/audit.ts';
import type { Database } from '../store/database.ts';
import { PracticeRepository } from '../store/practices.ts';

/** What the `audit` command needs from `settle` (main.ts's helpers). */
export interface AuditCommandDependencies {
  withDatabase<T>(work: (db: Database) => Promise<T>): Promise<T>;
  out(text: string): void;
  exitError(code: 1 | 2, message: string): Error;
  practiceFor(db: Database, slug: string | undefined): Promise<{ id: string; slug: string }>;
}

/** The `settle audit` command. */
export function auditCommand(deps: AuditCommandDependencies): Command {
  const audit = new Command('audit').description('The audit trail.');
  audit
    .command('verify')
    .description("Recompute every practice's audit chain (or one's); exit 1 naming the first altered or deleted event.")
    .option('--practice <slug>', 'only this practice')
    .action(async (options: { practice?: string }) => {
      const broken = await deps.withDatabase(async (db) => {
        const practices = options.practice ? [await deps.practiceFor(db, options.practice)] : await new PracticeRepository(db.pool).list();
        const log = new AuditLog(db, systemClock);
        const problems: string[] = [];
        for (const practice of practices) {
          const result = await log.check(practice.id);
          if (result.broken) {
            const line = `${practice.slug}: BROKEN at event ${result.broken.eventId}: ${result.broken.reason} (${result.events} event(s) before it check out)`;
            deps.out(`${line}\n`);
            problems.push(line);
          } else {
            deps.out(`${practice.slug}: ${result.events} event(s), chain intact\n`);
          }
        }
        return problems;
      });
      if (broken.length > 0) throw deps.exitError(1, `The audit trail was altered: ${broken.length} practice(s) with a broken chain.`);
    });
  return audit;
}
