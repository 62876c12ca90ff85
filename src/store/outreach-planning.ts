/**
 * Set-based reads for the daily outreach planner, so that planning a practice of a million balances costs a
 * handful of queries per page rather than a dozen per balance:
 *
 * - {@link OutreachPlanningReader.candidates}: in one query, the outreach-eligible balances whose cadence could
 *   have something due today (a step due by today, not before the balance's progress, with a channel not yet
 *   attempted), plus balances outreach has never seen. Every other eligible balance is between steps, finished
 *   or waiting, and planning it would do nothing; it is not read at all.
 * - the page's cadence starts, attempts, guarantor contacts (decrypted), patient languages, consents,
 *   opt-outs and undeliverable addresses, each in one query for the whole page.
 *
 * The cadence arithmetic mirrors `evaluateCadence` (src/domain/policy.ts) with `today` the practice's local date
 * (a recipient in another zone — from their address — is a few hours ahead or behind: a step that falls due on
 * their date before the practice's is picked up once the practice's date turns, while it is still night where
 * they are): a step is due when `first statement date + dayOffset <= today` (local dates), and a balance's
 * progress is the furthest day offset its counted attempts reached. It reads only `outreach_balances.attempted`
 * (the `step channel` pairs attempted, kept by a trigger on outreach_attempts; migration 0015), never the
 * attempts themselves. The query only narrows which balances are planned, erring on the side of planning; the
 * planner still decides every send with the pure rules.
 */
import { randomUUID } from 'node:crypto';
import { CONTACT_FIELDS, type PersonContact } from '../domain/contact.ts';
import type { Clock } from '../domain/clock.ts';
import type { Channel, ConsentRecord, MessageChannel, OptOut, OutreachAttempt } from '../domain/outreach.ts';
import type { BalanceStatus, HoldReason } from '../domain/ledger.ts';
import type { Queryable } from './database.ts';
import { decryptContact, readGuarantorContacts } from './guarantor-contacts.ts';
import type { NewAttempt, NewOutboxMessage } from './outreach.ts';
import type { PhiCipher } from './phi-crypto.ts';

/** Attempt statuses the cadence counts (planned and deferred rows are not attempts yet). */
export const COUNTED_ATTEMPT_STATUSES = ['sent', 'delivered', 'failed', 'suppressed'] as const;

/** The cadence as the candidate query needs it: every (step, channel) with its day offset and the step's minimum amount. */
export interface CadenceShape {
  steps: { id: string; dayOffset: number; channels: readonly Channel[]; conditions: { minimumAmountCents?: number } }[];
}

/** A balance the planner should look at, with the columns it plans from. */
export interface PlanningBalance {
  id: string;
  guarantorId: string;
  patientId: string | null;
  currency: string;
  patientAmountMinor: number;
  status: BalanceStatus;
  holdReason: HoldReason | null;
  oldestOpenDate: string | null;
  /** Day 0 of its cadence; null when outreach has never seen it. */
  firstStatementDate: string | null;
}

/** Where a balance's messages go, decrypted. */
export interface PlanningContact {
  contact: PersonContact | undefined;
  /** The patient's own language, when the balance names a patient and the contact has no language. */
  patientLanguage: string | undefined;
}

/** What planning knows about a balance's addresses: consents, opt-outs, and the channels whose address was refused as undeliverable. */
export interface PlanningContactRules {
  consents: ConsentRecord[];
  optOuts: OptOut[];
  undeliverable: MessageChannel[];
}

interface CandidateRow {
  id: string; guarantor_id: string; patient_id: string | null; currency: string; patient_amount_minor: string; status: BalanceStatus;
  hold_reason: HoldReason | null; oldest_open_date: string | null; first: string | null;
}

const toPlanningBalance = (r: CandidateRow): PlanningBalance => ({
  id: r.id, guarantorId: r.guarantor_id, patientId: r.patient_id, currency: r.currency, patientAmountMinor: Number(r.patient_amount_minor),
  status: r.status, holdReason: r.hold_reason, oldestOpenDate: r.oldest_open_date, firstStatementDate: r.first,
});

