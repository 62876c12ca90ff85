/**
 * Delivery state of outbox rows: which are queued, held for want of a channel, being sent, sent, delivered,
 * failed or undeliverable; the provider's message id; retries; and the attempt each row belongs to. Also the
 * contacts a provider refused (blind index only) and the inbound texts already handled.
 *
 * A worker claims due rows with `FOR UPDATE SKIP LOCKED`, so two workers never send one row. Recipients stay
 * PhiCipher-encrypted at rest and are decrypted only for the channel.
 */
import type { Clock } from '../domain/clock.ts';
import { outreachEligible, type BalanceStatus } from '../domain/ledger.ts';
import type { Language, MessageChannel, OptOut } from '../domain/outreach.ts';
import type { Queryable } from './database.ts';
import type { PhiCipher } from './phi-crypto.ts';
import { indexKind } from './outreach.ts';

/** Where an outbox row is on its way to the patient. */
export const DELIVERY_STATES = ['queued', 'held-no-channel', 'sending', 'sent', 'delivered', 'failed', 'undeliverable'] as const;
export type DeliveryState = (typeof DELIVERY_STATES)[number];

/** An outbox row as delivery sees it (recipient decrypted: never log it). */
export interface DeliveryRow {
  id: string;
  practiceId: string;
  balanceId: string;
  channel: MessageChannel;
  recipient: string;
  subject: string | null;
  body: string;
  html: string | null;
  language: Language;
  template: string;
  state: DeliveryState;
  providerMessageId: string | null;
  deliveryAttempts: number;
  nextAttemptAt: Date | null;
  lastErrorCode: string | null;
  lastError: string | null;
  fallbackOf: string | null;
  /** The zone planning judged the recipient's local time in (null: unknown, the practice's applies). */
  recipientTimeZone: string | null;
  createdAt: Date;
  stateChangedAt: Date | null;
}

interface Row {
  id: string; practice_id: string; balance_id: string; channel: MessageChannel; recipient_enc: string; subject: string | null; body: string;
  html: string | null; language: Language; template: string; state: DeliveryState; provider_message_id: string | null; delivery_attempts: number;
  next_attempt_at: Date | null; last_error_code: string | null; last_error: string | null; fallback_of: string | null; created_at: Date; state_changed_at: Date | null;
  recipient_time_zone: string | null;
}

const COLUMNS = `id, practice_id, balance_id, channel, recipient_enc, subject, body, html, language, template, state, provider_message_id,
  delivery_attempts, next_attempt_at, last_error_code, last_error, fallback_of, created_at, state_changed_at, recipient_time_zone`;

/** Reads and writes delivery state. Pass a transaction client to commit a result with its attempt and opt-out. */
export class OutreachDeliveryStore {
  readonly #db: Queryable;
  readonly #cipher: PhiCipher;
  readonly #clock: Clock;

  constructor(db: Queryable, cipher: PhiCipher, clock: Clock) {
    this.#db = db;
    this.#cipher = cipher;
    this.#clock = clock;
  }

  /** The same store on another connection (a transaction client). */
  on(db: Queryable): OutreachDeliveryStore {
    return new OutreachDeliveryStore(db, this.#cipher, this.#clock);
  }

  #toRow(r: Row): DeliveryRow {
    return {
      id: r.id, practiceId: r.practice_id, balanceId: r.balance_id, channel: r.channel, recipient: this.#cipher.decrypt(r.recipient_enc, 'outbox.recipient'),
      subject: r.subject, body: r.body, html: r.html, language: r.language, template: r.template, state: r.state, providerMessageId: r.provider_message_id,
      deliveryAttempts: r.delivery_attempts, nextAttemptAt: r.next_attempt_at, lastErrorCode: r.last_error_code, lastError: r.last_error,
      fallbackOf: r.fallback_of, recipientTimeZone: r.recipient_time_zone, createdAt: r.created_at, stateChangedAt: r.state_changed_at,
    };
  }

