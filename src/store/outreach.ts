/**
 * The outreach repository: each balance's cadence start, attempts (with the guards' verdicts), contact consents,
 * opt-outs, and the outbox.
 *
 * Phones and emails are never stored in clear: consents and opt-outs are found by PhiCipher blind index, and the
 * outbox recipient (and an opt-out's address, for the masked staff view) is PhiCipher-encrypted. Reads that hand
 * back a {@link ConsentRecord} or {@link OptOut} for a balance fill in the address the caller asked about, so the
 * pure guards can compare addresses without the store ever holding them in clear.
 *
 * Writes expect to run inside the caller's transaction when they must commit together: pass the client to `on`.
 */
import type { Clock } from '../domain/clock.ts';
import type { GuardVerdict } from '../domain/outreach-guards.ts';
import type { Channel, ConsentRecord, Language, MessageChannel, OptOut, OutreachAttempt } from '../domain/outreach.ts';
import type { Queryable } from './database.ts';
import type { PhiCipher } from './phi-crypto.ts';

/** Statuses of an attempt row. */
export const ATTEMPT_STATUSES = ['planned', 'sent', 'delivered', 'failed', 'suppressed', 'deferred'] as const;
export type AttemptStatus = (typeof ATTEMPT_STATUSES)[number];

/** An attempt to record. */
export interface NewAttempt {
  practiceId: string;
  balanceId: string;
  stepId: string;
  channel: Channel;
  plannedAt: Date;
  status: AttemptStatus;
  rule?: string | null;
  reason?: string | null;
  verdicts?: GuardVerdict[];
  finalNotice?: boolean;
  outboxId?: string | null;
  messageId?: string | null;
}

/** A stored attempt, as the timeline shows it. */
export interface AttemptRecord {
  id: string;
  practiceId: string;
  balanceId: string;
  stepId: string;
  channel: Channel;
  plannedAt: Date;
  status: AttemptStatus;
  rule: string | null;
  reason: string | null;
  verdicts: GuardVerdict[];
  finalNotice: boolean;
  outboxId: string | null;
  messageId: string | null;
  updatedAt: Date;
}

/** A message to put in the outbox. */
export interface NewOutboxMessage {
  practiceId: string;
  balanceId: string;
  channel: MessageChannel;
  /** Phone, email, or a mailing address as one text; encrypted before it is stored. */
  recipient: string;
  subject?: string | null;
  body: string;
  html?: string | null;
  language: Language;
  template: string;
  /** The IANA zone the outreach rules judged the recipient in, for the quiet-hours re-check at delivery. */
  recipientTimeZone?: string | null;
}

/** A consent or opt-out to record. `address` absent: the whole channel. */
export interface NewContactRule {
  channel: MessageChannel;
  address?: string;
  source: string;
  at: Date;
}

/** An opt-out as staff see it (address decrypted; mask it before showing). */
export interface OptOutRecord {
  id: string;
  channel: MessageChannel;
  address: string | null;
  source: string;
  at: Date;
  optedBackInAt: Date | null;
}

/** Where a balance's messages go, in clear (from the ledger's decrypted contact): what consents and opt-outs are looked up for. */
export interface ContactAddresses {
  sms?: string;
  email?: string;
}

interface AttemptRow {
  id: string; practice_id: string; balance_id: string; step_id: string; channel: Channel; planned_at: Date; status: AttemptStatus;
  rule: string | null; reason: string | null; verdicts: GuardVerdict[]; final_notice: boolean; outbox_id: string | null; message_id: string | null; updated_at: Date;
}

const toAttempt = (r: AttemptRow): AttemptRecord => ({
  id: r.id, practiceId: r.practice_id, balanceId: r.balance_id, stepId: r.step_id, channel: r.channel, plannedAt: r.planned_at, status: r.status,
  rule: r.rule, reason: r.reason, verdicts: r.verdicts, finalNotice: r.final_notice, outboxId: r.outbox_id, messageId: r.message_id, updatedAt: r.updated_at,
});

/** Which blind index a channel's address is kept under (letters have none). */
export const indexKind = (channel: MessageChannel): 'phone' | 'email' | undefined => (channel === 'sms' ? 'phone' : channel === 'email' ? 'email' : undefined);

/** Reads and writes outreach state. */
export class OutreachRepository {
  readonly #db: Queryable;
  readonly #cipher: PhiCipher;
  readonly #clock: Clock;

  constructor(db: Queryable, cipher: PhiCipher, clock: Clock) {
    this.#db = db;
    this.#cipher = cipher;
    this.#clock = clock;
  }

