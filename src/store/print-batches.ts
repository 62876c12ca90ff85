/**
 * The print queue and print batches (migration 0014): letters the letter channel queued, the day's batch that
 * claims them, and the batch PDF kept for download. Mailing addresses stay in the outbox, encrypted; this store
 * decrypts them only for rendering.
 */
import type { Clock } from '../domain/clock.ts';
import type { Language } from '../domain/outreach.ts';
import type { Queryable } from './database.ts';
import type { PhiCipher } from './phi-crypto.ts';

/** A print batch as staff see it (without its PDF). */
export interface PrintBatch {
  id: string;
  practiceId: string;
  /** `YYYY-MM-DD`. */
  date: string;
  state: 'rendering' | 'ready';
  letters: number;
  skipped: number;
  fileName: string;
  createdAt: Date;
  readyAt: Date | null;
}

/** A queued letter with its outbox text, address decrypted (never log it). */
export interface QueuedLetter {
  outboxId: string;
  balanceId: string;
  payUrl: string;
  /** The mailing address as printed lines. */
  addressLines: string[];
  subject: string | null;
  body: string;
  language: Language;
}

/** What happened to one letter of a batch. */
export type LetterOutcome = { outboxId: string; outcome: 'printed'; page: number } | { outboxId: string; outcome: 'skipped'; reason: string };

interface BatchRow {
  id: string; practice_id: string; batch_date: string; state: 'rendering' | 'ready'; letters: number; skipped: number; file_name: string; created_at: Date; ready_at: Date | null;
}
const BATCH_COLUMNS = 'id, practice_id, batch_date::text AS batch_date, state, letters, skipped, file_name, created_at, ready_at';
const toBatch = (r: BatchRow): PrintBatch => ({
  id: r.id, practiceId: r.practice_id, date: r.batch_date, state: r.state, letters: r.letters, skipped: r.skipped, fileName: r.file_name, createdAt: r.created_at, readyAt: r.ready_at,
});

/** Reads and writes the print queue and batches. */
export class PrintBatchStore {
  readonly #db: Queryable;
  readonly #cipher: PhiCipher;
  readonly #clock: Clock;

  constructor(db: Queryable, cipher: PhiCipher, clock: Clock) {
    this.#db = db;
    this.#cipher = cipher;
    this.#clock = clock;
  }

  /** The same store on another connection (a transaction client). */
  on(db: Queryable): PrintBatchStore {
    return new PrintBatchStore(db, this.#cipher, this.#clock);
  }

  /** Queues a letter (idempotent: a letter queued twice is printed once). @returns true when newly queued. */
  async enqueue(letter: { outboxId: string; practiceId: string; balanceId: string; payUrl: string }): Promise<boolean> {
    const { rowCount } = await this.#db.query(
      `INSERT INTO print_queue (outbox_id, practice_id, balance_id, pay_url, queued_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (outbox_id) DO NOTHING`,
      [letter.outboxId, letter.practiceId, letter.balanceId, letter.payUrl, this.#clock.now()],
    );
    return (rowCount ?? 0) > 0;
  }

  /** Letters of a practice waiting for a batch. */
  async waiting(practiceId: string): Promise<number> {
    const { rows } = await this.#db.query<{ n: number }>('SELECT count(*)::int AS n FROM print_queue WHERE practice_id = $1 AND batch_id IS NULL', [practiceId]);
    return rows[0]!.n;
  }

  /** A practice's batch of a day. */
  async find(practiceId: string, date: string): Promise<PrintBatch | undefined> {
    const { rows } = await this.#db.query<BatchRow>(`SELECT ${BATCH_COLUMNS} FROM print_batches WHERE practice_id = $1 AND batch_date = $2`, [practiceId, date]);
    return rows[0] ? toBatch(rows[0]) : undefined;
  }

  /** A practice's batches, newest day first. */
  async list(practiceId: string, page: { limit?: number; offset?: number } = {}): Promise<PrintBatch[]> {
    const { rows } = await this.#db.query<BatchRow>(
      `SELECT ${BATCH_COLUMNS} FROM print_batches WHERE practice_id = $1 ORDER BY batch_date DESC LIMIT $2 OFFSET $3`,
      [practiceId, Math.min(Math.max(page.limit ?? 50, 1), 500), page.offset ?? 0],
    );
    return rows.map(toBatch);
  }