  /**
   * Moves queued rows of kinds with no channel to `held-no-channel`, and held rows of kinds that now have one
   * back to `queued` (due now). @returns how many rows were held and released.
   */
  async holdAndRelease(configured: readonly MessageChannel[]): Promise<{ held: number; released: number }> {
    const now = this.#clock.now();
    const held = await this.#db.query(
      `UPDATE outbox SET state = 'held-no-channel', state_changed_at = $2 WHERE state = 'queued' AND NOT (channel = ANY($1::text[]))`,
      [configured, now],
    );
    const released = await this.#db.query(
      `UPDATE outbox SET state = 'queued', next_attempt_at = $2, state_changed_at = $2 WHERE state = 'held-no-channel' AND channel = ANY($1::text[])`,
      [configured, now],
    );
    return { held: held.rowCount ?? 0, released: released.rowCount ?? 0 };
  }

  /**
   * Claims up to `limit` due queued rows of the given kinds (oldest due first) and marks them `sending`; rows
   * another worker holds are skipped. @returns the claimed rows, recipients decrypted.
   */
  async claimDue(kinds: readonly MessageChannel[], limit: number): Promise<DeliveryRow[]> {
    const now = this.#clock.now();
    const { rows } = await this.#db.query<Row>(
      `UPDATE outbox SET state = 'sending', state_changed_at = $2, delivery_attempts = delivery_attempts + 1
       WHERE id IN (
         SELECT id FROM outbox WHERE state = 'queued' AND (next_attempt_at IS NULL OR next_attempt_at <= $2) AND channel = ANY($1::text[])
         ORDER BY next_attempt_at NULLS FIRST, seq LIMIT $3 FOR UPDATE SKIP LOCKED)
       RETURNING ${COLUMNS}`,
      [kinds, now, limit],
    );
    return rows.map((r) => this.#toRow(r));
  }

  /**
   * Rows left `sending` since before `before` (a worker died mid-send) become `failed` with code `interrupted`:
   * the provider may or may not have them, and a patient is never texted twice by a retry. @returns how many.
   */
  async failInterrupted(before: Date): Promise<number> {
    const { rowCount } = await this.#db.query(
      `UPDATE outbox SET state = 'failed', last_error_code = 'interrupted', last_error = 'the worker stopped while sending; not retried (it may have gone out)', state_changed_at = $2
       WHERE state = 'sending' AND state_changed_at < $1`,
      [before, this.#clock.now()],
    );
    return rowCount ?? 0;
  }

  /** Not now (quiet hours): back to `queued` at `until`, the claim not counted as an attempt. */
  async defer(id: string, until: Date): Promise<void> {
    await this.#db.query(
      `UPDATE outbox SET state = 'queued', next_attempt_at = $2, delivery_attempts = greatest(delivery_attempts - 1, 0), state_changed_at = $3 WHERE id = $1`,
      [id, until, this.#clock.now()],
    );
  }

  /** The provider accepted the row. */
  async markSent(id: string, providerMessageId: string): Promise<void> {
    await this.#db.query(
      `UPDATE outbox SET state = 'sent', provider_message_id = $2, last_error_code = NULL, last_error = NULL, next_attempt_at = NULL, state_changed_at = $3 WHERE id = $1`,
      [id, providerMessageId, this.#clock.now()],
    );
  }

  /** The provider accepted the row: the row `sent` and its attempt `sent` with the provider id, in one statement. */
  async markSentWithAttempt(id: string, providerMessageId: string, reason: string): Promise<void> {
    await this.#db.query(
      `WITH o AS (
         UPDATE outbox SET state = 'sent', provider_message_id = $2, last_error_code = NULL, last_error = NULL, next_attempt_at = NULL, state_changed_at = $3
         WHERE id = $1 RETURNING id)
       UPDATE outreach_attempts SET status = 'sent', message_id = $2, rule = NULL, reason = $4, updated_at = $3 WHERE outbox_id IN (SELECT id FROM o)`,
      [id, providerMessageId, this.#clock.now(), reason],
    );
  }

  /** A transient failure: back to `queued`, due at `nextAttemptAt`. */
  async markRetry(id: string, code: string, reason: string, nextAttemptAt: Date): Promise<void> {
    await this.#db.query(
      `UPDATE outbox SET state = 'queued', last_error_code = $2, last_error = $3, next_attempt_at = $4, state_changed_at = $5 WHERE id = $1`,
      [id, code, reason, nextAttemptAt, this.#clock.now()],
    );
  }

  /** A final outcome other than sent: `failed`, `undeliverable` or (from a status callback) `delivered`. */
  async markFinal(id: string, state: 'failed' | 'undeliverable' | 'delivered', code: string | null, reason: string | null): Promise<void> {
    await this.#db.query(
      `UPDATE outbox SET state = $2, last_error_code = COALESCE($3, last_error_code), last_error = COALESCE($4, last_error), next_attempt_at = NULL, state_changed_at = $5 WHERE id = $1`,
      [id, state, code, reason, this.#clock.now()],
    );
  }

  /** The row a provider message id belongs to. */
  async findByProviderMessageId(providerMessageId: string): Promise<DeliveryRow | undefined> {
    const { rows } = await this.#db.query<Row>(`SELECT ${COLUMNS} FROM outbox WHERE provider_message_id = $1`, [providerMessageId]);
    return rows[0] ? this.#toRow(rows[0]) : undefined;
  }

  /** One row by id, optionally locked until the caller's transaction ends. */
  async get(id: string, options: { lock?: boolean } = {}): Promise<DeliveryRow | undefined> {
    const { rows } = await this.#db.query<Row>(`SELECT ${COLUMNS} FROM outbox WHERE id = $1${options.lock ? ' FOR UPDATE' : ''}`, [id]);
    return rows[0] ? this.#toRow(rows[0]) : undefined;
  }

  /** A practice's outbox rows with their delivery state, newest first (recipients decrypted: mask before showing). */
  async list(practiceId: string, page: { limit?: number; offset?: number; balanceId?: string; state?: DeliveryState } = {}): Promise<DeliveryRow[]> {
    const { rows } = await this.#db.query<Row>(
      `SELECT ${COLUMNS} FROM outbox WHERE practice_id = $1 AND ($4::uuid IS NULL OR balance_id = $4) AND ($5::text IS NULL OR state = $5)
       ORDER BY seq DESC LIMIT $2 OFFSET $3`,
      [practiceId, Math.min(Math.max(Math.trunc(page.limit ?? 50), 1), 1000), page.offset ?? 0, page.balanceId ?? null, page.state ?? null],
    );
    return rows.map((r) => this.#toRow(r));
  }

  /** Counts by state (for metrics and the bench). */
  async countByState(practiceId?: string): Promise<Partial<Record<DeliveryState, number>>> {
    const { rows } = await this.#db.query<{ state: DeliveryState; n: string }>(
      'SELECT state, count(*) AS n FROM outbox WHERE ($1::uuid IS NULL OR practice_id = $1) GROUP BY state',
      [practiceId ?? null],
    );
    return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
  }

  /** A new outbox row that replaces a refused one on another channel (queued, due now). @returns its id. */
  async addFallback(original: DeliveryRow, message: { channel: MessageChannel; recipient: string; subject: string | null; body: string; html: string | null; language: Language; template: string }): Promise<string> {
    const now = this.#clock.now();
    const { rows } = await this.#db.query<{ id: string }>(
      `INSERT INTO outbox (practice_id, balance_id, channel, recipient_enc, subject, body, html, language, template, created_at, state, next_attempt_at, state_changed_at, fallback_of, recipient_time_zone)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued', $10, $10, $11, $12) RETURNING id`,
      [
        original.practiceId, original.balanceId, message.channel, this.#cipher.encrypt(message.recipient, 'outbox.recipient'), message.subject, message.body,
        message.html, message.language, message.template, now, original.id, original.recipientTimeZone,
      ],
    );
    return rows[0]!.id;
  }

  // ---- the attempt of an outbox row ---------------------------------------------------------------------

  /** Updates the attempt recorded for an outbox row (status, provider message id, rule and reason). @returns its id, if any. */
  async updateAttempt(outboxId: string, update: { status: 'sent' | 'delivered' | 'failed' | 'suppressed'; messageId?: string | null; rule?: string | null; reason?: string | null }): Promise<{ id: string; stepId: string; balanceId: string } | undefined> {
    const { rows } = await this.#db.query<{ id: string; step_id: string; balance_id: string }>(
      `UPDATE outreach_attempts SET status = $2, message_id = COALESCE($3, message_id), rule = $4, reason = COALESCE($5, reason), updated_at = $6
       WHERE outbox_id = $1 RETURNING id, step_id, balance_id`,
      [outboxId, update.status, update.messageId ?? null, update.rule ?? null, update.reason ?? null, this.#clock.now()],
    );
    return rows[0] ? { id: rows[0].id, stepId: rows[0].step_id, balanceId: rows[0].balance_id } : undefined;
  }

  /** The attempt of an outbox row. */
  async attemptOf(outboxId: string): Promise<{ id: string; stepId: string; balanceId: string; plannedAt: Date; finalNotice: boolean; verdicts: unknown[] } | undefined> {
    const { rows } = await this.#db.query<{ id: string; step_id: string; balance_id: string; planned_at: Date; final_notice: boolean; verdicts: unknown[] }>(
      'SELECT id, step_id, balance_id, planned_at, final_notice, verdicts FROM outreach_attempts WHERE outbox_id = $1',
      [outboxId],
    );
    const r = rows[0];
    return r ? { id: r.id, stepId: r.step_id, balanceId: r.balance_id, plannedAt: r.planned_at, finalNotice: r.final_notice, verdicts: r.verdicts } : undefined;
  }

  /** The channels a step already reached (attempts sent or delivered). */
  async stepReached(balanceId: string, stepId: string): Promise<MessageChannel[]> {
    const { rows } = await this.#db.query<{ channel: MessageChannel }>(
      `SELECT channel FROM outreach_attempts WHERE balance_id = $1 AND step_id = $2 AND status IN ('sent', 'delivered') AND channel <> 'agency'`,
      [balanceId, stepId],
    );
    return rows.map((r) => r.channel);
  }

  /** The channels a step was attempted on, whatever the outcome. */
  async stepChannels(balanceId: string, stepId: string): Promise<MessageChannel[]> {
    const { rows } = await this.#db.query<{ channel: MessageChannel }>(
      `SELECT channel FROM outreach_attempts WHERE balance_id = $1 AND step_id = $2 AND channel <> 'agency'`,
      [balanceId, stepId],
    );
    return rows.map((r) => r.channel);
  }

  // ---- undeliverable contacts ---------------------------------------------------------------------------

  /** Remembers that a phone or email cannot receive a channel (idempotent; letters are not remembered). */
  async markUndeliverable(practiceId: string, channel: MessageChannel, address: string, code: string): Promise<void> {
    const kind = indexKind(channel);
    if (!kind) return; // returned mail is handled by staff, not remembered here
    const index = this.#cipher.blindIndex(kind, address);
    await this.#db.query(
      `INSERT INTO undeliverable_contacts (practice_id, channel, address_index, code, at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (practice_id, channel, address_index) DO UPDATE SET code = EXCLUDED.code, at = EXCLUDED.at`,
      [practiceId, channel, index, code, this.#clock.now()],
    );
  }

  /** Whether an address was marked undeliverable for a channel. */
  async isUndeliverable(practiceId: string, channel: MessageChannel, address: string): Promise<boolean> {
    const kind = indexKind(channel);
    if (!kind) return false;
    let index: string;
    try {
      index = this.#cipher.blindIndex(kind, address);
    } catch {
      return false;
    }
    const { rows } = await this.#db.query('SELECT 1 FROM undeliverable_contacts WHERE practice_id = $1 AND channel = $2 AND address_index = $3', [practiceId, channel, index]);
    return rows.length > 0;
  }

  /**
   * What must be known right before sending a claimed batch, in two queries: by row id, the opt-outs that concern the row's address
   * (its own and channel-wide ones) and whether it was marked undeliverable. Letters get no opt-outs.
   */
  async preSendChecks(rows: readonly DeliveryRow[]): Promise<Map<string, { optOuts: OptOut[]; undeliverable: boolean }>> {
    const indexOf = new Map<string, string | null>();
    for (const row of rows) {
      const kind = indexKind(row.channel);
      let index: string | null = null;
      try {
        index = kind ? this.#cipher.blindIndex(kind, row.recipient) : null;
      } catch {
        index = null;
      }
      indexOf.set(row.id, index);
    }
    const practices = [...new Set(rows.map((r) => r.practiceId))];
    const indexes = [...new Set([...indexOf.values()].filter((i): i is string => i !== null))];
    const optOutRows = await this.#db.query<{ practice_id: string; channel: MessageChannel; address_index: string | null; source: string; at: Date; opted_back_in_at: Date | null }>(
      `SELECT practice_id, channel, address_index, source, at, opted_back_in_at FROM opt_outs
       WHERE practice_id = ANY($1::uuid[]) AND (address_index IS NULL OR address_index = ANY($2::text[])) ORDER BY seq`,
      [practices, indexes],
    );
    const undeliverableRows = await this.#db.query<{ practice_id: string; channel: MessageChannel; address_index: string }>(
      'SELECT practice_id, channel, address_index FROM undeliverable_contacts WHERE practice_id = ANY($1::uuid[]) AND address_index = ANY($2::text[])',
      [practices, indexes],
    );
    const checks = new Map<string, { optOuts: OptOut[]; undeliverable: boolean }>();
    for (const row of rows) {
      const index = indexOf.get(row.id) ?? null;
      const optOuts: OptOut[] = row.channel === 'letter' ? [] : optOutRows.rows
        .filter((o) => o.practice_id === row.practiceId && o.channel === row.channel && (o.address_index === null || o.address_index === index))
        .map((o) => ({ channel: o.channel, ...(o.address_index === null ? {} : { address: row.recipient }), source: o.source, at: o.at, ...(o.opted_back_in_at ? { optedBackInAt: o.opted_back_in_at } : {}) }));
      const undeliverable = index !== null && undeliverableRows.rows.some((u) => u.practice_id === row.practiceId && u.channel === row.channel && u.address_index === index);
      checks.set(row.id, { optOuts, undeliverable });
    }
    return checks;
  }

  /** Of these balances, the ones still in outreach (the ledger's {@link outreachEligible} rule), in one query. */
  async balancesInOutreach(balanceIds: readonly string[]): Promise<Set<string>> {
    const { rows } = await this.#db.query<{ id: string; status: BalanceStatus; amount: string; threshold: string | null }>(
      `SELECT b.id, b.status, b.patient_amount_minor::text AS amount, s.small_balance_threshold_minor::text AS threshold
       FROM balances b LEFT JOIN ledger_settings s ON s.practice_id = b.practice_id WHERE b.id = ANY($1::uuid[])`,
      [[...new Set(balanceIds)]],
    );
    return new Set(rows.filter((r) => outreachEligible(r.status, Number(r.amount), Number(r.threshold ?? 0))).map((r) => r.id));
  }

  // ---- inbound texts ------------------------------------------------------------------------------------

  /** Whether an inbound Twilio message id was handled already (by any practice). */
  async inboundSeen(messageSid: string): Promise<boolean> {
    const { rows } = await this.#db.query('SELECT 1 FROM sms_inbound WHERE message_sid = $1 LIMIT 1', [messageSid]);
    return rows.length > 0;
  }

  /** Records an inbound text as handled for a practice. @returns false when it was already. */
  async recordInbound(practiceId: string, messageSid: string, intent: string): Promise<boolean> {
    const { rowCount } = await this.#db.query(
      'INSERT INTO sms_inbound (practice_id, message_sid, intent, received_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING',
      [practiceId, messageSid, intent, this.#clock.now()],
    );
    return (rowCount ?? 0) > 0;
  }
}
