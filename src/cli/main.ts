/**
 * The `settle` command.
 *
 * Exit codes scripts can rely on: 0 done; 1 the operation failed (problems found, key not found);
 * 2 usage error; 3 invalid settings or data files (nothing started); 4 database unavailable or its
 * migrations refused.
 */
import { Command, CommanderError, Option } from 'commander';
import { runConfigCheck } from './config-check.ts';
import { hl7Command } from './hl7-commands.ts';
import { sandboxEhrCommand } from './sandbox-command.ts';
import { demoCommand } from './demo-command.ts';
import { lettersCommand } from '../outreach/letters-command.ts';
import { fhirCommands } from '../connectors/fhir/cli-commands.ts';
import { runImportCsv } from '../ingest/csv-import.ts';
import { loadMappings } from '../mapping/load.ts';
import { runMappingsTest } from '../mapping/try.ts';
import { KeyringError, loadKeyring, PhiCipher } from '../store/phi-crypto.ts';
import { PayLinkKeyError } from '../domain/pay-link.ts';
import { formatProblem, DataFilesError } from '../config/data-files.ts';
import { createLogger, type Logger } from '../config/logger.ts';
import { loadSettings, SETTING_SPECS, SettingsError, type Settings } from '../config/settings.ts';
import { ROLES, type Role } from '../domain/access.ts';
import { systemClock } from '../domain/clock.ts';
import { ApiKeyRepository, issueApiKey, revokeApiKey } from '../store/api-keys.ts';
import { openDatabase, waitForDatabase, type Database } from '../store/database.ts';
import { MigrationError } from '../store/migrate.ts';
import { PracticeRepository } from '../store/practices.ts';
import { DEFAULT_PRACTICE, prepareDatabase, startEngine, type EngineMode } from './engine.ts';
import { auditCommand } from './audit-command.ts';
import { analyticsCommand } from './analytics-command.ts';
import { payLinkCommand } from '../payments/pay-commands.ts';
import { writebacksCommand } from '../writeback/cli.ts';
import { paymentsCommand } from '../payments/refund-cli.ts';
import { agencyCommand } from '../outreach/agency-command.ts';
import { emailCommand } from '../outreach/email-command.ts';

/** Exit codes of `settle`. */
export const EXIT = { ok: 0, failed: 1, usage: 2, config: 3, database: 4 } as const;

class ExitError extends Error {
  readonly exitCode: number;
  constructor(exitCode: number, message: string) {
    super(message);
    this.exitCode = exitCode;
  }
}

function settingsOrExit(): Settings {
  try {
    return loadSettings();
  } catch (error) {
    if (error instanceof SettingsError) throw new ExitError(EXIT.config, error.message);
    throw error;
  }
}

