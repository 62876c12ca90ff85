/**
 * The agency hand-off's storage: which balances are agency-ready (their cadence recorded its `agency` step and
 * they are still open, with something due, never handed over), what an export needs to write for each, and the
 * record of every export and recall (migration 0015). Contacts are decrypted only for the export file itself.
 *
 * Writes run inside the caller's transaction: pass the client.
 */
import type { PersonContact } from '../domain/contact.ts';
import type { Queryable } from './database.ts';
import { decryptContact, guarantorContactColumns } from './guarantor-contacts.ts';
import type { PhiCipher } from './phi-crypto.ts';

/** An agency-ready balance as staff see it: ids, amount and dates only. */
export interface AgencyReadyBalance {
  balanceId: string;
  /** The practice's account number for the balance. */
  accountRef: string;
  amountMinor: number;
  currency: string;
  /** When the cadence reached its agency step. */
  readySince: Date;
  /** `YYYY-MM-DD`: day 0 of the cadence. */
  firstStatementDate: string | null;
}

/** What an agency gets for one balance, decrypted: nothing clinical. */
export interface AgencyExportRow extends AgencyReadyBalance {
  guarantor: Pick<PersonContact, 'name' | 'address' | 'phones'>;
  /** `YYYY-MM-DD` of the guarantor's last payment on this balance, or null. */
  lastPaymentDate: string | null;
}

/** The guarantor's contact fields an agency export carries (minimum necessary: no email, language or birth date). */
const EXPORTED_CONTACT = ['name', 'address', 'phones'] as const;

/** A balance handed to an agency (a row of an export), as recall finds it. */
export interface AgencyReferral {
  balanceId: string;
  /** The balance's status now. */
  status: string;
  /** The export that handed it over and has not been recalled, or null. */
  exportId: string | null;
}

const READY_SQL = `
  SELECT b.id AS balance_id, acct.identifier_value AS account_ref, b.patient_amount_minor::text AS amount_minor, b.currency,
         min(a.planned_at) AS ready_since, ob.first_statement_date::text AS first_statement_date
  FROM balances b
  JOIN outreach_attempts a ON a.balance_id = b.id AND a.channel = 'agency' AND a.status IN ('sent', 'delivered')
  JOIN ledger_accounts acct ON acct.id = b.account_id
  LEFT JOIN outreach_balances ob ON ob.balance_id = b.id
  WHERE b.practice_id = $1 AND b.status IN ('open', 'in_outreach') AND b.patient_amount_minor > 0
    AND NOT EXISTS (SELECT 1 FROM agency_referrals r WHERE r.balance_id = b.id)`;

interface ReadyRow { balance_id: string; account_ref: string; amount_minor: string; currency: string; ready_since: Date; first_statement_date: string | null }

const toReady = (r: ReadyRow): AgencyReadyBalance => ({
  balanceId: r.balance_id, accountRef: r.account_ref, amountMinor: Number(r.amount_minor), currency: r.currency, readySince: r.ready_since,
  firstStatementDate: r.first_statement_date,
});

/** Reads and records agency hand-offs. */
export class AgencyRepository {
  readonly #db: Queryable;
  readonly #cipher: PhiCipher;

  constructor(db: Queryable, cipher: PhiCipher) {
    this.#db = db;
    this.#cipher = cipher;
  }