  /** The same repository on another connection (a transaction client). */
  on(db: Queryable): OutreachRepository {
    return new OutreachRepository(db, this.#cipher, this.#clock);
  }

  /** Takes the per-balance planning lock until the caller's transaction ends (planning one balance is serialised). */
  async lockBalance(balanceId: string): Promise<void> {
    await this.#db.query("SELECT pg_advisory_xact_lock(hashtext('settle.outreach:' || $1))", [balanceId]);
  }

  /**
   * Day 0 of a balance's cadence: the date stored when outreach first saw it, or `today` (stored now).
   * @returns `YYYY-MM-DD`.
   */
  async cadenceStart(practiceId: string, balanceId: string, today: string): Promise<string> {
    await this.#db.query(
      `INSERT INTO outreach_balances (balance_id, practice_id, first_statement_date, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (balance_id) DO NOTHING`,
      [balanceId, practiceId, today, this.#clock.now()],
    );
    const { rows } = await this.#db.query<{ d: string }>('SELECT first_statement_date::text AS d FROM outreach_balances WHERE balance_id = $1', [balanceId]);
    return rows[0]!.d;
  }

  // ---- attempts -----------------------------------------------------------------------------------------

  /** Records an attempt. A second attempt of the same step on the same channel is refused by the database. */
  async recordAttempt(attempt: NewAttempt): Promise<AttemptRecord> {
    const { rows } = await this.#db.query<AttemptRow>(
      `INSERT INTO outreach_attempts (practice_id, balance_id, step_id, channel, planned_at, status, rule, reason, verdicts, final_notice, outbox_id, message_id, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING *`,
      [
        attempt.practiceId, attempt.balanceId, attempt.stepId, attempt.channel, attempt.plannedAt, attempt.status, attempt.rule ?? null, attempt.reason ?? null,
        JSON.stringify(attempt.verdicts ?? []), attempt.finalNotice ?? false, attempt.outboxId ?? null, attempt.messageId ?? null, this.#clock.now(),
      ],
    );
    return toAttempt(rows[0]!);
  }

  /** A balance's attempts, oldest first. */
  async attempts(balanceId: string): Promise<AttemptRecord[]> {
    const { rows } = await this.#db.query<AttemptRow>('SELECT * FROM outreach_attempts WHERE balance_id = $1 ORDER BY seq', [balanceId]);
    return rows.map(toAttempt);
  }

  /** A balance's attempts as the cadence rules see them (planned and deferred rows are not attempts yet). */
  async cadenceAttempts(balanceId: string): Promise<OutreachAttempt[]> {
    const outcome = (s: AttemptStatus): OutreachAttempt['outcome'] | undefined =>
      s === 'sent' || s === 'delivered' ? 'sent' : s === 'failed' ? 'failed' : s === 'suppressed' ? 'suppressed' : undefined;
    return (await this.attempts(balanceId)).flatMap((a) => {
      const o = outcome(a.status);
      return o === undefined ? [] : [{ stepId: a.stepId, channel: a.channel, at: a.plannedAt, outcome: o, finalNotice: a.finalNotice }];
    });
  }

  // ---- consents and opt-outs ----------------------------------------------------------------------------