async function runEngine(mode: EngineMode, listenHost?: string): Promise<void> {
  const settings = settingsOrExit();
  const logger = createLogger({ level: settings.logLevel });
  let engine;
  try {
    engine = await startEngine({ mode, settings, logger, listenHost });
  } catch (error) {
    if (error instanceof DataFilesError) {
      throw new ExitError(EXIT.config, `Settle did not start: fix these data files first.\n${error.problems.map(formatProblem).join('\n')}`);
    }
    // Missing or malformed keys are configuration, not a crash: say which, never the key, exit 3.
    if (error instanceof KeyringError || error instanceof PayLinkKeyError) throw new ExitError(EXIT.config, `Settle did not start: ${error.message}`);
    throw error;
  }
  if (engine.url) process.stdout.write(`Settle ${mode === 'start' ? 'engine' : 'API'} listening on ${engine.url}\n`);
  if (mode === 'listen') {
    // Listeners are all a `listen` process is for: one that cannot start exits, so its supervisor restarts it.
    const started = engine;
    started.ready.then(
      () => {
        for (const l of started.listeners) process.stdout.write(`Settle listening for HL7 v2 (${l.connector}) on ${l.host}:${l.port}\n`);
      },
      () => started.stop().finally(() => process.exit(EXIT.failed)),
    );
  }
  // A long-running engine logs a stray rejection instead of dying with every job and connection it holds.
  process.on('unhandledRejection', (reason) => logger.error('unhandled rejection', { error: (reason as Error)?.message }));
  let signalled = false;
  const shutdown = (signal: string) => {
    if (signalled) {
      logger.warn('second signal: exiting now', { signal });
      process.exit(130);
    }
    signalled = true;
    logger.info('signal received', { signal });
    // Agenda 6.2.6 leaves a 5-minute timer behind per job run: exit explicitly once closed.
    const hardStop = setTimeout(() => process.exit(EXIT.failed), settings.shutdownTimeoutMs + 10_000);
    hardStop.unref();
    engine.stop().then(
      () => process.exit(EXIT.ok),
      (error: Error) => {
        logger.error('shutdown failed', { error: error.message });
        process.exit(EXIT.failed);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

/** Opens and migrates the database for a one-off command, giving up after `waitMs`. */
async function withDatabase<T>(logger: Logger, work: (db: Database, settings: Settings) => Promise<T>, waitMs = 30_000): Promise<T> {
  const settings = settingsOrExit();
  const db = await openDatabase({ databaseUrl: settings.databaseUrl, dataDir: settings.dataDir, poolSize: 3 });
  try {
    try {
      await waitForDatabase(db, AbortSignal.timeout(waitMs), (error, attempt) =>
        logger.warn('database unreachable, retrying', { attempt, error: error.message }),
      );
      await prepareDatabase(db);
    } catch (error) {
      const message = error instanceof MigrationError ? error.message : `The database is unreachable: ${(error as Error).message}`;
      throw new ExitError(EXIT.database, message);
    }
    return await work(db, settings);
  } finally {
    await db.close();
  }
}

/** The practice `slug` names, or the default practice ({@link withDatabase} makes sure it exists). */
async function practiceFor(db: Database, slug: string | undefined) {
  const practice = await new PracticeRepository(db.pool).findBySlug(slug ?? DEFAULT_PRACTICE.slug);
  if (!practice) throw new ExitError(EXIT.failed, `No practice "${slug}".`);
  return practice;
}

/** Builds the command tree. */
export function buildProgram(out: (text: string) => void = (t) => process.stdout.write(t)): Command {
  const program = new Command('settle')
    .description('Settle: EHR integration engine for patient balances, outreach, payments and write-back.')
    .version('0.1.0')
    .addHelpText('after', `\nSettings come from environment variables:\n${Object.keys(SETTING_SPECS).map((n) => `  ${n}`).join('\n')}\nSee README.md for what each means.`)
    .showHelpAfterError()
    .exitOverride();
  const cliLogger = () => createLogger({ level: 'warn', stream: process.stderr });

  program.command('start').description('Run the API, the worker and the listeners in one process.').action(() => runEngine('start'));
  program.command('serve').description('Run the API only (jobs are left to workers).').action(() => runEngine('serve'));
  program.command('worker').description('Run jobs only.').action(() => runEngine('worker'));
  program
    .command('listen')
    .description('Run the MLLP listeners of the hl7v2-mllp connectors only (one such process per port; jobs are left to workers).')
    .option('--host <host>', "interface every listener binds instead of its connector's listen.host (0.0.0.0 in a container)")
    .action((options: { host?: string }) => runEngine('listen', options.host));

  program
    .command('migrate')
    .description('Apply pending database migrations, then exit.')
    .action(async () => {
      await withDatabase(cliLogger(), async () => out('Database is up to date.\n'));
    });

  const config = program.command('config').description('Connector, mapping, policy and profile files.');
  config
    .command('check')
    .description('Validate every data file; print each problem as `file: /json/path: message`.')
    .action(() => {
      const settings = settingsOrExit();
      const code = runConfigCheck(settings.configDir, (line) => out(`${line}\n`));
      if (code !== 0) throw new ExitError(code, '');
    });

  const apikey = program.command('apikey').description('API keys (shown once, stored hashed).');
  apikey
    .command('create')
    .description('Create a key and print it once.')
    .addOption(new Option('--role <role>', 'what the key may do').choices(ROLES).makeOptionMandatory())
    .requiredOption('--name <name>', 'who or what uses the key')
    .option('--practice <slug>', 'practice the key belongs to (default: the default practice)')
    .option('--json', 'print JSON')
    .action(async (options: { role: Role; name: string; practice?: string; json?: boolean }) => {
      await withDatabase(cliLogger(), async (db) => {
        const practice = await practiceFor(db, options.practice);
        const created = await issueApiKey(db, systemClock, { practiceId: practice.id, name: options.name, role: options.role, actor: 'cli' });
        if (options.json) {
          out(`${JSON.stringify({ id: created.key.id, role: created.key.role, name: created.key.name, practice: practice.slug, secret: created.secret })}\n`);
        } else {
          out(`Created ${created.key.role} key "${created.key.name}" for ${practice.slug} (${created.key.id}).\n`);
          out(`\n  ${created.secret}\n\nStore it now: it is not shown again.\n`);
        }
      });
    });
  apikey
    .command('list')
    .description('List keys (never their secrets).')
    .option('--practice <slug>', 'only this practice')
    .option('--json', 'print JSON')
    .action(async (options: { practice?: string; json?: boolean }) => {
      await withDatabase(cliLogger(), async (db) => {
        const practice = options.practice ? await practiceFor(db, options.practice) : undefined;
        const keys = await new ApiKeyRepository(db.pool, systemClock).list(practice?.id);
        if (options.json) {
          out(`${JSON.stringify(keys)}\n`);
          return;
        }
        for (const key of keys) {
          const state = key.revokedAt ? `revoked ${key.revokedAt.toISOString()}` : key.lastUsedAt ? `last used ${key.lastUsedAt.toISOString()}` : 'never used';
          out(`${key.id}  ${key.prefix}  ${key.role.padEnd(11)}  ${key.name}  (${state})\n`);
        }
        if (keys.length === 0) out('No API keys. Create one with: settle apikey create --role admin --name "you"\n');
      });
    });
  apikey
    .command('revoke')
    .description('Revoke a key by id or prefix; it stops working at once.')
    .argument('<key>', 'key id or its prefix (settle_xxxxxxxxxxxx)')
    .action(async (idOrPrefix: string) => {
      await withDatabase(cliLogger(), async (db) => {
        const revoked = await revokeApiKey(db, systemClock, { idOrPrefix, actor: 'cli' });
        if (!revoked) throw new ExitError(EXIT.failed, `No API key ${idOrPrefix}.`);
        out(`Revoked ${revoked.prefix} (${revoked.name}).\n`);
      });
    });
  const mappings = program.command('mappings').description('Mapping files.');
  mappings
    .command('test')
    .description('Map a FHIR resource or Bundle, an HL7 message or a CSV file with one mapping; print the result or every error. Touches no database.')
    .argument('<name>', 'mapping name (mappings/NAME.json)')
    .argument('<file>', 'the file to map')
    .option('--time-zone <zone>', 'IANA time zone for dates without one', 'UTC')
    .action((name: string, file: string, options: { timeZone: string }) => {
      const settings = settingsOrExit();
      const code = runMappingsTest(settings.configDir, name, file, (line) => out(`${line}\n`), options.timeZone);
      if (code !== 0) throw new ExitError(code, '');
    });

  const importCommand = program.command('import').description('Bring in files exported by a practice-management system.');
  importCommand
    .command('csv')
    .description('Import a statement export: bad rows are reported as `line N, column C: reason`, good rows imported; re-running changes nothing.')
    .argument('<file>', 'the CSV file')
    .requiredOption('--mapping <name>', 'the mapping that reads it (e.g. csv-statement)')
    .option('--practice <slug>', 'practice the balances belong to (default: the default practice)')
    .option('--connector <name>', 'name the rows are recorded under', 'csv-import')
    .action(async (file: string, options: { mapping: string; practice?: string; connector: string }) => {
      const settings = settingsOrExit();
      const mapping = loadMappings(settings.configDir).get(options.mapping);
      if (!mapping) throw new ExitError(EXIT.failed, `No mapping "${options.mapping}" in ${settings.configDir}/mappings.`);
      const logger = cliLogger();
      const cipher = new PhiCipher(
        await loadKeyring({ encryptionKeys: settings.encryptionKeys, blindIndexKey: settings.blindIndexKey, dataDir: settings.dataDir, embedded: !settings.databaseUrl, logger }),
      );
      const code = await withDatabase(logger, async (db) => {
        const practice = await practiceFor(db, options.practice);
        return runImportCsv({
          db,
          practiceId: practice.id,
          connector: options.connector,
          mapping,
          file,
          cipher,
          clock: systemClock,
          print: (line) => out(`${line}\n`),
          progress: process.stderr.isTTY ? process.stderr : undefined,
        });
      });
      if (code !== 0) throw new ExitError(code, '');
    });

  for (const command of fhirCommands({
    withDatabase: (work) => withDatabase(cliLogger(), work),
    settings: settingsOrExit,
    out,
    exitError: (code, message) => new ExitError(code, message),
  })) {
    program.addCommand(command);
  }
  program.addCommand(sandboxEhrCommand(out));
  program.addCommand(demoCommand({ settings: settingsOrExit, withDatabase: (work) => withDatabase(cliLogger(), work), out }));
  program.addCommand(hl7Command({ withDatabase: (work) => withDatabase(cliLogger(), work), out, exitError: (code, message) => new ExitError(code, message), practiceFor }));
  program.addCommand(lettersCommand({ withDatabase: (work) => withDatabase(cliLogger(), work), out, exitError: (code, message) => new ExitError(code, message), practiceFor }));
  program.addCommand(auditCommand({ withDatabase: (work) => withDatabase(cliLogger(), work), out, exitError: (code, message) => new ExitError(code, message), practiceFor }));
  program.addCommand(payLinkCommand({ withDatabase: (work) => withDatabase(cliLogger(), work), out, exitError: (code, message) => new ExitError(code, message), practiceFor }));
  program.addCommand(writebacksCommand({ withDatabase: (work) => withDatabase(cliLogger(), work), out, exitError: (code, message) => new ExitError(code, message), practiceFor }));
  program.addCommand(paymentsCommand({ withDatabase: (work) => withDatabase(cliLogger(), work), out, exitError: (code, message) => new ExitError(code, message), practiceFor }));
  program.addCommand(agencyCommand({ withDatabase: (work) => withDatabase(cliLogger(), work), out, exitError: (code, message) => new ExitError(code, message), practiceFor }));
  program.addCommand(emailCommand({ withDatabase: (work) => withDatabase(cliLogger(), work), out, exitError: (code, message) => new ExitError(code, message) }));
  program.addCommand(analyticsCommand({
    withDatabase: (work) => withDatabase(cliLogger(), work), out, practiceFor,
    cipher: async () => {
      const settings = settingsOrExit();
      return new PhiCipher(await loadKeyring({
        encryptionKeys: settings.encryptionKeys, blindIndexKey: settings.blindIndexKey, dataDir: settings.dataDir, embedded: !settings.databaseUrl, logger: cliLogger(),
      }));
    },
  }));
  return program;
}

/** Runs the CLI with these arguments. */
export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exitCode = error.exitCode === 0 ? EXIT.ok : EXIT.usage;
      return;
    }
    if (error instanceof DataFilesError) {
      process.stderr.write(`Fix these data files first:\n${error.problems.map(formatProblem).join('\n')}\n`);
      process.exitCode = EXIT.config;
      return;
    }
    if (error instanceof ExitError) {
      if (error.message) process.stderr.write(`${error.message}\n`);
      process.exitCode = error.exitCode;
      return;
    }
    process.stderr.write(`settle: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = EXIT.failed;
  }
}

if (import.meta.main) await main(process.argv);
