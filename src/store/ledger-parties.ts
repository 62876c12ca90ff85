/**
 * Set-based resolution of the people and accounts a batch of ingested records names: one multi-row statement per
 * table (patients, named guarantors, accounts, patients as their own guarantors, in that order, sorted within
 * each, so concurrent batches wait for each other instead of deadlocking), contact written with
 * {@link LedgerRepository.writeContacts}, each record seeing what it would have seen resolved one after another.
 * Writes run in the caller's transaction.
 */
import type { Clock } from '../domain/clock.ts';
import type { PersonContact, PersonIdentifier } from '../domain/contact.ts';
import type { Queryable } from './database.ts';
import { LedgerRepository } from './ledger.ts';
import type { PhiCipher } from './phi-crypto.ts';
import { lockExisting, readLocked } from './ledger-lock.ts';
import { arrayLiteral } from './sql-params.ts';

/** Who and what one record names, as its mapping produced them. */
export interface PartiesInput {
  patient: { identifier: PersonIdentifier; contact: PersonContact } | null;
  guarantor: { identifier: PersonIdentifier; contact: PersonContact } | null;
  /** The account (the caller supplies the patient's default account when the record names none). */
  account: { identifier: PersonIdentifier; name: string | null } | null;
}

/** The rows one record resolved to. */
export interface Parties {
  patientId: string | null;
  /** The guarantor named, else the account's, else the patient as their own guarantor. */
  guarantorId: string | null;
  accountId: string | null;
  /** The patient the balance belongs to: the one named, else the account's. */
  selfPatientId: string | null;
}

const keyOf = (identifier: PersonIdentifier): string => JSON.stringify([identifier.system, identifier.value]);

/** Contact fields given, later records overwriting earlier ones field by field (as one-by-one upserts would). */
function mergeContact(into: PersonContact | undefined, contact: PersonContact): PersonContact {
  const merged: Record<string, unknown> = { ...into };
  for (const [field, value] of Object.entries(contact)) if (value !== undefined) merged[field] = value;
  return merged as PersonContact;
}

/** Upserts the patients, guarantors and accounts of ingest batches. */
export class LedgerParties {
  readonly #db: Queryable;
  readonly #clock: Clock;
  readonly #ledger: LedgerRepository;

  constructor(db: Queryable, cipher: PhiCipher, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
    this.#ledger = new LedgerRepository(db, cipher, clock);
  }

  /**
   * Upserts the patients, guarantors and accounts of a batch of records of one practice (contact encrypted as
   * {@link LedgerRepository.upsertPatient} does) and resolves each record's parties as if they were resolved
   * one record after another in this order.
   */
  async resolveParties(practiceId: string, inputs: readonly PartiesInput[]): Promise<Parties[]> {
    const patients = await this.#upsertPeople('patient', practiceId, inputs.map((i) => i.patient));
    const named = await this.#upsertPeople('guarantor', practiceId, inputs.map((i) => i.guarantor));
    const patientIds = inputs.map((i) => (i.patient ? patients.get(keyOf(i.patient.identifier))! : null));
    const namedIds = inputs.map((i) => (i.guarantor ? named.get(keyOf(i.guarantor.identifier))! : null));
    const accounts = await this.#upsertAccounts(practiceId, inputs, patientIds, namedIds);
    const selfPatientIds = inputs.map((_, n) => patientIds[n] ?? accounts[n]?.patientId ?? null);
    const needSelf = inputs.map((_, n) => namedIds[n] === null && !accounts[n]?.guarantorId && selfPatientIds[n] !== null);
    const selfGuarantors = await this.#ensureSelfGuarantors(practiceId, selfPatientIds.flatMap((id, n) => (needSelf[n] && id !== null ? [id] : [])));
    return inputs.map((_, n) => ({
      patientId: patientIds[n] ?? null,
      guarantorId: namedIds[n] ?? accounts[n]?.guarantorId ?? (needSelf[n] ? selfGuarantors.get(selfPatientIds[n]!)! : null),
      accountId: accounts[n]?.id ?? null,
      selfPatientId: selfPatientIds[n] ?? null,
    }));
  }