  /** A ready batch's PDF, or undefined (no such batch, not ready, or nothing was printed). */
  async pdf(practiceId: string, date: string): Promise<{ batch: PrintBatch; pdf: Buffer } | undefined> {
    const { rows } = await this.#db.query<BatchRow & { pdf: Buffer | null }>(
      `SELECT ${BATCH_COLUMNS}, pdf FROM print_batches WHERE practice_id = $1 AND batch_date = $2 AND state = 'ready'`,
      [practiceId, date],
    );
    const row = rows[0];
    return row?.pdf ? { batch: toBatch(row), pdf: Buffer.from(row.pdf) } : undefined;
  }

  /**
   * Opens the day's batch and claims the letters queued before `until` that no batch has (call in a transaction).
   * A batch already ready is returned as is; one left `rendering` by an interrupted run keeps its letters and
   * claims any new ones.
   * @returns the batch, or undefined when there is none and nothing to print.
   */
  async claim(practiceId: string, date: string, fileName: string, until: Date): Promise<PrintBatch | undefined> {
    await this.#db.query("SELECT pg_advisory_xact_lock(hashtext('settle.print:' || $1 || ':' || $2))", [practiceId, date]);
    const existing = await this.find(practiceId, date);
    if (existing?.state === 'ready') return existing;
    const { rows: waiting } = await this.#db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM print_queue WHERE practice_id = $1 AND batch_id IS NULL AND queued_at < $2',
      [practiceId, until],
    );
    if (!existing && waiting[0]!.n === 0) return undefined;
    const batch = existing ?? toBatch((await this.#db.query<BatchRow>(
      `INSERT INTO print_batches (practice_id, batch_date, file_name, created_at) VALUES ($1, $2, $3, $4) RETURNING ${BATCH_COLUMNS}`,
      [practiceId, date, fileName, this.#clock.now()],
    )).rows[0]!);
    await this.#db.query('UPDATE print_queue SET batch_id = $1 WHERE practice_id = $2 AND batch_id IS NULL AND queued_at < $3', [batch.id, practiceId, until]);
    return batch;
  }

  /** The letters of a batch, in queue order, with their outbox text and decrypted address. */
  async letters(batchId: string): Promise<QueuedLetter[]> {
    const { rows } = await this.#db.query<{ outbox_id: string; balance_id: string; pay_url: string; recipient_enc: string; subject: string | null; body: string; language: Language }>(
      `SELECT q.outbox_id, q.balance_id, q.pay_url, o.recipient_enc, o.subject, o.body, o.language
       FROM print_queue q JOIN outbox o ON o.id = q.outbox_id WHERE q.batch_id = $1 ORDER BY q.queued_at, o.seq`,
      [batchId],
    );
    return rows.map((r) => ({
      outboxId: r.outbox_id, balanceId: r.balance_id, payUrl: r.pay_url,
      addressLines: this.#cipher.decrypt(r.recipient_enc, 'outbox.recipient').split('\n').map((l) => l.trim()).filter((l) => l !== ''),
      subject: r.subject, body: r.body, language: r.language,
    }));
  }

  /** Stores a batch's PDF and each letter's outcome, and marks it ready (call in a transaction). */
  async finish(batchId: string, pdf: Buffer | null, outcomes: readonly LetterOutcome[]): Promise<PrintBatch> {
    for (const o of outcomes) {
      await this.#db.query('UPDATE print_queue SET outcome = $2, page = $3, reason = $4 WHERE outbox_id = $1', [
        o.outboxId, o.outcome, o.outcome === 'printed' ? o.page : null, o.outcome === 'skipped' ? o.reason : null,
      ]);
    }
    const printed = outcomes.filter((o) => o.outcome === 'printed').length;
    const { rows } = await this.#db.query<BatchRow>(
      `UPDATE print_batches SET state = 'ready', letters = $2, skipped = $3, pdf = $4, ready_at = $5 WHERE id = $1 RETURNING ${BATCH_COLUMNS}`,
      [batchId, printed, outcomes.length - printed, pdf, this.#clock.now()],
    );
    return toBatch(rows[0]!);
  }
}
