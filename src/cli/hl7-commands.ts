/**
 * `settle hl7 …`: the HL7v2 message store from the command line.
 *
 *   settle hl7 messages [--type DFT^P03] [--status failed] [--sender PMS] [--since 24h] [--control-id X] [--json]
 *   settle hl7 show <id>                  (audited as hl7.message.view, actor "cli")
 *   settle hl7 reprocess [id...] [filters]
 *   settle hl7 retention                  (runs the hl7.retention job once, now)
 */
import { Command, Option } from 'commander';
import { loadDataFiles } from '../config/data-files.ts';
import { createLogger, type Logger } from '../config/logger.ts';
import type { Settings } from '../config/settings.ts';
import { systemClock, type Clock } from '../domain/clock.ts';
import { reprocessHl7Messages, runHl7Retention, viewHl7Message } from '../connectors/hl7v2/admin.ts';
import type { Database } from '../store/database.ts';
import { Hl7MessageAdmin, InvalidCursorError, isHl7MessageId, type Hl7MessageFilter, type Hl7MessageStatus } from '../store/hl7-messages.ts';

/** What the `hl7` command needs from `settle`. */
export interface Hl7CommandDependencies {
  /** Opens and migrates the database, runs `work`, closes it (main.ts's `withDatabase`). */
  withDatabase<T>(work: (db: Database, settings: Settings) => Promise<T>): Promise<T>;
  /** Writes to standard output. */
  out(text: string): void;
  /** The error that ends the command with an exit code (1 failed, 2 usage) and a message on stderr. */
  exitError(code: 1 | 2, message: string): Error;
  /** Logger for the retention run (default: none). */
  logger?: Logger;
  clock?: Clock;
  /** The practice a `--practice` slug names, or the default practice when none is given (main.ts's `practiceFor`). */
  practiceFor(db: Database, slug: string | undefined): Promise<{ id: string }>;
}

interface FilterOptions {
  type?: string;
  status?: Hl7MessageStatus;
  sender?: string;
  connector?: string;
  controlId?: string;
  since?: string;
  until?: string;
  practice?: string;
}

/**
 * A time given as ISO 8601 (`2026-03-01`, `2026-03-01T10:00:00Z`) or as an age: `90m`, `24h`, `7d` ago.
 * @returns undefined when the text is neither.
 */
export function parseWhen(text: string, now: Date): Date | undefined {
  const age = /^(\d+)\s*(m|h|d)$/i.exec(text.trim());
  if (age) {
    const unit = { m: 60_000, h: 3_600_000, d: 86_400_000 }[age[2].toLowerCase() as 'm' | 'h' | 'd'];
    return new Date(now.getTime() - Number(age[1]) * unit);
  }
  if (!/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(text.trim())) return undefined;
  const date = new Date(text.trim());
  return Number.isNaN(date.getTime()) ? undefined : date;
}

function addFilterOptions(command: Command): Command {
  return command
    .option('--type <type>', 'message type, like DFT^P03, or just DFT')
    .addOption(new Option('--status <status>', 'processing status').choices(['received', 'processed', 'failed']))
    .option('--sender <sender>', 'MSH-3 sending application, or "application|facility"')
    .option('--connector <name>', 'connector name')
    .option('--control-id <id>', 'MSH-10, exactly')
    .option('--since <when>', 'received at or after: ISO date/time, or an age like 24h, 7d')
    .option('--until <when>', 'received before: ISO date/time, or an age')
    .option('--practice <slug>', 'practice (default: the default practice)');
}

