/**
 * The daily print batch: every letter a practice's letter channel queued that day (and any left over) becomes
 * one PDF, a page per letter, ready for the mailing run: `SETTLE_DATA_DIR/print/YYYY-MM-DD-<practice>.pdf`
 * (mode 0600: it holds names and addresses), also kept in the database for `GET /print-batches/{date}`.
 *
 * Each letter is rendered from the ledger as it stands when the batch is made, so the amount is current; a
 * letter whose balance was paid, put on a plan or hold, or disputed since it was queued is skipped (its outbox
 * row and attempt are marked failed with the reason), never printed.
 *
 * One batch per practice and day: a second run the same day returns the first batch, and letters queued after
 * it wait for the next day's. Transactions stay short (claim, then render outside, then finish), so the embedded
 * database is not held while PDFs are drawn; a run interrupted mid-render is completed by the next one.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DateTime } from 'luxon';
import type { Logger } from '../config/logger.ts';
import { type Clock, localDate } from '../domain/clock.ts';
import { withTransaction, type Database } from '../store/database.ts';
import { LedgerRepository } from '../store/ledger.ts';
import { OutreachDeliveryStore } from '../store/outreach-delivery.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { PrintBatchStore, type LetterOutcome, type PrintBatch } from '../store/print-batches.ts';
import { PracticeRepository } from '../store/practices.ts';
import type { JobDefinition } from '../scheduler/scheduler.ts';
import { loadStatementInput, renderStatementsPdf, type StatementInput } from './letter.ts';

/** The `letters.print-batch` job's name. */
export const PRINT_BATCH_JOB = 'letters.print-batch';
/** Local hour (practice time zone) from which the scheduled job makes the day's batch. */
export const PRINT_BATCH_HOUR = 17;

/** What a print batch needs. */
export interface PrintBatchOptions {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
  logger: Logger;
  practiceId: string;
  /** `YYYY-MM-DD`; default: today in the practice's time zone. Letters queued before the end of that day are printed. */
  date?: string;
  /** SETTLE_DATA_DIR: the PDF is written to `<dataDir>/print/`. Without it, the PDF is only kept in the database. */
  dataDir?: string;
}

/** What one run did. Ids and counts only. */
export interface PrintBatchResult {
  practiceId: string;
  date: string;
  /** The batch, or undefined when nothing was queued. */
  batch: PrintBatch | undefined;
  /** The batch was already made before this run. */
  alreadyMade: boolean;
  /** Where the PDF was written (absent without letters or a data dir). */
  file?: string;
  skipped: { outboxId: string; reason: string }[];
}

/** Why a queued letter must not be printed now, or undefined when it may. */
function skipReason(balance: { status: string; patientAmount: { amount: number } } | undefined): string | undefined {
  if (!balance) return 'the balance no longer exists';
  if (balance.status !== 'open' && balance.status !== 'in_outreach') return `the balance is ${balance.status.replace(/_/g, ' ')}`;
  if (balance.patientAmount.amount <= 0) return 'nothing is owed';
  return undefined;
}

/**
 * Makes (or returns) a practice's print batch of a day.
 * @throws Error when the practice does not exist or the date is not `YYYY-MM-DD`.
 */
export async function runPrintBatch(options: PrintBatchOptions): Promise<PrintBatchResult> {
  const { db, cipher, clock, logger } = options;
  const practice = await new PracticeRepository(db.pool).findById(options.practiceId);
  if (!practice) throw new Error(`no practice ${options.practiceId}`);
  const date = options.date ?? localDate(clock.now(), practice.timeZone);
  const day = DateTime.fromISO(date, { zone: practice.timeZone });
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date) || !day.isValid) throw new Error(`the batch date "${date}" is not a YYYY-MM-DD date`);
  const until = day.plus({ days: 1 }).startOf('day').toJSDate();
  const fileName = `${date}-${practice.slug}.pdf`;
  const store = new PrintBatchStore(db.pool, cipher, clock);

  const claimed = await withTransaction(db, (tx) => store.on(tx).claim(practice.id, date, fileName, until));
  const result: PrintBatchResult = { practiceId: practice.id, date, batch: claimed, alreadyMade: claimed?.state === 'ready', skipped: [] };
  if (!claimed || claimed.state === 'ready') return result;

  const ledger = new LedgerRepository(db.pool, cipher, clock);
  const inputs: StatementInput[] = [];
  const outcomes: LetterOutcome[] = [];
  for (const letter of await store.letters(claimed.id)) {
    const reason = skipReason(await ledger.getBalance(letter.balanceId));
    const input = reason
      ? undefined
      : await loadStatementInput({
          db, cipher, clock, balanceId: letter.balanceId, payUrl: letter.payUrl, language: letter.language, addressLines: letter.addressLines,
          message: { heading: letter.subject, body: letter.body },
        });
    if (!input) {
      outcomes.push({ outboxId: letter.outboxId, outcome: 'skipped', reason: reason ?? 'the balance no longer exists' });
      continue;
    }
    inputs.push(input);
    outcomes.push({ outboxId: letter.outboxId, outcome: 'printed', page: inputs.length });
  }
  const pdf = inputs.length > 0 ? await renderStatementsPdf(inputs) : null;
  if (pdf && options.dataDir) {
    const dir = join(options.dataDir, 'print');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, fileName);
    const temporary = `${file}.${process.pid}.tmp`;
    await writeFile(temporary, pdf, { mode: 0o600 });
    await rename(temporary, file);
    result.file = file;
  }
  result.batch = await withTransaction(db, async (tx) => {
    const delivery = new OutreachDeliveryStore(tx, cipher, clock);
    for (const o of outcomes) {
      if (o.outcome !== 'skipped') continue;
      await delivery.markFinal(o.outboxId, 'failed', 'not-printed', `not printed: ${o.reason}`);
      await delivery.updateAttempt(o.outboxId, { status: 'failed', rule: 'print-batch', reason: `letter not printed: ${o.reason}` });
    }
    return store.on(tx).finish(claimed.id, pdf, outcomes);
  });
  for (const o of outcomes) if (o.outcome === 'skipped') result.skipped.push({ outboxId: o.outboxId, reason: o.reason });
  logger.info('letters.print_batch', { practiceId: practice.id, date, batchId: claimed.id, letters: inputs.length, skipped: result.skipped.length });
  return result;
}

/** What the print-batch job is built from. */
export interface PrintBatchJobDependencies {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
  logger: Logger;
  dataDir?: string;
}

/**
 * `letters.print-batch`: scheduled hourly; for each practice (or `data.practiceId`), makes the day's batch once
 * the practice's local time is past {@link PRINT_BATCH_HOUR} (or at once with `data.now`). Later runs that day
 * find the batch made and do nothing.
 */
export function printBatchJob(deps: PrintBatchJobDependencies): JobDefinition<{ practiceId?: string; date?: string; now?: boolean }> {
  return {
    name: PRINT_BATCH_JOB,
    concurrency: 1,
    async run(data) {
      const practices = await new PracticeRepository(deps.db.pool).list();
      for (const practice of practices) {
        if (data?.practiceId && practice.id !== data.practiceId) continue;
        const local = DateTime.fromJSDate(deps.clock.now(), { zone: practice.timeZone });
        if (!data?.now && !data?.date && local.hour < PRINT_BATCH_HOUR) continue;
        await runPrintBatch({ ...deps, practiceId: practice.id, ...(data?.date ? { date: data.date } : {}) });
      }
    },
  };
}
