/**
 * The balance ledger repository: patients and guarantors (contact encrypted with PhiCipher, phones and
 * emails findable by blind index), accounts, append-only entries keyed by the source record version that
 * posted them, balances derived from those entries, statuses and their history.
 *
 * Writes expect to run inside the caller's transaction (one per source record): pass the transaction client.
 * Posting follows the one set of rules in `ledger-batch.ts`.
 */
import { DateTime } from 'luxon';
import { type Clock, localDate } from '../domain/clock.ts';
import { CONTACT_FIELDS, type PersonContact, type PersonIdentifier } from '../domain/contact.ts';
import {
  ageItems,
  outreachEligible,
  statusChangeProblem,
  type AgingBucket,
  type BalanceStatus,
  type EntryKind,
  type HoldReason,
  type LedgerLine,
  type PayerKind,
  type SourceVersion,
  type StatusChange,
} from '../domain/ledger.ts';
import type { Money } from '../domain/money.ts';
import { birthYear, zip3 } from '../domain/safe-harbor.ts';
import type { Queryable } from './database.ts';
import { decryptContact, ENC_COLUMNS, readGuarantorContacts } from './guarantor-contacts.ts';
import { LedgerBatch, type SourcePosting } from './ledger-batch.ts';
import { LedgerError, toSafe, type PostingResult, type PostingTarget } from './ledger-posting.ts';
import type { PhiCipher } from './phi-crypto.ts';

/** A balance as the API shows it. */
export interface Balance {
  id: string;
  practiceId: string;
  guarantorId: string;
  accountId: string;
  patientId: string | null;
  /** What the patient (guarantor) owes. */
  patientAmount: Money;
  /** What insurance is expected to pay. */
  insuranceAmount: Money;
  status: BalanceStatus;
  holdReason: HoldReason | null;
  oldestOpenDate: string | null;
  agingBucket: AgingBucket | null;
  /** Below the practice's small-balance threshold, or not open: no outreach. */
  outreachEligible: boolean;
  statusChangedAt: Date;
  updatedAt: Date;
}

/** A ledger entry. */
export interface LedgerEntry {
  id: string;
  seq: number;
  balanceId: string;
  kind: EntryKind;
  amount: Money;
  /** Signed effect on the balance. */
  effect: number;
  serviceDate: string;
  payer: PayerKind;
  serviceCode: string | null;
  description: string | null;
  lineKey: string;
  source: { connector: string; resourceType: string; sourceId: string; versionId: string };
  reversesEntryId: string | null;
  postedAt: Date;
}

/** One status change. */
export interface StatusHistoryEntry {
  fromStatus: BalanceStatus | null;
  toStatus: BalanceStatus;
  holdReason: HoldReason | null;
  actor: string;
  note: string | null;
  occurredAt: Date;
}

/** Filters of {@link LedgerRepository.listBalances}. */
export interface BalanceFilter {
  status?: BalanceStatus;
  agingBucket?: AgingBucket;
  /** Minimum patient amount, in minor units. */
  minAmount?: number;
  guarantorId?: string;
  limit?: number;
  /** The `nextCursor` of the previous page. */
  cursor?: string;
}

type OwnerType = 'patient' | 'guarantor';

export { LedgerError, toSafe, type PostingResult, type PostingTarget };

/** Reads and writes the ledger. */
export class LedgerRepository {
  readonly #db: Queryable;
  readonly #cipher: PhiCipher;
  readonly #clock: Clock;

  constructor(db: Queryable, cipher: PhiCipher, clock: Clock) {
    this.#db = db;
    this.#cipher = cipher;
    this.#clock = clock;
  }