/** Builds `settle hl7`. Add it with `program.addCommand(hl7Command(deps))`. */
export function hl7Command(deps: Hl7CommandDependencies): Command {
  const clock = deps.clock ?? systemClock;
  const out = deps.out;

  const filterOf = (options: FilterOptions, ids: string[] = []): Hl7MessageFilter => {
    const when = (name: string, text: string | undefined) => {
      if (text === undefined) return undefined;
      const date = parseWhen(text, clock.now());
      if (!date) throw deps.exitError(2, `--${name} "${text}" is not a date, a date-time or an age like 24h or 7d.`);
      return date;
    };
    if (options.type !== undefined && !/^[A-Z][A-Z0-9]{2}(\^[A-Z0-9]{3})?$/.test(options.type)) {
      throw deps.exitError(2, `--type "${options.type}" is not a message type like DFT^P03 or DFT.`);
    }
    for (const id of ids) if (!isHl7MessageId(id)) throw deps.exitError(2, `"${id}" is not a message id (a UUID).`);
    return {
      type: options.type,
      status: options.status,
      sender: options.sender,
      connector: options.connector,
      controlId: options.controlId,
      since: when('since', options.since),
      until: when('until', options.until),
      ids: ids.length ? ids : undefined,
    };
  };

  const practiceId = async (db: Database, slug: string | undefined): Promise<string> => (await deps.practiceFor(db, slug)).id;

  const hl7 = new Command('hl7').description('The HL7v2 message store: search, view, reprocess, retention.');

  addFilterOptions(
    hl7
      .command('messages')
      .description('List stored messages, newest first (never their content).')
      .option('--limit <n>', 'messages per page (1-1000)', '50')
      .option('--cursor <cursor>', 'the page after the one that printed this cursor')
      .option('--json', 'print JSON'),
  ).action(async (options: FilterOptions & { limit: string; cursor?: string; json?: boolean }) => {
    const limit = Number(options.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw deps.exitError(2, '--limit must be a whole number from 1 to 1000.');
    const filter = filterOf(options);
    await deps.withDatabase(async (db) => {
      let page;
      try {
        page = await new Hl7MessageAdmin(db.pool).search(await practiceId(db, options.practice), filter, { limit, cursor: options.cursor });
      } catch (error) {
        if (error instanceof InvalidCursorError) throw deps.exitError(2, error.message);
        throw error;
      }
      if (options.json) {
        out(`${JSON.stringify({ items: page.items.map(({ practiceId: _p, ...m }) => m), next: page.next })}\n`);
        return;
      }
      for (const m of page.items) {
        const sender = m.sendingFacility ? `${m.sendingApplication}|${m.sendingFacility}` : m.sendingApplication;
        out(`${m.id}  ${m.receivedAt.toISOString()}  ${m.connector}  ${m.messageType.padEnd(7)}  ${m.status.padEnd(9)}  ${sender}  ${m.controlId}${m.error ? `  error: ${m.error}` : ''}\n`);
      }
      if (page.items.length === 0) out('No messages match.\n');
      if (page.next) out(`More: --cursor ${page.next}\n`);
    });
  });

  hl7
    .command('show')
    .description('Print one message with its content (recorded in the audit trail).')
    .argument('<id>', 'message id')
    .option('--practice <slug>', 'practice (default: the default practice)')
    .option('--json', 'print JSON')
    .action(async (id: string, options: { practice?: string; json?: boolean }) => {
      await deps.withDatabase(async (db) => {
        const message = await viewHl7Message(db, clock, { practiceId: await practiceId(db, options.practice), id, actor: 'cli' });
        if (!message) throw deps.exitError(1, `No HL7 message ${id}.`);
        const { practiceId: _p, ...shown } = message;
        if (options.json) {
          out(`${JSON.stringify(shown)}\n`);
          return;
        }
        out(`id:          ${message.id}\n`);
        out(`connector:   ${message.connector}\n`);
        out(`type:        ${message.messageType}\n`);
        out(`control id:  ${message.controlId}\n`);
        out(`sender:      ${message.sendingApplication}|${message.sendingFacility}\n`);
        out(`received:    ${message.receivedAt.toISOString()} (${message.rawBytesCharset})\n`);
        out(`status:      ${message.status}${message.statusChangedAt ? ` since ${message.statusChangedAt.toISOString()}` : ''}\n`);
        if (message.error) out(`error:       ${message.error}\n`);
        out(`\n${message.raw.split(/\r\n|\r|\n/).join('\n')}\n`);
      });
    });

  addFilterOptions(
    hl7
      .command('reprocess')
      .description('Mark messages for processing again (status back to received): by id, or every message matching the filters.')
      .argument('[ids...]', 'message ids')
      .option('--json', 'print JSON'),
  ).action(async (ids: string[], options: FilterOptions & { json?: boolean }) => {
    const filter = filterOf(options, ids);
    if (!Object.values(filter).some((v) => v !== undefined)) {
      throw deps.exitError(2, 'Name the messages: give ids or at least one filter (--status failed, --type DFT^P03, --since 7d …).');
    }
    await deps.withDatabase(async (db) => {
      const result = await reprocessHl7Messages(db, clock, { practiceId: await practiceId(db, options.practice), filter, actor: 'cli' });
      if (options.json) out(`${JSON.stringify(result)}\n`);
      else out(`${result.matched} matched: ${result.requeued} marked for processing again, ${result.alreadyPending} already waiting.\n`);
    });
  });

  hl7
    .command('retention')
    .description("Delete processed messages older than each connector's retentionDays now (the hl7.retention job).")
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      await deps.withDatabase(async (db, settings) => {
        const files = loadDataFiles(settings.configDir);
        const logger = deps.logger ?? createLogger({ level: 'warn', stream: process.stderr });
        const reports = await runHl7Retention({ db, clock, logger, connectors: files.connectors });
        if (options.json) {
          out(`${JSON.stringify(reports.map((r) => ({ connector: r.connector, retentionDays: r.retentionDays, receivedBefore: r.cutoff.toISOString(), pruned: r.count })))}\n`);
          return;
        }
        for (const r of reports) out(`${r.connector}: ${r.count} processed messages received before ${r.cutoff.toISOString()} deleted (retention ${r.retentionDays} days).\n`);
        if (reports.length === 0) out('No hl7v2-mllp connectors configured.\n');
      });
    });

  return hl7;
}