  async #upsertPeople(
    owner: 'patient' | 'guarantor',
    practiceId: string,
    people: readonly ({ identifier: PersonIdentifier; contact: PersonContact } | null)[],
  ): Promise<Map<string, string>> {
    const wanted = new Map<string, { identifier: PersonIdentifier; contact: PersonContact | undefined }>();
    for (const person of people) {
      if (!person) continue;
      const key = keyOf(person.identifier);
      wanted.set(key, { identifier: person.identifier, contact: mergeContact(wanted.get(key)?.contact, person.contact) });
    }
    const ids = new Map<string, string>();
    if (wanted.size === 0) return ids;
    const table = owner === 'patient' ? 'patients' : 'guarantors';
    const conflict = owner === 'patient' ? '' : 'WHERE self_patient_id IS NULL';
    const keys = (list: readonly { identifier: PersonIdentifier }[]) => [arrayLiteral(list.map((p) => p.identifier.system)), arrayLiteral(list.map((p) => p.identifier.value))];
    const { rows } = await this.#db.query<{ id: string; identifier_system: string; identifier_value: string }>(
      `INSERT INTO ${table} (practice_id, identifier_system, identifier_value, created_at, updated_at)
       SELECT $1, p.s, p.v, $4, $4 FROM unnest($2::text[], $3::text[]) AS p (s, v) ORDER BY p.s, p.v
       ON CONFLICT (practice_id, identifier_system, identifier_value) ${conflict} ${lockExisting(table)}
       RETURNING id, identifier_system, identifier_value`,
      [practiceId, ...keys([...wanted.values()]), this.#clock.now()],
    );
    for (const row of rows) ids.set(keyOf({ system: row.identifier_system, value: row.identifier_value }), row.id);
    const locked = await readLocked(table, wanted, new Set(ids.keys()), (existing) =>
      this.#db.query<{ id: string; identifier_system: string; identifier_value: string }>(
        `SELECT t.id, t.identifier_system, t.identifier_value FROM unnest($2::text[], $3::text[]) AS p (s, v)
         JOIN ${table} t ON t.practice_id = $1 AND t.identifier_system = p.s AND t.identifier_value = p.v ${owner === 'patient' ? '' : 'AND t.self_patient_id IS NULL'}`,
        [practiceId, ...keys(existing)],
      ));
    for (const row of locked) ids.set(keyOf({ system: row.identifier_system, value: row.identifier_value }), row.id);
    await this.#ledger.writeContacts(owner, practiceId, [...wanted].map(([key, person]) => ({ id: ids.get(key)!, contact: person.contact ?? {} })));
    return ids;
  }

  /**
   * Locks (creating when missing) each account, then applies the records' names, patients and guarantors in
   * order (a value given replaces the stored one), writing each changed account once. An account created here is
   * inserted with what the records give it, so only accounts that existed before are updated.
   * @returns per record, its account after its own upsert.
   */
  async #upsertAccounts(
    practiceId: string,
    inputs: readonly PartiesInput[],
    patientIds: readonly (string | null)[],
    guarantorIds: readonly (string | null)[],
  ): Promise<({ id: string; patientId: string | null; guarantorId: string | null } | null)[]> {
    type Fields = { patientId: string | null; guarantorId: string | null; name: string | null };
    /** Applies record n's values to an account; @returns whether anything changed. */
    const apply = (account: Fields, n: number): boolean => {
      const given: Fields = { name: inputs[n]!.account!.name, patientId: patientIds[n] ?? null, guarantorId: guarantorIds[n] ?? null };
      let changed = false;
      for (const field of ['name', 'patientId', 'guarantorId'] as const) {
        if (given[field] !== null && given[field] !== account[field]) {
          account[field] = given[field];
          changed = true;
        }
      }
      return changed;
    };
    const created = new Map<string, { identifier: PersonIdentifier } & Fields>();
    inputs.forEach((input, n) => {
      if (!input.account) return;
      const key = keyOf(input.account.identifier);
      const account = created.get(key) ?? { identifier: input.account.identifier, patientId: null, guarantorId: null, name: null };
      created.set(key, account);
      apply(account, n);
    });
    if (created.size === 0) return inputs.map(() => null);
    const now = this.#clock.now();
    const list = [...created.values()];
    const column = <T>(of: readonly T[], pick: (a: T) => string | null) => arrayLiteral(of.map(pick));
    const { rows } = await this.#db.query<{ id: string; identifier_system: string; identifier_value: string }>(
      `INSERT INTO ledger_accounts (practice_id, identifier_system, identifier_value, patient_id, guarantor_id, name, created_at, updated_at)
       SELECT $1, a.s, a.v, a.p, a.g, a.n, $7, $7 FROM unnest($2::text[], $3::text[], $4::uuid[], $5::uuid[], $6::text[]) AS a (s, v, p, g, n) ORDER BY a.s, a.v
       ON CONFLICT (practice_id, identifier_system, identifier_value) ${lockExisting('ledger_accounts')}
       RETURNING id, identifier_system, identifier_value`,
      [practiceId, column(list, (a) => a.identifier.system), column(list, (a) => a.identifier.value), column(list, (a) => a.patientId), column(list, (a) => a.guarantorId), column(list, (a) => a.name), now],
    );
    // Replayed record by record from what each account was before this batch (nothing, when it was just created).
    const state = new Map<string, { id: string; inserted: boolean; changed: boolean } & Fields>(
      rows.map((r) => [keyOf({ system: r.identifier_system, value: r.identifier_value }), { id: r.id, inserted: true, changed: false, patientId: null, guarantorId: null, name: null }]),
    );
    const locked = await readLocked('ledger_accounts', created, new Set(state.keys()), (existing) =>
      this.#db.query<{ id: string; identifier_system: string; identifier_value: string; patient_id: string | null; guarantor_id: string | null; name: string | null }>(
        `SELECT t.id, t.identifier_system, t.identifier_value, t.patient_id, t.guarantor_id, t.name FROM unnest($2::text[], $3::text[]) AS a (s, v)
         JOIN ledger_accounts t ON t.practice_id = $1 AND t.identifier_system = a.s AND t.identifier_value = a.v`,
        [practiceId, column(existing, (a) => a.identifier.system), column(existing, (a) => a.identifier.value)],
      ));
    for (const r of locked) {
      state.set(keyOf({ system: r.identifier_system, value: r.identifier_value }), { id: r.id, inserted: false, changed: false, patientId: r.patient_id, guarantorId: r.guarantor_id, name: r.name });
    }
    const seen = inputs.map((input, n) => {
      if (!input.account) return null;
      const account = state.get(keyOf(input.account.identifier))!;
      if (apply(account, n)) account.changed = true;
      return { id: account.id, patientId: account.patientId, guarantorId: account.guarantorId };
    });
    const changed = [...state.values()].filter((a) => a.changed && !a.inserted);
    if (changed.length > 0) {
      await this.#db.query(
        `UPDATE ledger_accounts a SET patient_id = u.patient_id, guarantor_id = u.guarantor_id, name = u.name, updated_at = $5
         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[]) AS u (id, patient_id, guarantor_id, name) WHERE a.id = u.id`,
        [arrayLiteral(changed.map((a) => a.id)), arrayLiteral(changed.map((a) => a.patientId)), arrayLiteral(changed.map((a) => a.guarantorId)), arrayLiteral(changed.map((a) => a.name)), now],
      );
    }
    return seen;
  }

  async #ensureSelfGuarantors(practiceId: string, patientIds: readonly string[]): Promise<Map<string, string>> {
    const ids = new Map<string, string>();
    const distinct = [...new Set(patientIds)];
    if (distinct.length === 0) return ids;
    const { rows } = await this.#db.query<{ id: string; self_patient_id: string }>(
      `INSERT INTO guarantors (practice_id, self_patient_id, created_at, updated_at)
       SELECT $1, p.id, $3, $3 FROM unnest($2::uuid[]) AS p (id) ORDER BY p.id
       ON CONFLICT (practice_id, self_patient_id) WHERE self_patient_id IS NOT NULL ${lockExisting('guarantors')}
       RETURNING id, self_patient_id`,
      [practiceId, arrayLiteral(distinct), this.#clock.now()],
    );
    for (const row of rows) ids.set(row.self_patient_id, row.id);
    const locked = await readLocked('guarantors', new Map(distinct.map((id) => [id, id])), new Set(ids.keys()), (existing) =>
      this.#db.query<{ id: string; self_patient_id: string }>(
        'SELECT g.id, g.self_patient_id FROM guarantors g WHERE g.practice_id = $1 AND g.self_patient_id = ANY($2::uuid[])',
        [practiceId, arrayLiteral(existing)],
      ));
    for (const row of locked) ids.set(row.self_patient_id, row.id);
    return ids;
  }
}
