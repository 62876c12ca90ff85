/**
 * `settle email bounces FILE... [--json]`: applies bounce mail saved to disk (one raw message per file, as a
 * mail client or `postcat`/`exim -Mvc` writes it) exactly as `POST /webhooks/email/bounces` does. A file that
 * is not a DSN is reported and skipped (nothing stored for it); the command exits 1 when any file was.
 */
import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { createLogger } from '../config/logger.ts';
import type { Settings } from '../config/settings.ts';
import { systemClock } from '../domain/clock.ts';
import type { Database } from '../store/database.ts';
import { loadKeyring, PhiCipher } from '../store/phi-crypto.ts';
import { NotADsnError } from './dsn.ts';
import { applyEmailBounce, type BounceResult } from './email-bounces.ts';

/** What the command needs from the CLI. */
export interface EmailCommandDependencies {
  withDatabase<T>(work: (db: Database, settings: Settings) => Promise<T>): Promise<T>;
  out(text: string): void;
  exitError(code: number, message: string): Error;
}

/** The `email` command tree. */
export function emailCommand(deps: EmailCommandDependencies): Command {
  const email = new Command('email').description('Outreach email: bounces returned after sending.');
  email
    .command('bounces')
    .description('Apply bounce messages (RFC 3464 delivery status notifications) saved as files: permanent failures mark the address undeliverable, the sent email undeliverable, and try the next channel.')
    .argument('<file...>', 'raw bounce messages (.eml)')
    .option('--json', 'print one JSON line per file')
    .action(async (files: string[], options: { json?: boolean }) => {
      const logger = createLogger({ level: 'warn', stream: process.stderr });
      const texts: { file: string; raw: string }[] = [];
      for (const file of files) {
        try {
          texts.push({ file, raw: await readFile(file, 'utf8') });
        } catch (error) {
          throw deps.exitError(2, `Cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}.`);
        }
      }
      const rejected = await deps.withDatabase(async (db, settings) => {
        const cipher = new PhiCipher(await loadKeyring({
          encryptionKeys: settings.encryptionKeys, blindIndexKey: settings.blindIndexKey, dataDir: settings.dataDir, embedded: !settings.databaseUrl, logger,
        }));
        let notDsn = 0;
        for (const { file, raw } of texts) {
          let result: BounceResult;
          try {
            result = await applyEmailBounce({ db, cipher, clock: systemClock, logger }, raw);
          } catch (error) {
            if (!(error instanceof NotADsnError)) throw error;
            notDsn++;
            deps.out(options.json ? `${JSON.stringify({ file, error: 'not_a_dsn', missing: error.missing })}\n` : `${file}: not a DSN (${error.message})\n`);
            continue;
          }
          if (options.json) {
            deps.out(`${JSON.stringify({ file, ...result })}\n`);
            continue;
          }
          for (const r of result.recipients) {
            deps.out(`${file}: ${r.action} ${r.status} → ${r.outcome}${r.outboxId ? ` (outbox ${r.outboxId})` : ''}${r.fallbackOutboxId ? `, next channel queued (outbox ${r.fallbackOutboxId})` : ''}${r.staffTaskId ? `, staff task ${r.staffTaskId}` : ''}\n`);
          }
        }
        return notDsn;
      });
      if (rejected > 0) throw deps.exitError(1, `${rejected} of ${files.length} file(s) were not delivery status notifications; nothing was stored for them.`);
    });
  return email;
}