  /** The same repository on another connection (a transaction client). */
  on(db: Queryable): LedgerRepository {
    return new LedgerRepository(db, this.#cipher, this.#clock);
  }

  // ---- people -------------------------------------------------------------------------------------------

  /**
   * The patient with this identifier, created when missing; contact fields given overwrite the stored ones.
   * @returns the patient id.
   */
  async upsertPatient(practiceId: string, identifier: PersonIdentifier, contact: PersonContact = {}): Promise<string> {
    const now = this.#clock.now();
    const { rows } = await this.#db.query<{ id: string }>(
      `INSERT INTO patients (practice_id, identifier_system, identifier_value, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
       ON CONFLICT (practice_id, identifier_system, identifier_value) DO UPDATE SET updated_at = patients.updated_at
       RETURNING id`,
      [practiceId, identifier.system, identifier.value, now],
    );
    const id = rows[0].id;
    await this.#writeContact('patient', practiceId, id, contact);
    return id;
  }

  /**
   * A guarantor: the one with this identifier (created when missing, contact updated), or with no identifier
   * the patient as their own guarantor.
   * @returns the guarantor id.
   */
  async ensureGuarantor(practiceId: string, guarantor: { identifier?: PersonIdentifier; contact?: PersonContact; selfPatientId?: string | null }): Promise<string> {
    const now = this.#clock.now();
    if (!guarantor.identifier) {
      if (!guarantor.selfPatientId) throw new LedgerError('invalid-line', 'a guarantor needs an identifier or a patient who is their own guarantor');
      const { rows } = await this.#db.query<{ id: string }>(
        `INSERT INTO guarantors (practice_id, self_patient_id, created_at, updated_at) VALUES ($1, $2, $3, $3)
         ON CONFLICT (practice_id, self_patient_id) WHERE self_patient_id IS NOT NULL DO UPDATE SET updated_at = guarantors.updated_at
         RETURNING id`,
        [practiceId, guarantor.selfPatientId, now],
      );
      return rows[0].id;
    }
    const { rows } = await this.#db.query<{ id: string }>(
      `INSERT INTO guarantors (practice_id, identifier_system, identifier_value, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
       ON CONFLICT (practice_id, identifier_system, identifier_value) WHERE self_patient_id IS NULL DO UPDATE SET updated_at = guarantors.updated_at
       RETURNING id`,
      [practiceId, guarantor.identifier.system, guarantor.identifier.value, now],
    );
    const id = rows[0].id;
    await this.#writeContact('guarantor', practiceId, id, guarantor.contact ?? {});
    return id;
  }

  async #writeContact(owner: OwnerType, practiceId: string, id: string, contact: PersonContact): Promise<void> {
    await this.writeContacts(owner, practiceId, [{ id, contact }]);
  }

  /**
   * Overwrites the contact fields given (encrypted; phones and email re-indexed) of patients or guarantors that
   * exist, each listed once, with three statements however many there are.
   */
  async writeContacts(owner: OwnerType, practiceId: string, people: readonly { id: string; contact: PersonContact }[]): Promise<void> {
    const given = people.filter((p) => CONTACT_FIELDS.some((field) => p.contact[field] !== undefined));
    if (given.length === 0) return;
    const table = owner === 'patient' ? 'patients' : 'guarantors';
    // A field not given is null here and keeps its stored value (a given one is never null: it is ciphertext).
    const columns: [name: string, type: string, values: unknown[], set: string][] = CONTACT_FIELDS.map((field) => [
      ENC_COLUMNS[field], 'text', given.map((p) => (p.contact[field] === undefined ? null : this.#cipher.encrypt(JSON.stringify(p.contact[field]), `${table}.${field}`))),
      `${ENC_COLUMNS[field]} = coalesce(u.${ENC_COLUMNS[field]}, t.${ENC_COLUMNS[field]})`,
    ]);
    if (owner === 'patient') {
      // Analytics groups by age and area without decrypting: only the birth year and ZIP3 are kept in clear (0017).
      columns.push(
        ['birth_given', 'boolean', given.map((p) => p.contact.birthDate !== undefined), 'birth_year = CASE WHEN u.birth_given THEN u.birth_year ELSE t.birth_year END'],
        ['birth_year', 'smallint', given.map((p) => (p.contact.birthDate === undefined ? null : birthYear(p.contact.birthDate))), ''],
        ['address_given', 'boolean', given.map((p) => p.contact.address !== undefined), 'zip3 = CASE WHEN u.address_given THEN u.zip3 ELSE t.zip3 END'],
        ['zip3', 'text', given.map((p) => (p.contact.address === undefined ? null : zip3(p.contact.address.postalCode, p.contact.address.country))), ''],
      );
    }
    await this.#db.query(
      `UPDATE ${table} t SET ${columns.map((c) => c[3]).filter(Boolean).join(', ')}, updated_at = $1
       FROM unnest($2::uuid[], ${columns.map((c, i) => `$${i + 3}::${c[1]}[]`).join(', ')}) AS u (id, ${columns.map((c) => c[0]).join(', ')})
       WHERE t.id = u.id`,
      [this.#clock.now(), given.map((p) => p.id), ...columns.map((c) => c[2])],
    );
    const reindexed: { id: string; kind: 'phone' | 'email' }[] = [];
    const indexes: { id: string; kind: 'phone' | 'email'; index: string }[] = [];
    for (const { id, contact } of given) {
      if (contact.phones !== undefined) {
        reindexed.push({ id, kind: 'phone' });
        for (const phone of contact.phones) if (/\d/.test(phone)) indexes.push({ id, kind: 'phone', index: this.#cipher.blindIndex('phone', phone) });
      }
      if (contact.email !== undefined) {
        reindexed.push({ id, kind: 'email' });
        if (contact.email.trim() !== '') indexes.push({ id, kind: 'email', index: this.#cipher.blindIndex('email', contact.email) });
      }
    }
    if (reindexed.length > 0) {
      await this.#db.query(
        'DELETE FROM contact_blind_indexes b USING unnest($2::uuid[], $3::text[]) AS r (id, kind) WHERE b.owner_type = $1 AND b.owner_id = r.id AND b.kind = r.kind',
        [owner, reindexed.map((r) => r.id), reindexed.map((r) => r.kind)],
      );
    }
    if (indexes.length > 0) {
      await this.#db.query(
        `INSERT INTO contact_blind_indexes (practice_id, owner_type, owner_id, kind, blind_index)
         SELECT $1, $2, i.id, i.kind, i.index FROM unnest($3::uuid[], $4::text[], $5::text[]) AS i (id, kind, index) ON CONFLICT DO NOTHING`,
        [practiceId, owner, indexes.map((i) => i.id), indexes.map((i) => i.kind), indexes.map((i) => i.index)],
      );
    }
  }

  /** A patient's identifier and decrypted contact. */
  async getPatient(id: string): Promise<({ id: string; practiceId: string; identifier: PersonIdentifier } & PersonContact) | undefined> {
    const { rows } = await this.#db.query<Record<string, string | null>>('SELECT * FROM patients WHERE id = $1', [id]);
    const row = rows[0];
    if (!row) return undefined;
    return {
      id: row.id!,
      practiceId: row.practice_id!,
      identifier: { system: row.identifier_system!, value: row.identifier_value! },
      ...decryptContact(this.#cipher, 'patients', row),
    };
  }

  /**
   * A guarantor's decrypted contact, every field (the patient's, for a patient who is their own guarantor), in one
   * query; for a page of guarantors, or only some fields, see `readGuarantorContacts`.
   */
  async getGuarantorContact(id: string): Promise<(PersonContact & { selfPatientId: string | null; identifier: PersonIdentifier | null }) | undefined> {
    const found = (await readGuarantorContacts(this.#db, this.#cipher, [id])).get(id);
    return found && { ...found.contact, selfPatientId: found.selfPatientId, identifier: found.identifier };
  }

  /** Patients and guarantors with this phone or email (by blind index). */
  async findByContact(practiceId: string, kind: 'phone' | 'email', value: string): Promise<{ ownerType: OwnerType; id: string }[]> {
    const { rows } = await this.#db.query<{ owner_type: OwnerType; owner_id: string }>(
      'SELECT owner_type, owner_id FROM contact_blind_indexes WHERE practice_id = $1 AND kind = $2 AND blind_index = $3 ORDER BY owner_type, owner_id',
      [practiceId, kind, this.#cipher.blindIndex(kind, value)],
    );
    return rows.map((r) => ({ ownerType: r.owner_type, id: r.owner_id }));
  }

  /**
   * The account with this identifier, created when missing.
   * @returns the account id.
   */
  async ensureAccount(
    practiceId: string,
    account: { identifier: PersonIdentifier; name?: string | null; patientId?: string | null; guarantorId?: string | null },
  ): Promise<string> {
    return (await this.upsertAccount(practiceId, account)).id;
  }

  /**
   * The account with this identifier, created when missing; a name, patient or guarantor given replaces the stored one.
   * @returns its id and the guarantor the source named for it (null when none).
   */
  async upsertAccount(
    practiceId: string,
    account: { identifier: PersonIdentifier; name?: string | null; patientId?: string | null; guarantorId?: string | null },
  ): Promise<{ id: string; guarantorId: string | null; patientId: string | null }> {
    const now = this.#clock.now();
    const { rows } = await this.#db.query<{ id: string; guarantor_id: string | null; patient_id: string | null }>(
      `INSERT INTO ledger_accounts (practice_id, identifier_system, identifier_value, patient_id, guarantor_id, name, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
       ON CONFLICT (practice_id, identifier_system, identifier_value) DO UPDATE SET
         patient_id = coalesce(excluded.patient_id, ledger_accounts.patient_id),
         guarantor_id = coalesce(excluded.guarantor_id, ledger_accounts.guarantor_id),
         name = coalesce(excluded.name, ledger_accounts.name),
         updated_at = CASE WHEN (excluded.name IS NOT NULL AND excluded.name IS DISTINCT FROM ledger_accounts.name)
                             OR (excluded.patient_id IS NOT NULL AND excluded.patient_id IS DISTINCT FROM ledger_accounts.patient_id)
                             OR (excluded.guarantor_id IS NOT NULL AND excluded.guarantor_id IS DISTINCT FROM ledger_accounts.guarantor_id)
                      THEN excluded.updated_at ELSE ledger_accounts.updated_at END
       RETURNING id, guarantor_id, patient_id`,
      [practiceId, account.identifier.system, account.identifier.value, account.patientId ?? null, account.guarantorId ?? null, account.name ?? null, now],
    );
    return { id: rows[0].id, guarantorId: rows[0].guarantor_id, patientId: rows[0].patient_id };
  }

  // ---- posting ------------------------------------------------------------------------------------------

  /**
   * Posts what one version of a source record contributes. The same version twice, or an older version after
   * a newer one, changes nothing; a newer version reverses the lines that changed or vanished and posts the
   * new ones. Run it in the record's transaction. The same rules as ingest batches ({@link LedgerBatch.postSources}
   * with one posting).
   * @throws LedgerError (`currency-mismatch`) when a line's currency is not its balance's, (`invalid-line`) for
   *   a line key used twice or an unsafe amount; roll the transaction back (or to a savepoint).
   */
  async postSource(practiceId: string, version: SourceVersion, target: PostingTarget, lines: readonly LedgerLine[]): Promise<PostingResult> {
    const [result] = await this.postSources(practiceId, [{ version, target, lines }]);
    return result!;
  }

  /**
   * Posts several distinct sources at once, as {@link postSource} does each (one payment split across its
   * balances is one call: the batch's statements run once, not once per balance).
   * @returns one result per posting, in order.
   */
  async postSources(practiceId: string, postings: readonly SourcePosting[]): Promise<PostingResult[]> {
    return new LedgerBatch(this.#db, this.#clock).postSources(practiceId, postings);
  }

  async #history(balanceId: string, from: BalanceStatus | null, to: BalanceStatus, holdReason: HoldReason | null, actor: string, note: string | null): Promise<void> {
    await this.#db.query(
      'INSERT INTO balance_status_history (balance_id, from_status, to_status, hold_reason, actor, note, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7)',
      [balanceId, from, to, holdReason, actor, note, this.#clock.now()],
    );
  }

  // ---- status and settings ------------------------------------------------------------------------------

  /**
   * Locks balances for update, inside the caller's transaction, in the order ledger postings lock them (guarantor,
   * then account: `LedgerBatch`), so work that changes several balances one by one (a dispute's holds) waits for a
   * concurrent posting to the same balances instead of deadlocking with it.
   */
  async lockBalances(balanceIds: readonly string[]): Promise<void> {
    if (balanceIds.length === 0) return;
    await this.#db.query('SELECT id FROM balances WHERE id = ANY($1::uuid[]) ORDER BY guarantor_id, account_id FOR UPDATE', [[...new Set(balanceIds)]]);
  }

  /**
   * Changes a balance's status, recording who and why.
   * @throws LedgerError (`invalid-status-change`: on_hold without a reason, no actor) or (`not-found`).
   */
  async setStatus(balanceId: string, change: StatusChange): Promise<void> {
    const problem = statusChangeProblem(change);
    if (problem) throw new LedgerError('invalid-status-change', problem);
    const { rows } = await this.#db.query<{ status: BalanceStatus; hold_reason: HoldReason | null }>(
      'SELECT status, hold_reason FROM balances WHERE id = $1 FOR UPDATE',
      [balanceId],
    );
    if (!rows[0]) throw new LedgerError('not-found', `no balance ${balanceId}`);
    const holdReason = change.holdReason ?? null;
    if (rows[0].status === change.status && rows[0].hold_reason === holdReason) return;
    await this.#db.query('UPDATE balances SET status = $2, hold_reason = $3, status_changed_at = $4, updated_at = $4 WHERE id = $1', [
      balanceId, change.status, holdReason, this.#clock.now(),
    ]);
    await this.#history(balanceId, rows[0].status, change.status, holdReason, change.actor, change.note ?? null);
  }

  /** Sets the practice's small-balance threshold (minor units; below it, no outreach). */
  async setSmallBalanceThreshold(practiceId: string, minor: number): Promise<void> {
    if (!Number.isSafeInteger(minor) || minor < 0) throw new LedgerError('invalid-line', 'the small-balance threshold must be a whole number of minor units ≥ 0');
    await this.#db.query(
      `INSERT INTO ledger_settings (practice_id, small_balance_threshold_minor, updated_at) VALUES ($1, $2, $3)
       ON CONFLICT (practice_id) DO UPDATE SET small_balance_threshold_minor = excluded.small_balance_threshold_minor, updated_at = excluded.updated_at`,
      [practiceId, minor, this.#clock.now()],
    );
  }

  /** The practice's small-balance threshold, in minor units (0 when never set). */
  async smallBalanceThreshold(practiceId: string): Promise<number> {
    const { rows } = await this.#db.query<{ t: string }>('SELECT small_balance_threshold_minor::text AS t FROM ledger_settings WHERE practice_id = $1', [practiceId]);
    return rows[0] ? toSafe(rows[0].t) : 0;
  }

  /** Today's date in the practice's time zone, by the injected clock. */
  async today(practiceId: string): Promise<string> {
    const { rows } = await this.#db.query<{ time_zone: string }>('SELECT time_zone FROM practices WHERE id = $1', [practiceId]);
    return this.#todayIn(rows[0]?.time_zone ?? null);
  }

  #todayIn(timeZone: string | null): string {
    return localDate(this.#clock.now(), timeZone);
  }

  // ---- reading ------------------------------------------------------------------------------------------

  /** One balance, aged against the clock. */
  async getBalance(id: string): Promise<Balance | undefined> {
    // One round trip: the balance with its practice's time zone and small-balance threshold (as today() and
    // smallBalanceThreshold() read them).
    const { rows } = await this.#db.query<BalanceRow & { time_zone: string | null; threshold: string | null }>(
      `SELECT ${BALANCE_COLUMNS}, (SELECT time_zone FROM practices p WHERE p.id = b.practice_id) AS time_zone,
              (SELECT small_balance_threshold_minor::text FROM ledger_settings s WHERE s.practice_id = b.practice_id) AS threshold
       FROM balances b WHERE id = $1`,
      [id],
    );
    const row = rows[0];
    if (!row) return undefined;
    return toBalance(row, this.#todayIn(row.time_zone), row.threshold === null ? 0 : toSafe(row.threshold));
  }

  /** A practice's balances, newest change first, filtered and paged. */
  async listBalances(practiceId: string, filter: BalanceFilter = {}): Promise<{ balances: Balance[]; nextCursor: string | null }> {
    const today = await this.today(practiceId);
    const threshold = await this.smallBalanceThreshold(practiceId);
    const where = ['practice_id = $1'];
    const values: unknown[] = [practiceId];
    const add = (sql: string, value: unknown) => {
      values.push(value);
      where.push(sql.replace('?', `$${values.length}`));
    };
    if (filter.status) add('status = ?', filter.status);
    if (filter.guarantorId) add('guarantor_id = ?', filter.guarantorId);
    if (filter.minAmount !== undefined) add('patient_amount_minor >= ?', filter.minAmount);
    if (filter.agingBucket) {
      const [min, max] = BUCKET_DAYS[filter.agingBucket];
      const day = (offset: number) => DateTime.fromISO(today, { zone: 'UTC' }).minus({ days: offset }).toISODate();
      add('oldest_open_date <= ?', day(min));
      if (max !== null) add('oldest_open_date >= ?', day(max));
    }
    if (filter.cursor) add('id > ?', filter.cursor);
    const limit = Math.min(Math.max(filter.limit ?? 50, 1), 500);
    const { rows } = await this.#db.query<BalanceRow>(
      `SELECT ${BALANCE_COLUMNS} FROM balances WHERE ${where.join(' AND ')} ORDER BY id LIMIT ${limit + 1}`,
      values,
    );
    const page = rows.slice(0, limit).map((row) => toBalance(row, today, threshold));
    return { balances: page, nextCursor: rows.length > limit ? page.at(-1)!.id : null };
  }

  /** A balance's entries, oldest first. */
  async entries(balanceId: string): Promise<LedgerEntry[]> {
    const { rows } = await this.#db.query<EntryRow>(`SELECT ${ENTRY_COLUMNS} FROM ledger_entries WHERE balance_id = $1 ORDER BY ledger_entries.seq`, [balanceId]);
    return rows.map(toEntry);
  }

  /**
   * Every entry a source record posted, oldest first, on whichever balances. No index serves it (posting finds a
   * source's entries through its balance, whose guarantor and account `ledger_sources` keeps: 0038): it scans the
   * practice's entries, for tests and investigations, not for a request path.
   */
  async entriesOfSource(practiceId: string, source: Pick<SourceVersion, 'connector' | 'resourceType' | 'sourceId'>): Promise<LedgerEntry[]> {
    const { rows } = await this.#db.query<EntryRow>(
      `SELECT ${ENTRY_COLUMNS} FROM ledger_entries WHERE practice_id = $1 AND source_connector = $2 AND source_resource_type = $3 AND source_id = $4 ORDER BY ledger_entries.seq`,
      [practiceId, source.connector, source.resourceType, source.sourceId],
    );
    return rows.map(toEntry);
  }

  /** A balance's status changes, oldest first. */
  async statusHistory(balanceId: string): Promise<StatusHistoryEntry[]> {
    const { rows } = await this.#db.query<{ from_status: BalanceStatus | null; to_status: BalanceStatus; hold_reason: HoldReason | null; actor: string; note: string | null; occurred_at: Date }>(
      'SELECT from_status, to_status, hold_reason, actor, note, occurred_at FROM balance_status_history WHERE balance_id = $1 ORDER BY id',
      [balanceId],
    );
    return rows.map((r) => ({ fromStatus: r.from_status, toStatus: r.to_status, holdReason: r.hold_reason, actor: r.actor, note: r.note, occurredAt: r.occurred_at }));
  }

  /**
   * Recomputes a balance's patient amount from its entries and compares it with the stored one
   * (a consistency check for tests and `settle doctor`).
   */
  async verifyBalance(balanceId: string): Promise<{ stored: number; fromEntries: number }> {
    const { rows } = await this.#db.query<{ stored: string; computed: string | null }>(
      `SELECT b.patient_amount_minor::text AS stored,
              (SELECT sum(effect_minor) FROM ledger_entries e WHERE e.balance_id = b.id AND e.payer = 'patient')::text AS computed
       FROM balances b WHERE b.id = $1`,
      [balanceId],
    );
    return { stored: toSafe(rows[0].stored), fromEntries: toSafe(rows[0].computed ?? '0') };
  }
}

