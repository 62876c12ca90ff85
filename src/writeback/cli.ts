/**
 * `settle writebacks …`: the write-back outbox from the command line.
 *
 *   settle writebacks list [--status pending|delivered|failed|dead] [--limit 50] [--practice SLUG] [--json]
 *   settle writebacks replay <id>      a failed or dead write-back (row id or write-back id) back in line, due now
 *   settle writebacks deliver          deliver what is due now, once, and print what happened
 */
import { Command, Option } from 'commander';
import { loadDataFiles } from '../config/data-files.ts';
import { createLogger } from '../config/logger.ts';
import type { Settings } from '../config/settings.ts';
import { systemClock, type Clock } from '../domain/clock.ts';
import { formatMoney } from '../domain/money.ts';
import { loadMappings } from '../mapping/load.ts';
import { AuditLog } from '../store/audit.ts';
import type { Database } from '../store/database.ts';
import { PaymentRepository, type WritebackStatus } from '../store/payments.ts';
import { WritebackDelivery } from './delivery.ts';
import { writebackView } from './routes.ts';

/** What the `writebacks` command needs from `settle` (as `hl7Command`). */
export interface WritebacksCommandDependencies {
  /** Opens and migrates the database, runs `work`, closes it. */
  withDatabase<T>(work: (db: Database, settings: Settings) => Promise<T>): Promise<T>;
  out(text: string): void;
  /** The error that ends the command with an exit code (1 failed, 2 usage) and a message on stderr. */
  exitError(code: 1 | 2, message: string): Error;
  /** The practice a `--practice` slug names, or the default practice. */
  practiceFor(db: Database, slug: string | undefined): Promise<{ id: string }>;
  clock?: Clock;
}

/** Builds `settle writebacks`. Add it with `program.addCommand(writebacksCommand(deps))`. */
export function writebacksCommand(deps: WritebacksCommandDependencies): Command {
  const clock = deps.clock ?? systemClock;
  const command = new Command('writebacks').description('The write-back outbox: payments, refunds and reversals on their way to the EHR.');
  command
    .command('list')
    .description('Write-backs, newest first, with counts by status.')
    .addOption(new Option('--status <status>', 'only this status').choices(['pending', 'delivered', 'failed', 'dead']))
    .option('--limit <n>', 'how many', '50')
    .option('--practice <slug>', 'practice (default: the default practice)')
    .option('--json', 'print JSON')
    .action(async (options: { status?: WritebackStatus; limit: string; practice?: string; json?: boolean }) => {
      const limit = Number(options.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw deps.exitError(2, '--limit must be a whole number from 1 to 1000.');
      await deps.withDatabase(async (db) => {
        const practice = await deps.practiceFor(db, options.practice);
        const repo = new PaymentRepository(db.pool, clock);
        const [counts, rows] = await Promise.all([repo.writebackCounts(practice.id), repo.listWritebacks(practice.id, { status: options.status, limit })]);
        if (options.json) {
          deps.out(`${JSON.stringify({ counts, writebacks: rows.map(writebackView) })}\n`);
          return;
        }
        deps.out(`pending ${counts.pending}  failed ${counts.failed}  dead ${counts.dead}  delivered ${counts.delivered}\n`);
        for (const r of rows) {
          const amount = `${formatMoney({ amount: (r.kind === 'payment' ? 1 : -1) * r.amount.amount, currency: r.amount.currency })} ${r.amount.currency}`;
          const where = r.status === 'delivered' ? `→ ${r.target} ${r.deliveredRef ?? ''}` : r.lastError ? `(${r.lastError.slice(0, 120)})` : '';
          deps.out(`${r.id}  ${r.writebackId}  ${r.status.padEnd(9)}  ${String(r.attempts).padStart(2)} tries  ${amount}  ${where}\n`);
        }
        if (rows.length === 0) deps.out('No write-backs.\n');
      });
    });
  command
    .command('replay')
    .description('Put a failed or dead write-back back in line, due now, its attempts reset (audited, actor "cli").')
    .argument('<id>', 'row id (UUID) or write-back id (payment-…, refund-…, reversal-…)')
    .option('--practice <slug>', 'practice (default: the default practice)')
    .action(async (id: string, options: { practice?: string }) => {
      await deps.withDatabase(async (db) => {
        const practice = await deps.practiceFor(db, options.practice);
        const result = await new PaymentRepository(db.pool, clock).replayWriteback(practice.id, id);
        if (!result) throw deps.exitError(1, `No write-back ${id}.`);
        if (!result.replayed) throw deps.exitError(1, `Write-back ${result.row.writebackId} is ${result.row.status}: only failed or dead write-backs are replayed.`);
        await new AuditLog(db, clock).append({ practiceId: practice.id, actor: 'cli', action: 'writeback.replay', entityType: 'writeback', entityId: result.row.id, detail: { writebackId: result.row.writebackId } });
        deps.out(`Replayed ${result.row.writebackId}: pending, due now (the worker delivers it within a minute, or run: settle writebacks deliver).\n`);
      });
    });
  command
    .command('deliver')
    .description('Deliver the write-backs due now, once, through each practice\'s connector; print the counts.')
    .action(async () => {
      await deps.withDatabase(async (db, settings) => {
        const files = loadDataFiles(settings.configDir);
        const delivery = new WritebackDelivery({
          db, clock, logger: createLogger({ level: 'warn', stream: process.stderr }), connectors: files.connectors,
          mappings: loadMappings(settings.configDir), profiles: files.profiles,
        });
        try {
          const report = await delivery.deliverDue();
          deps.out(`delivered ${report.delivered}  failed ${report.failed}  dead ${report.dead}  deferred ${report.deferred}\n`);
        } finally {
          await delivery.close();
        }
      });
    });
  return command;
}