  /** Agency-ready balances, longest-waiting first. A recalled balance is not offered again. */
  async ready(practiceId: string, page: { limit?: number; offset?: number } = {}): Promise<AgencyReadyBalance[]> {
    const limit = Math.min(Math.max(Math.trunc(page.limit ?? 100), 1), 1000);
    const { rows } = await this.#db.query<ReadyRow>(
      `${READY_SQL} GROUP BY b.id, acct.identifier_value, ob.first_statement_date ORDER BY ready_since, b.id LIMIT $2 OFFSET $3`,
      [practiceId, limit, page.offset ?? 0],
    );
    return rows.map(toReady);
  }

  /**
   * Every agency-ready balance with what the export file needs, each balance row locked (FOR UPDATE) until the
   * caller's transaction ends, so a payment or a second export cannot slip in between reading and marking.
   */
  async lockForExport(practiceId: string): Promise<AgencyExportRow[]> {
    const { rows } = await this.#db.query<ReadyRow & { self_patient_id: string | null; name_enc: string | null; address_enc: string | null; phones_enc: string | null; last_payment: string | null }>(
      `WITH ready AS (${READY_SQL} GROUP BY b.id, acct.identifier_value, ob.first_statement_date),
            locked AS (SELECT id, guarantor_id FROM balances WHERE id IN (SELECT balance_id FROM ready) FOR UPDATE)
       SELECT ready.*, g.self_patient_id, ${guarantorContactColumns(EXPORTED_CONTACT).join(', ')},
              (SELECT max(e.service_date)::text FROM ledger_entries e
               WHERE e.balance_id = ready.balance_id AND e.kind = 'payment' AND e.payer = 'patient' AND e.reverses_entry_id IS NULL
                 AND NOT EXISTS (SELECT 1 FROM ledger_entries x WHERE x.reverses_entry_id = e.id)) AS last_payment
       FROM ready JOIN locked ON locked.id = ready.balance_id
       JOIN guarantors g ON g.id = locked.guarantor_id LEFT JOIN patients p ON p.id = g.self_patient_id
       ORDER BY ready.ready_since, ready.balance_id`,
      [practiceId],
    );
    return rows.map((r) => ({
      ...toReady(r),
      guarantor: decryptContact(this.#cipher, r.self_patient_id ? 'patients' : 'guarantors', r, EXPORTED_CONTACT),
      lastPaymentDate: r.last_payment,
    }));
  }

  /** Records an export and the balances it handed over. @returns the export id. */
  async recordExport(practiceId: string, exportRecord: { actor: string; sha256: string; at: Date; rows: readonly AgencyReadyBalance[] }): Promise<string> {
    const { rows } = await this.#db.query<{ id: string }>(
      'INSERT INTO agency_exports (practice_id, actor, balance_count, sha256, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id',
      [practiceId, exportRecord.actor, exportRecord.rows.length, exportRecord.sha256, exportRecord.at],
    );
    const exportId = rows[0]!.id;
    await this.#db.query(
      `INSERT INTO agency_referrals (practice_id, export_id, balance_id, amount_minor, currency, sent_at)
       SELECT $1, $2, u.balance_id, u.amount, u.currency, $3 FROM unnest($4::uuid[], $5::bigint[], $6::text[]) AS u(balance_id, amount, currency)`,
      [practiceId, exportId, exportRecord.at, exportRecord.rows.map((r) => r.balanceId), exportRecord.rows.map((r) => r.amountMinor), exportRecord.rows.map((r) => r.currency)],
    );
    return exportId;
  }

  /** The open referral (not recalled) of each balance of the practice, with the balance's status, rows locked. */
  async lockReferrals(practiceId: string, balanceIds: readonly string[]): Promise<AgencyReferral[]> {
    const { rows } = await this.#db.query<{ export_id: string | null; balance_id: string; status: string }>(
      `SELECT r.export_id, b.id AS balance_id, b.status
       FROM balances b LEFT JOIN agency_referrals r ON r.balance_id = b.id AND r.recalled_at IS NULL
       WHERE b.practice_id = $1 AND b.id = ANY($2::uuid[]) FOR UPDATE OF b`,
      [practiceId, balanceIds],
    );
    return rows.map((r) => ({ balanceId: r.balance_id, status: r.status, exportId: r.export_id }));
  }

  /** Marks balances' open referrals recalled. */
  async markRecalled(practiceId: string, balanceIds: readonly string[], actor: string, at: Date): Promise<void> {
    await this.#db.query(
      'UPDATE agency_referrals SET recalled_at = $4, recalled_by = $3 WHERE practice_id = $1 AND balance_id = ANY($2::uuid[]) AND recalled_at IS NULL',
      [practiceId, balanceIds, actor, at],
    );
  }
}