/** The contact fields planning reads: where to send, in which language, and the first name messages greet. */
const PLANNING_FIELDS = CONTACT_FIELDS.filter((f) => f !== 'birthDate');

/** Reads what daily planning needs, a page at a time. */
export class OutreachPlanningReader {
  readonly #db: Queryable;
  readonly #cipher: PhiCipher;

  constructor(db: Queryable, cipher: PhiCipher) {
    this.#db = db;
    this.#cipher = cipher;
  }

  /** How many of a practice's balances are outreach-eligible (open, something due, at or above the threshold). */
  async eligibleCount(practiceId: string, threshold: number): Promise<number> {
    const { rows } = await this.#db.query<{ n: string }>(
      `SELECT count(*) AS n FROM balances WHERE practice_id = $1 AND status IN ('open', 'in_outreach') AND patient_amount_minor > 0 AND patient_amount_minor >= $2`,
      [practiceId, threshold],
    );
    return Number(rows[0]!.n);
  }

  /**
   * The next page (by id, after `cursor`) of eligible balances that could have a step due on `today` (the
   * practice's local date), or that outreach has never seen.
   */
  async candidates(
    practiceId: string,
    query: { threshold: number; today: string; cadence: CadenceShape; cursor: string | null; limit: number },
  ): Promise<PlanningBalance[]> {
    const ids: string[] = [];
    const offsets: number[] = [];
    const channels: string[] = [];
    const minimums: number[] = [];
    for (const step of query.cadence.steps) {
      for (const channel of step.channels) {
        ids.push(step.id);
        offsets.push(step.dayOffset);
        channels.push(channel);
        minimums.push(step.conditions.minimumAmountCents ?? 0);
      }
    }
    // Progress is read from the attempted steps the current policy still has (a lower bound of the planner's,
    // which also counts the day of an attempt of a removed step): so no balance the planner would act on is missed.
    // The CASE makes PostgreSQL work out progress only for a step due and not attempted (written as a plain AND,
    // it computed progress first, for every balance scanned, though most are between steps). A step whose minimum
    // amount the balance is under is never chosen (`stepConditionFailures`), so it does not make a candidate: a small
    // balance past its last step it may have (the final notice, the agency referral) is finished, not read every day.
    const { rows } = await this.#db.query<CandidateRow>(
      `WITH steps AS (SELECT s.step_id, s.day_offset, s.step_id || ' ' || s.channel AS entry, s.minimum
                      FROM unnest($4::text[], $5::int[], $6::text[], $9::bigint[]) AS s(step_id, day_offset, channel, minimum))
       SELECT b.id, b.guarantor_id, b.patient_id, b.currency, b.patient_amount_minor::text AS patient_amount_minor, b.status, b.hold_reason,
              b.oldest_open_date::text AS oldest_open_date, ob.first_statement_date::text AS first
       FROM balances b
       LEFT JOIN outreach_balances ob ON ob.balance_id = b.id
       WHERE b.practice_id = $1 AND b.status IN ('open', 'in_outreach') AND b.patient_amount_minor > 0 AND b.patient_amount_minor >= $2
         AND ($7::uuid IS NULL OR b.id > $7::uuid)
         AND (ob.balance_id IS NULL OR EXISTS (
           SELECT 1 FROM steps s
           WHERE CASE WHEN s.day_offset <= $3::date - ob.first_statement_date AND b.patient_amount_minor >= s.minimum AND NOT (s.entry = ANY (ob.attempted))
                      THEN s.day_offset >= (SELECT coalesce(max(k.day_offset), 0) FROM steps k WHERE k.entry = ANY (ob.attempted))
                      ELSE false END))
       ORDER BY b.id
       LIMIT $8`,
      [practiceId, query.threshold, query.today, ids, offsets, channels, query.cursor, query.limit, minimums],
    );
    return rows.map(toPlanningBalance);
  }

  /**
   * Day 0 of the cadence for balances outreach has not seen yet: `today`, stored now (a balance another planner
   * stored first keeps its date).
   * @returns every given balance's cadence start.
   */
  async startCadences(practiceId: string, balanceIds: readonly string[], today: string, now: Date): Promise<Map<string, string>> {
    if (balanceIds.length === 0) return new Map();
    await this.#db.query(
      `INSERT INTO outreach_balances (balance_id, practice_id, first_statement_date, created_at, attempted)
       SELECT u.balance_id, $2, $3, $4, coalesce((SELECT array_agg(DISTINCT a.step_id || ' ' || a.channel) FROM outreach_attempts a
                                                  WHERE a.balance_id = u.balance_id AND a.status = ANY ($5::text[])), '{}')
       FROM unnest($1::uuid[]) AS u(balance_id) ON CONFLICT (balance_id) DO NOTHING`,
      [balanceIds, practiceId, today, now, COUNTED_ATTEMPT_STATUSES],
    );
    const { rows } = await this.#db.query<{ balance_id: string; d: string }>(
      'SELECT balance_id, first_statement_date::text AS d FROM outreach_balances WHERE balance_id = ANY($1::uuid[])',
      [balanceIds],
    );
    return new Map(rows.map((r) => [r.balance_id, r.d]));
  }

  /** The counted attempts of each balance, oldest first (as `OutreachRepository.cadenceAttempts` gives them). */
  async attempts(balanceIds: readonly string[]): Promise<Map<string, OutreachAttempt[]>> {
    const byBalance = new Map<string, OutreachAttempt[]>(balanceIds.map((id) => [id, []]));
    if (balanceIds.length === 0) return byBalance;
    const { rows } = await this.#db.query<{ balance_id: string; step_id: string; channel: Channel; planned_at: Date; status: string; final_notice: boolean }>(
      `SELECT balance_id, step_id, channel, planned_at, status, final_notice FROM outreach_attempts
       WHERE balance_id = ANY($1::uuid[]) AND status = ANY($2::text[]) ORDER BY seq`,
      [balanceIds, COUNTED_ATTEMPT_STATUSES],
    );
    for (const r of rows) {
      const outcome = r.status === 'failed' ? 'failed' : r.status === 'suppressed' ? 'suppressed' : 'sent';
      byBalance.get(r.balance_id)?.push({ stepId: r.step_id, channel: r.channel, at: r.planned_at, outcome, finalNotice: r.final_notice });
    }
    return byBalance;
  }

  /**
   * Each balance's guarantor contact (the patient's own, for a patient who is their own guarantor) and, when that
   * contact has no language, the patient's language. Only the fields planning uses are decrypted (never the birth date).
   */
  async contacts(balances: readonly Pick<PlanningBalance, 'id' | 'guarantorId' | 'patientId'>[]): Promise<Map<string, PlanningContact>> {
    const contactOf = await readGuarantorContacts(this.#db, this.#cipher, balances.map((b) => b.guarantorId), PLANNING_FIELDS);
    // The patient's own language matters only when the guarantor's contact names none.
    const patientIds = [...new Set(balances.flatMap((b) => (b.patientId && contactOf.get(b.guarantorId)?.contact.language == null ? [b.patientId] : [])))];
    const { rows: patients } = patientIds.length === 0 ? { rows: [] } : await this.#db.query<{ id: string; language_enc: string | null }>(
      'SELECT id, language_enc FROM patients WHERE id = ANY($1::uuid[])',
      [patientIds],
    );
    const languageOf = new Map(patients.map((p) => [p.id, decryptContact(this.#cipher, 'patients', p, ['language']).language]));
    return new Map(balances.map((b) => [b.id, { contact: contactOf.get(b.guarantorId)?.contact, patientLanguage: b.patientId ? languageOf.get(b.patientId) : undefined }]));
  }

  /**
   * The consents and opt-outs concerning each set of addresses (or their whole channel), and the channels whose
   * address a provider refused as undeliverable, in one query each for the page; each record's `address` is the
   * caller's own clear value when it matched by blind index (as `OutreachRepository.contactRules` gives them for
   * one balance).
   */
  async contactRules(practiceId: string, addressesByBalance: ReadonlyMap<string, { sms?: string; email?: string }>): Promise<Map<string, PlanningContactRules>> {
    const wantedByBalance = new Map<string, { channel: MessageChannel; index: string; address: string }[]>();
    const allIndexes = new Set<string>();
    for (const [balanceId, addresses] of addressesByBalance) {
      const wanted: { channel: MessageChannel; index: string; address: string }[] = [];
      for (const channel of ['sms', 'email'] as const) {
        const address = addresses[channel];
        if (address === undefined || address.trim() === '') continue;
        try {
          const index = this.#cipher.blindIndex(channel === 'sms' ? 'phone' : 'email', address);
          wanted.push({ channel, index, address });
          allIndexes.add(index);
        } catch {
          // An address that normalises to nothing cannot match anything.
        }
      }
      wantedByBalance.set(balanceId, wanted);
    }
    const indexes = [...allIndexes];
    // `IN (SELECT unnest(…))` rather than `= ANY(…)`: a page's hundreds of indexes are hashed once, where `= ANY`
    // compared each row of the practice with every one of them in turn (most of the query's time).
    const consentRows = await this.#db.query<{ channel: MessageChannel; address_index: string | null; source: string; recorded_at: Date; revoked_at: Date | null }>(
      `SELECT channel, address_index, source, recorded_at, revoked_at FROM contact_consents
       WHERE practice_id = $1 AND (address_index IS NULL OR address_index IN (SELECT unnest($2::text[]))) ORDER BY recorded_at`,
      [practiceId, indexes],
    );
    const optOutRows = await this.#db.query<{ channel: MessageChannel; address_index: string | null; source: string; at: Date; opted_back_in_at: Date | null }>(
      `SELECT channel, address_index, source, at, opted_back_in_at FROM opt_outs
       WHERE practice_id = $1 AND (address_index IS NULL OR address_index IN (SELECT unnest($2::text[]))) ORDER BY seq`,
      [practiceId, indexes],
    );
    const undeliverableRows = await this.#db.query<{ channel: MessageChannel; address_index: string }>(
      'SELECT channel, address_index FROM undeliverable_contacts WHERE practice_id = $1 AND address_index IN (SELECT unnest($2::text[]))',
      [practiceId, indexes],
    );
    const undeliverable = new Set(undeliverableRows.rows.map((r) => `${r.channel} ${r.address_index}`));
    // Rows by blind index (channel-wide ones under null), each keeping its place in the query's order.
    const group = <R extends { address_index: string | null }>(rows: R[]) => {
      const byIndex = new Map<string | null, { row: R; order: number }[]>();
      rows.forEach((row, order) => {
        const list = byIndex.get(row.address_index) ?? [];
        list.push({ row, order });
        byIndex.set(row.address_index, list);
      });
      return byIndex;
    };
    const consentsByIndex = group(consentRows.rows);
    const optOutsByIndex = group(optOutRows.rows);
    const result = new Map<string, PlanningContactRules>();
    for (const [balanceId, wanted] of wantedByBalance) {
      const pick = <R extends { channel: MessageChannel; address_index: string | null }>(byIndex: Map<string | null, { row: R; order: number }[]>) => {
        const found = [...(byIndex.get(null) ?? [])];
        for (const index of new Set(wanted.map((w) => w.index))) found.push(...(byIndex.get(index) ?? []));
        return found
          .sort((a, b) => a.order - b.order)
          .flatMap(({ row }) => {
            const address = row.address_index === null ? undefined : wanted.find((w) => w.channel === row.channel && w.index === row.address_index)?.address;
            return row.address_index !== null && address === undefined ? [] : [{ row, address }];
          });
      };
      const consents: ConsentRecord[] = pick(consentsByIndex).map(({ row: r, address }) => ({
        channel: r.channel, ...(address === undefined ? {} : { address }), source: r.source, at: r.recorded_at, ...(r.revoked_at ? { revokedAt: r.revoked_at } : {}),
      }));
      const optOuts: OptOut[] = pick(optOutsByIndex).map(({ row: r, address }) => ({
        channel: r.channel, ...(address === undefined ? {} : { address }), source: r.source, at: r.at, ...(r.opted_back_in_at ? { optedBackInAt: r.opted_back_in_at } : {}),
      }));
      result.set(balanceId, { consents, optOuts, undeliverable: wanted.filter((w) => undeliverable.has(`${w.channel} ${w.index}`)).map((w) => w.channel) });
    }
    return result;
  }

  /** Takes the planning lock of each balance (as `OutreachRepository.lockBalance`), in the order given, until the transaction ends. */
  async lockBalances(sortedBalanceIds: readonly string[]): Promise<void> {
    await this.#db.query(
      `SELECT pg_advisory_xact_lock(hashtext('settle.outreach:' || u.id)) FROM unnest($1::text[]) WITH ORDINALITY AS u(id, n) ORDER BY u.n`,
      [sortedBalanceIds],
    );
  }

  /** These balances' rows as planning needs them (read under the caller's locks); missing ones are left out. */
  async balances(balanceIds: readonly string[]): Promise<PlanningBalance[]> {
    const { rows } = await this.#db.query<CandidateRow>(
      `SELECT b.id, b.guarantor_id, b.patient_id, b.currency, b.patient_amount_minor::text AS patient_amount_minor, b.status, b.hold_reason,
              b.oldest_open_date::text AS oldest_open_date, ob.first_statement_date::text AS first
       FROM balances b LEFT JOIN outreach_balances ob ON ob.balance_id = b.id WHERE b.id = ANY($1::uuid[])`,
      [balanceIds],
    );
    return rows.map(toPlanningBalance);
  }
}