const BUCKET_DAYS: Record<AgingBucket, [number, number | null]> = {
  '0-30': [-100000, 30],
  '31-60': [31, 60],
  '61-90': [61, 90],
  '91-120': [91, 120],
  '120+': [121, null],
};

interface BalanceRow {
  id: string;
  practice_id: string;
  guarantor_id: string;
  account_id: string;
  patient_id: string | null;
  currency: string;
  patient_amount_minor: string;
  insurance_amount_minor: string;
  status: BalanceStatus;
  hold_reason: HoldReason | null;
  oldest_open_date: string | null;
  status_changed_at: Date;
  updated_at: Date;
}

const BALANCE_COLUMNS = `id, practice_id, guarantor_id, account_id, patient_id, currency, patient_amount_minor::text AS patient_amount_minor,
  insurance_amount_minor::text AS insurance_amount_minor, status, hold_reason, oldest_open_date::text AS oldest_open_date, status_changed_at, updated_at`;

function toBalance(row: BalanceRow, today: string, threshold: number): Balance {
  const patientAmount = toSafe(row.patient_amount_minor);
  const aging = row.oldest_open_date ? ageItems([{ date: row.oldest_open_date, effect: 1 }], today) : null;
  return {
    id: row.id,
    practiceId: row.practice_id,
    guarantorId: row.guarantor_id,
    accountId: row.account_id,
    patientId: row.patient_id,
    patientAmount: { amount: patientAmount, currency: row.currency },
    insuranceAmount: { amount: toSafe(row.insurance_amount_minor), currency: row.currency },
    status: row.status,
    holdReason: row.hold_reason,
    oldestOpenDate: row.oldest_open_date,
    agingBucket: aging?.bucket ?? null,
    outreachEligible: outreachEligible(row.status, patientAmount, threshold),
    statusChangedAt: row.status_changed_at,
    updatedAt: row.updated_at,
  };
}

