/**
 * Agency hand-off. A balance whose cadence reaches its agency step (day 90 by default; in IRS 501(r) mode not
 * before day 120 and 30 days after the final notice) is recorded agency-ready by the planner. The export then
 * hands every agency-ready balance to the collection agency, in one transaction:
 *
 * - writes the CSV an agency needs and nothing more: account ref, guarantor name, mailing address and phone,
 *   balance amount, first statement date and last payment date (no diagnosis, procedure, code, service date,
 *   birth date or email);
 * - marks each balance `sent_to_agency` (recorded in its status history), which stops all outreach;
 * - records the export (who, when, how many, the file's SHA-256) and audits it as a PHI export (`agency.export`,
 *   ids and counts only).
 *
 * A recall returns balances to the practice: status back to `open` (recorded, with who), the referral closed,
 * audited (`agency.recall`). A recalled balance's cadence is finished, so it gets no further outreach and is not
 * offered to an agency again.
 */
import { createHash } from 'node:crypto';
import type { Clock } from '../domain/clock.ts';
import type { PostalAddress } from '../domain/contact.ts';
import { AgencyRepository, type AgencyExportRow, type AgencyReadyBalance } from '../store/agency.ts';
import { AuditLog } from '../store/audit.ts';
import { withTransaction, type Database } from '../store/database.ts';
import { LedgerRepository } from '../store/ledger.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';

/** What the agency hand-off needs. */
export interface AgencyDeps {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
}

/** The columns of the agency file, in order. */
export const AGENCY_CSV_COLUMNS = [
  'account_ref', 'guarantor_name', 'address_line1', 'address_line2', 'city', 'state', 'postal_code', 'phone',
  'balance_amount', 'currency', 'first_statement_date', 'last_payment_date',
] as const;

/** A request the hand-off refuses; nothing was changed. */
export class AgencyError extends Error {
  readonly code: 'invalid_balance_ids' | 'nothing_ready';
  readonly problems: { balanceId: string; reason: string }[];
  constructor(code: AgencyError['code'], message: string, problems: { balanceId: string; reason: string }[] = []) {
    super(message);
    this.name = 'AgencyError';
    this.code = code;
    this.problems = problems;
  }
}

/** What an export did. */
export interface AgencyExport {
  /** Null when nothing was ready (no file, nothing recorded). */
  exportId: string | null;
  balanceCount: number;
  /** The file: a header line and one line per balance, CRLF-terminated (RFC 4180). */
  csv: string;
  sha256: string;
}

/** Agency-ready balances, longest-waiting first (ids, amounts and dates only). */
export function agencyReady(deps: AgencyDeps, practiceId: string, page: { limit?: number; offset?: number } = {}): Promise<AgencyReadyBalance[]> {
  return new AgencyRepository(deps.db.pool, deps.cipher).ready(practiceId, page);
}

/**
 * Hands every agency-ready balance to the agency in one transaction (see the module comment).
 * @param options.actor - who asked: `cli`, `apikey:<id>`.
 * @param options.write - called with the file before the transaction commits (the CLI writes it to disk), so a
 *   file that cannot be written leaves every balance as it was.
 */
export async function exportToAgency(
  deps: AgencyDeps,
  options: { practiceId: string; actor: string; write?: (csv: string) => Promise<void> },
): Promise<AgencyExport> {
  return withTransaction(deps.db, async (tx) => {
    const agency = new AgencyRepository(tx, deps.cipher);
    const rows = await agency.lockForExport(options.practiceId);
    const csv = agencyCsv(rows);
    const sha256 = createHash('sha256').update(csv).digest('hex');
    if (rows.length === 0) {
      await options.write?.(csv);
      return { exportId: null, balanceCount: 0, csv, sha256 };
    }
    const at = deps.clock.now();
    const exportId = await agency.recordExport(options.practiceId, { actor: options.actor, sha256, at, rows });
    const ledger = new LedgerRepository(tx, deps.cipher, deps.clock);
    for (const row of rows) {
      await ledger.setStatus(row.balanceId, { status: 'sent_to_agency', actor: options.actor, note: `agency export ${exportId}` });
    }
    await new AuditLog(deps.db, deps.clock).append({
      practiceId: options.practiceId, actor: options.actor, action: 'agency.export', entityType: 'agency_export', entityId: exportId,
      detail: { balanceCount: rows.length, sha256, balanceIds: rows.map((r) => r.balanceId) },
    }, tx);
    await options.write?.(csv);
    return { exportId, balanceCount: rows.length, csv, sha256 };
  });
}

