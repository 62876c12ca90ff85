/**
 * `settle sync NAME [--full] [--type T] [--bulk [GROUP]] [--practice SLUG]` and `settle connectors check NAME`, as commander
 * commands. Add them with `for (const c of fhirCommands(deps)) program.addCommand(c)`.
 */
import { Command } from 'commander';
import type { Settings } from '../../config/settings.ts';
import type { Clock } from '../../domain/clock.ts';
import type { Database } from '../../store/database.ts';
import { PracticeRepository } from '../../store/practices.ts';
import { ConnectorConfigError, type Env } from './connector.ts';
import { findFhirConnector, runFhirConnectorCheck, runSync } from './run-sync.ts';

/** What the FHIR commands need from `settle`. */
export interface FhirCommandDependencies {
  /** Opens and migrates the database, runs `work`, closes it (main.ts's `withDatabase`). */
  withDatabase<T>(work: (db: Database, settings: Settings) => Promise<T>): Promise<T>;
  /** The settings (main.ts's `settingsOrExit`), for commands that need no database. */
  settings(): Settings;
  /** Writes to standard output. */
  out(text: string): void;
  /** The error that ends the command with an exit code (1 failed) and a message on stderr. */
  exitError(code: 1 | 2, message: string): Error;
  env?: Env;
  clock?: Clock;
  fetch?: typeof fetch;
  /** Where the progress bar goes (default stderr, drawn only on a terminal). */
  progressStream?: NodeJS.WritableStream;
}

function connectorOrExit(deps: FhirCommandDependencies, configDir: string, name: string) {
  try {
    return findFhirConnector(configDir, name);
  } catch (error) {
    if (error instanceof ConnectorConfigError) throw deps.exitError(1, error.message);
    throw error;
  }
}

/** `settle sync` and `settle connectors`. */
export function fhirCommands(deps: FhirCommandDependencies): Command[] {
  const sync = new Command('sync')
    .description("Pull a FHIR connector's resources now: from the checkpoints, or everything with --full.")
    .argument('<name>', 'connector name (connectors/NAME.json, transport fhir-r4)')
    .option('--full', 'ignore the checkpoints and read everything (versions already stored are skipped)')
    .option('--type <type>', "only this resource type (one of the connector's)")
    .option('--bulk [group]', 'first load through Bulk Data $export (system level, or Group/<group> when given)')
    .option('--practice <slug>', "practice to store for (default: the connector's practice)")
    .action(async (name: string, options: { full?: boolean; type?: string; practice?: string; bulk?: boolean | string }) => {
      await deps.withDatabase(async (db, settings) => {
        const { file, config } = connectorOrExit(deps, settings.configDir, name);
        const slug = options.practice ?? config.practice;
        const practice = await new PracticeRepository(db.pool).findBySlug(slug);
        if (!practice) throw deps.exitError(1, `No practice "${slug}" (named by ${file.file}).`);
        const { code } = await runSync({
          db,
          connectorFile: file,
          practiceId: practice.id,
          full: options.full,
          type: options.type,
          bulk: typeof options.bulk === 'string' ? { kind: 'group', id: options.bulk } : options.bulk,
          out: deps.out,
          env: deps.env,
          clock: deps.clock,
          fetch: deps.fetch,
          progressStream: deps.progressStream,
        });
        if (code !== 0) throw deps.exitError(1, '');
      });
    });

  const connectors = new Command('connectors').description('Connector files and the servers they reach.');
  connectors
    .command('check')
    .description("Authenticate, read the server's CapabilityStatement and report what the connector can pull, with fixes.")
    .argument('<name>', 'connector name (connectors/NAME.json, transport fhir-r4)')
    .action(async (name: string) => {
      const { file } = connectorOrExit(deps, deps.settings().configDir, name);
      const code = await runFhirConnectorCheck({ connectorFile: file, out: deps.out, env: deps.env, fetch: deps.fetch, clock: deps.clock });
      if (code !== 0) throw deps.exitError(1, '');
    });
  return [sync, connectors];
}