interface EntryRow {
  id: string;
  seq: string;
  balance_id: string;
  kind: EntryKind;
  amount_minor: string;
  effect_minor: string;
  currency: string;
  service_date: string;
  payer: PayerKind;
  service_code: string | null;
  description: string | null;
  line_key: string;
  source_connector: string;
  source_resource_type: string;
  source_id: string;
  source_version: string;
  reverses_entry_id: string | null;
  posted_at: Date;
}

/**
 * An entry's columns as read. `seq` is read as text (a bigint): order by `ledger_entries.seq`, never by `seq`, which
 * names this text column and sorts "10" before "9".
 */
const ENTRY_COLUMNS = `id, seq::text AS seq, balance_id, kind, amount_minor::text AS amount_minor, effect_minor::text AS effect_minor, currency,
  service_date::text AS service_date, payer, service_code, description, line_key, source_connector, source_resource_type, source_id, source_version,
  reverses_entry_id, posted_at`;

function toEntry(row: EntryRow): LedgerEntry {
  return {
    id: row.id,
    seq: toSafe(row.seq),
    balanceId: row.balance_id,
    kind: row.kind,
    amount: { amount: toSafe(row.amount_minor), currency: row.currency },
    effect: toSafe(row.effect_minor),
    serviceDate: row.service_date,
    payer: row.payer,
    serviceCode: row.service_code,
    description: row.description,
    lineKey: row.line_key,
    source: { connector: row.source_connector, resourceType: row.source_resource_type, sourceId: row.source_id, versionId: row.source_version },
    reversesEntryId: row.reverses_entry_id,
    postedAt: row.posted_at,
  };
}