/**
 * Writes a batch's outbox messages and attempts in two statements, inside the caller's transaction: the same rows
 * `OutreachRepository.addToOutbox` and `recordAttempt` write one at a time (ids are chosen here, so each caller
 * knows its own at once). Queue rows with {@link PlanningWrites.outbox} and {@link PlanningWrites.attempt}, then
 * {@link PlanningWrites.flush}.
 */
export class PlanningWrites {
  readonly #cipher: PhiCipher;
  readonly #clock: Clock;
  #messages: (NewOutboxMessage & { id: string })[] = [];
  #attempts: (NewAttempt & { id: string })[] = [];

  constructor(cipher: PhiCipher, clock: Clock) {
    this.#cipher = cipher;
    this.#clock = clock;
  }

  /** Queues a message for the outbox. @returns its id. */
  outbox(message: NewOutboxMessage): string {
    const id = randomUUID();
    this.#messages.push({ ...message, id });
    return id;
  }

  /** Queues an attempt. @returns its id. */
  attempt(attempt: NewAttempt): string {
    const id = randomUUID();
    this.#attempts.push({ ...attempt, id });
    return id;
  }

  /** Writes what was queued (a second attempt of one step on one channel is refused by the database, failing all). */
  async flush(db: Queryable): Promise<void> {
    const now = this.#clock.now();
    const messages = this.#messages;
    const attempts = this.#attempts;
    this.#messages = [];
    this.#attempts = [];
    if (messages.length > 0) {
      const col = <T>(pick: (m: (typeof messages)[number]) => T) => messages.map(pick);
      await db.query(
        `INSERT INTO outbox (id, practice_id, balance_id, channel, recipient_enc, subject, body, html, language, template, created_at, recipient_time_zone)
         SELECT u.id, u.practice_id, u.balance_id, u.channel, u.recipient_enc, u.subject, u.body, u.html, u.language, u.template, $11, u.zone
         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $12::text[])
           WITH ORDINALITY AS u(id, practice_id, balance_id, channel, recipient_enc, subject, body, html, language, template, zone, n)
         ORDER BY u.n`,
        [
          col((m) => m.id), col((m) => m.practiceId), col((m) => m.balanceId), col((m) => m.channel), col((m) => this.#cipher.encrypt(m.recipient, 'outbox.recipient')),
          col((m) => m.subject ?? null), col((m) => m.body), col((m) => m.html ?? null), col((m) => m.language), col((m) => m.template), now,
          col((m) => m.recipientTimeZone ?? null),
        ],
      );
    }
    if (attempts.length > 0) {
      const col = <T>(pick: (a: (typeof attempts)[number]) => T) => attempts.map(pick);
      await db.query(
        `INSERT INTO outreach_attempts (id, practice_id, balance_id, step_id, channel, planned_at, status, rule, reason, verdicts, final_notice, outbox_id, message_id, updated_at)
         SELECT u.id, u.practice_id, u.balance_id, u.step_id, u.channel, u.planned_at, u.status, u.rule, u.reason, u.verdicts::jsonb, u.final_notice, u.outbox_id, u.message_id, $14
         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[], $11::boolean[], $12::uuid[], $13::text[])
           WITH ORDINALITY AS u(id, practice_id, balance_id, step_id, channel, planned_at, status, rule, reason, verdicts, final_notice, outbox_id, message_id, n)
         ORDER BY u.n`,
        [
          col((a) => a.id), col((a) => a.practiceId), col((a) => a.balanceId), col((a) => a.stepId), col((a) => a.channel), col((a) => a.plannedAt), col((a) => a.status),
          col((a) => a.rule ?? null), col((a) => a.reason ?? null), col((a) => JSON.stringify(a.verdicts ?? [])), col((a) => a.finalNotice ?? false),
          col((a) => a.outboxId ?? null), col((a) => a.messageId ?? null), now,
        ],
      );
    }
  }
}

/** A pay link row as planning reads it: enough to compute its token again. */
export interface PlanningPayLink {
  linkId: string;
  guarantorId: string;
  keyId: number;
  expiresAt: Date;
}

/** Pay links for a page of guarantors, in two statements (the same rows `PayLinkRepository` reads and writes one at a time). */
export class PlanningPayLinks {
  readonly #db: Queryable;