/**
 * Returns balances from the agency: each must be this practice's and `sent_to_agency`; otherwise nothing changes
 * and the error names every balance at fault and why.
 * @returns the recalled balance ids.
 */
export async function recallFromAgency(deps: AgencyDeps, options: { practiceId: string; actor: string; balanceIds: readonly string[]; note?: string }): Promise<string[]> {
  const ids = [...new Set(options.balanceIds.map((id) => id.trim().toLowerCase()))];
  const problems = ids.filter((id) => !UUID.test(id)).map((balanceId) => ({ balanceId, reason: 'is not a balance id (a UUID)' }));
  if (ids.length === 0) throw new AgencyError('invalid_balance_ids', 'No balance ids given.');
  if (problems.length > 0) throw new AgencyError('invalid_balance_ids', describe(problems), problems);
  return withTransaction(deps.db, async (tx) => {
    const agency = new AgencyRepository(tx, deps.cipher);
    const found = new Map((await agency.lockReferrals(options.practiceId, ids)).map((r) => [r.balanceId, r]));
    for (const id of ids) {
      const referral = found.get(id);
      if (!referral) problems.push({ balanceId: id, reason: 'is not a balance of this practice' });
      else if (referral.status !== 'sent_to_agency') problems.push({ balanceId: id, reason: `is ${referral.status}, not sent_to_agency` });
    }
    if (problems.length > 0) throw new AgencyError('invalid_balance_ids', describe(problems), problems);
    const ledger = new LedgerRepository(tx, deps.cipher, deps.clock);
    const audit = new AuditLog(deps.db, deps.clock);
    await agency.markRecalled(options.practiceId, ids, options.actor, deps.clock.now());
    for (const id of ids) {
      await ledger.setStatus(id, { status: 'open', actor: options.actor, note: options.note ? `recalled from the agency: ${options.note}` : 'recalled from the agency' });
      await audit.append({
        practiceId: options.practiceId, actor: options.actor, action: 'agency.recall', entityType: 'balance', entityId: id,
        detail: { exportId: found.get(id)!.exportId },
      }, tx);
    }
    return ids;
  });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function describe(problems: { balanceId: string; reason: string }[]): string {
  return `Nothing was recalled: ${problems.map((p) => `${p.balanceId} ${p.reason}`).join('; ')}.`;
}

/** The agency file for these balances (RFC 4180; a cell a spreadsheet would run as a formula is prefixed with `'`). */
export function agencyCsv(rows: readonly AgencyExportRow[]): string {
  const lines = [AGENCY_CSV_COLUMNS.join(',')];
  for (const row of rows) {
    const address: PostalAddress = row.guarantor.address ?? {};
    const name = row.guarantor.name;
    const fullName = name?.text?.trim() || [...(name?.given ?? []), name?.family ?? ''].join(' ').trim();
    const cells: Record<(typeof AGENCY_CSV_COLUMNS)[number], string> = {
      account_ref: row.accountRef,
      guarantor_name: fullName,
      address_line1: address.lines?.[0] ?? '',
      address_line2: (address.lines ?? []).slice(1).join(', '),
      city: address.city ?? '',
      state: address.state ?? '',
      postal_code: address.postalCode ?? '',
      phone: row.guarantor.phones?.find((p) => /\d/.test(p)) ?? '',
      balance_amount: decimalAmount(row.amountMinor, row.currency),
      currency: row.currency,
      first_statement_date: row.firstStatementDate ?? '',
      last_payment_date: row.lastPaymentDate ?? '',
    };
    lines.push(AGENCY_CSV_COLUMNS.map((c) => csvCell(cells[c])).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

/** Integer minor units as a plain decimal (`123456` → `1234.56`), exactly. */
function decimalAmount(minor: number, currency: string): string {
  const digits = new Intl.NumberFormat('en-US', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits ?? 2;
  const text = String(Math.abs(minor)).padStart(digits + 1, '0');
  const sign = minor < 0 ? '-' : '';
  return digits === 0 ? `${sign}${text}` : `${sign}${text.slice(0, -digits)}.${text.slice(-digits)}`;
}

function csvCell(value: string): string {
  const oneLine = value.replace(/[\r\n]+/g, ' ');
  // A leading = or @, or + or - before anything with letters (`+SUM(…)`), would run as a formula; phone numbers
  // (`+1 (312) 555-0134`) and amounts are left alone.
  const safe = /^[=@\t]/.test(oneLine) || /^[+-].*[A-Za-z]/.test(oneLine) ? `'${oneLine}` : oneLine;
  return /[",]/.test(safe) || safe !== safe.trim() ? `"${safe.replace(/"/g, '""')}"` : safe;
}