  #index(channel: MessageChannel, address: string | undefined): string | null {
    const kind = indexKind(channel);
    if (address === undefined || kind === undefined) return null;
    return this.#cipher.blindIndex(kind, address);
  }

  /** Records a consent. @returns its id. */
  async recordConsent(practiceId: string, consent: NewContactRule): Promise<string> {
    return (await this.recordConsents(practiceId, [consent]))[0]!;
  }

  /** Records consents in one statement (a front desk's day of registration forms). @returns their ids, in order. */
  async recordConsents(practiceId: string, consents: readonly NewContactRule[]): Promise<string[]> {
    if (consents.length === 0) return [];
    const { rows } = await this.#db.query<{ id: string }>(
      `INSERT INTO contact_consents (practice_id, channel, address_index, source, recorded_at)
       SELECT $1, c.channel, c.address_index, c.source, c.recorded_at
       FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[]) WITH ORDINALITY AS c (channel, address_index, source, recorded_at, n)
       ORDER BY c.n RETURNING id`,
      [practiceId, consents.map((c) => c.channel), consents.map((c) => this.#index(c.channel, c.address)), consents.map((c) => c.source), consents.map((c) => c.at)],
    );
    return rows.map((r) => r.id);
  }

  /** Revokes every consent in force for a channel and address at `at`. @returns how many. */
  async revokeConsents(practiceId: string, channel: MessageChannel, address: string | undefined, at: Date): Promise<number> {
    const { rowCount } = await this.#db.query(
      'UPDATE contact_consents SET revoked_at = $4 WHERE practice_id = $1 AND channel = $2 AND address_index IS NOT DISTINCT FROM $3 AND revoked_at IS NULL',
      [practiceId, channel, this.#index(channel, address), at],
    );
    return rowCount ?? 0;
  }

  /** Records an opt-out (the address is kept only as a blind index and a ciphertext). @returns its id. */
  async recordOptOut(practiceId: string, optOut: NewContactRule): Promise<string> {
    const enc = optOut.address === undefined ? null : this.#cipher.encrypt(optOut.address, 'opt_outs.address');
    const { rows } = await this.#db.query<{ id: string }>(
      'INSERT INTO opt_outs (practice_id, channel, address_index, address_enc, source, at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id',
      [practiceId, optOut.channel, this.#index(optOut.channel, optOut.address), enc, optOut.source, optOut.at],
    );
    return rows[0]!.id;
  }

  /** Marks the active opt-outs of an address (START, UNSTOP) as opted back in. @returns how many. */
  async optBackIn(practiceId: string, channel: MessageChannel, address: string | undefined, at: Date): Promise<number> {
    const { rowCount } = await this.#db.query(
      'UPDATE opt_outs SET opted_back_in_at = $4 WHERE practice_id = $1 AND channel = $2 AND address_index IS NOT DISTINCT FROM $3 AND opted_back_in_at IS NULL',
      [practiceId, channel, this.#index(channel, address), at],
    );
    return rowCount ?? 0;
  }

  /**
   * The consents and opt-outs that concern these addresses (or their whole channel), for the guards: each
   * record's `address` is the caller's own clear value when it matched by blind index, absent for channel-wide ones.
   */
  async contactRules(practiceId: string, addresses: ContactAddresses): Promise<{ consents: ConsentRecord[]; optOuts: OptOut[] }> {
    const wanted: { channel: MessageChannel; index: string; address: string }[] = [];
    for (const channel of ['sms', 'email'] as const) {
      const address = addresses[channel];
      if (address === undefined || address.trim() === '') continue;
      try {
        wanted.push({ channel, index: this.#index(channel, address)!, address });
      } catch {
        // An address that normalises to nothing cannot match anything.
      }
    }
    const indexes = wanted.map((w) => w.index);
    const addressOf = (channel: MessageChannel, index: string | null) =>
      index === null ? undefined : wanted.find((w) => w.channel === channel && w.index === index)?.address;
    const consentRows = await this.#db.query<{ channel: MessageChannel; address_index: string | null; source: string; recorded_at: Date; revoked_at: Date | null }>(
      `SELECT channel, address_index, source, recorded_at, revoked_at FROM contact_consents
       WHERE practice_id = $1 AND (address_index IS NULL OR address_index = ANY($2::text[])) ORDER BY recorded_at`,
      [practiceId, indexes],
    );
    const optOutRows = await this.#db.query<{ channel: MessageChannel; address_index: string | null; source: string; at: Date; opted_back_in_at: Date | null }>(
      `SELECT channel, address_index, source, at, opted_back_in_at FROM opt_outs
       WHERE practice_id = $1 AND (address_index IS NULL OR address_index = ANY($2::text[])) ORDER BY seq`,
      [practiceId, indexes],
    );
    const consents: ConsentRecord[] = [];
    for (const r of consentRows.rows) {
      const address = addressOf(r.channel, r.address_index);
      if (r.address_index !== null && address === undefined) continue;
      consents.push({ channel: r.channel, ...(address === undefined ? {} : { address }), source: r.source, at: r.recorded_at, ...(r.revoked_at ? { revokedAt: r.revoked_at } : {}) });
    }
    const optOuts: OptOut[] = [];
    for (const r of optOutRows.rows) {
      const address = addressOf(r.channel, r.address_index);
      if (r.address_index !== null && address === undefined) continue;
      optOuts.push({ channel: r.channel, ...(address === undefined ? {} : { address }), source: r.source, at: r.at, ...(r.opted_back_in_at ? { optedBackInAt: r.opted_back_in_at } : {}) });
    }
    return { consents, optOuts };
  }

  /** A practice's opt-outs, newest first, addresses decrypted (mask before showing). */
  async listOptOuts(practiceId: string, page: { limit?: number; offset?: number } = {}): Promise<OptOutRecord[]> {
    const { rows } = await this.#db.query<{ id: string; channel: MessageChannel; address_enc: string | null; source: string; at: Date; opted_back_in_at: Date | null }>(
      'SELECT id, channel, address_enc, source, at, opted_back_in_at FROM opt_outs WHERE practice_id = $1 ORDER BY seq DESC LIMIT $2 OFFSET $3',
      [practiceId, clampLimit(page.limit), page.offset ?? 0],
    );
    return rows.map((r) => ({
      id: r.id, channel: r.channel, address: r.address_enc === null ? null : this.#cipher.decrypt(r.address_enc, 'opt_outs.address'),
      source: r.source, at: r.at, optedBackInAt: r.opted_back_in_at,
    }));
  }

  // ---- outbox -------------------------------------------------------------------------------------------

  /** Puts a message in the outbox. @returns its id. */
  async addToOutbox(message: NewOutboxMessage): Promise<string> {
    const { rows } = await this.#db.query<{ id: string }>(
      `INSERT INTO outbox (practice_id, balance_id, channel, recipient_enc, subject, body, html, language, template, created_at, recipient_time_zone)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
      [
        message.practiceId, message.balanceId, message.channel, this.#cipher.encrypt(message.recipient, 'outbox.recipient'), message.subject ?? null,
        message.body, message.html ?? null, message.language, message.template, this.#clock.now(), message.recipientTimeZone ?? null,
      ],
    );
    return rows[0]!.id;
  }


}

function clampLimit(limit: number | undefined): number {
  return Math.min(Math.max(Math.trunc(limit ?? 50), 1), 1000);
}