  constructor(db: Queryable) {
    this.#db = db;
  }

  /** Each guarantor's link signed with `keyId`, not revoked, valid until at least `validUntil` (the latest expiring). */
  async reusable(practiceId: string, guarantorIds: readonly string[], keyId: number, validUntil: Date): Promise<PlanningPayLink[]> {
    const { rows } = await this.#db.query<{ link_id: string; guarantor_id: string; key_id: number; expires_at: Date }>(
      `SELECT DISTINCT ON (guarantor_id) link_id, guarantor_id, key_id, expires_at FROM pay_links
       WHERE practice_id = $1 AND guarantor_id = ANY($2::uuid[]) AND key_id = $3 AND revoked_at IS NULL AND expires_at >= $4
       ORDER BY guarantor_id, expires_at DESC`,
      [practiceId, guarantorIds, keyId, validUntil],
    );
    return rows.map((r) => ({ linkId: r.link_id, guarantorId: r.guarantor_id, keyId: r.key_id, expiresAt: r.expires_at }));
  }

  /** Stores new links (only for guarantors of the practice). @returns the guarantor ids stored. */
  async create(practiceId: string, links: readonly PlanningPayLink[], now: Date): Promise<Set<string>> {
    if (links.length === 0) return new Set();
    const { rows } = await this.#db.query<{ guarantor_id: string }>(
      `INSERT INTO pay_links (link_id, practice_id, guarantor_id, key_id, expires_at, created_at)
       SELECT u.link_id, g.practice_id, g.id, u.key_id, u.expires_at, $6
       FROM unnest($2::text[], $3::uuid[], $4::int[], $5::timestamptz[]) AS u(link_id, guarantor_id, key_id, expires_at)
       JOIN guarantors g ON g.id = u.guarantor_id AND g.practice_id = $1
       RETURNING guarantor_id`,
      [practiceId, links.map((l) => l.linkId), links.map((l) => l.guarantorId), links.map((l) => l.keyId), links.map((l) => l.expiresAt), now],
    );
    return new Set(rows.map((r) => r.guarantor_id));
  }
}
