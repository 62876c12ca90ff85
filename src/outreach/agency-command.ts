/**
 * `settle agency …`: the agency hand-off from the command line.
 *
 *   settle agency ready [--practice SLUG] [--json]      agency-ready balances (ids, amounts, dates)
 *   settle agency export [--out FILE] [--practice SLUG] write the agency CSV (stdout without --out) and mark those
 *                                                        balances sent_to_agency (audited as agency.export, actor "cli")
 *   settle agency recall BALANCE_ID... [--note TEXT]    return balances from the agency (status open, audited)
 */
import { Command } from 'commander';
import { rename, writeFile } from 'node:fs/promises';
import type { Settings } from '../config/settings.ts';
import { systemClock, type Clock } from '../domain/clock.ts';
import type { Database } from '../store/database.ts';
import { createLogger } from '../config/logger.ts';
import { loadKeyring, PhiCipher } from '../store/phi-crypto.ts';
import { AgencyError, agencyReady, exportToAgency, recallFromAgency } from './agency.ts';

/** What the `agency` command needs from `settle`. */
export interface AgencyCommandDependencies {
  /** Opens and migrates the database, runs `work`, closes it (main.ts's `withDatabase`). */
  withDatabase<T>(work: (db: Database, settings: Settings) => Promise<T>): Promise<T>;
  out(text: string): void;
  exitError(code: 1 | 2, message: string): Error;
  practiceFor(db: Database, slug: string | undefined): Promise<{ id: string }>;
  clock?: Clock;
}

/** The `settle agency` command tree. */
export function agencyCommand(deps: AgencyCommandDependencies): Command {
  const clock = deps.clock ?? systemClock;
  // Names and addresses are decrypted for the file: the PHI keys of these settings.
  const cipherFor = async (settings: Settings) => new PhiCipher(await loadKeyring({
    encryptionKeys: settings.encryptionKeys, blindIndexKey: settings.blindIndexKey, dataDir: settings.dataDir, embedded: !settings.databaseUrl,
    logger: createLogger({ level: 'warn', stream: process.stderr }),
  }));
  const agency = new Command('agency').description('Hand balances to a collection agency, and recall them.');
  agency
    .command('ready')
    .description('List agency-ready balances: their cadence reached its agency step and they are still open.')
    .option('--practice <slug>', 'practice (default: the default practice)')
    .option('--json', 'print JSON')
    .action(async (options: { practice?: string; json?: boolean }) => {
      await deps.withDatabase(async (db, settings) => {
        const practice = await deps.practiceFor(db, options.practice);
        const ready = await agencyReady({ db, cipher: await cipherFor(settings), clock }, practice.id, { limit: 1000 });
        if (options.json) {
          deps.out(`${JSON.stringify(ready, null, 2)}\n`);
          return;
        }
        for (const r of ready) deps.out(`${r.balanceId}  ${r.accountRef}  ${(r.amountMinor / 100).toFixed(2)} ${r.currency}  ready since ${r.readySince.toISOString()}\n`);
        deps.out(`${ready.length} agency-ready balance${ready.length === 1 ? '' : 's'}\n`);
      });
    });
  agency
    .command('export')
    .description('Write the CSV an agency needs (account ref, guarantor name, mailing address, phone, amount, first statement and last payment dates) and mark those balances sent_to_agency, which stops all outreach.')
    .option('--out <file>', 'write the CSV here (default: standard output)')
    .option('--practice <slug>', 'practice (default: the default practice)')
    .action(async (options: { out?: string; practice?: string }) => {
      const done = await deps.withDatabase(async (db, settings) => {
        const practice = await deps.practiceFor(db, options.practice);
        return exportToAgency({ db, cipher: await cipherFor(settings), clock }, {
          practiceId: practice.id,
          actor: 'cli',
          // Written (to a temporary name, then renamed) before the export commits: a file that cannot be written marks nothing.
          write: options.out ? async (csv) => {
            const temporary = `${options.out}.partial`;
            await writeFile(temporary, csv, { mode: 0o600 });
            await rename(temporary, options.out!);
          } : undefined,
        });
      });
      if (!options.out) deps.out(done.csv);
      process.stderr.write(done.balanceCount === 0
        ? 'No balance is agency-ready: nothing was exported.\n'
        : `${done.balanceCount} balance${done.balanceCount === 1 ? '' : 's'} sent to the agency (export ${done.exportId}, sha256 ${done.sha256})${options.out ? ` in ${options.out}` : ''}.\n`);
    });
  agency
    .command('recall')
    .description('Return balances from the agency: status back to open (recorded and audited). All or nothing: any id at fault changes nothing.')
    .argument('<balanceIds...>', 'balance ids')
    .option('--practice <slug>', 'practice (default: the default practice)')
    .option('--note <text>', 'why (kept in the status history; no PHI please)')
    .action(async (balanceIds: string[], options: { practice?: string; note?: string }) => {
      const recalled = await deps.withDatabase(async (db, settings) => {
        const practice = await deps.practiceFor(db, options.practice);
        try {
          return await recallFromAgency({ db, cipher: await cipherFor(settings), clock }, {
            practiceId: practice.id, actor: 'cli', balanceIds, ...(options.note ? { note: options.note } : {}),
          });
        } catch (error) {
          if (error instanceof AgencyError) throw deps.exitError(1, error.message);
          throw error;
        }
      });
      deps.out(`${recalled.length} balance${recalled.length === 1 ? '' : 's'} recalled from the agency.\n`);
    });
  return agency;
}
