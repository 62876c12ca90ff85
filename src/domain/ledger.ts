/**
 * The balance ledger's pure rules: entry kinds and signs, balance statuses and holds, aging buckets,
 * source-version ordering, and the difference a new version of a source record posts.
 */
import type { Money } from './money.ts';

/** What a ledger entry records. */
export type EntryKind = 'charge' | 'payment' | 'adjustment';
export const ENTRY_KINDS: readonly EntryKind[] = ['charge', 'payment', 'adjustment'];

/** Who is expected to pay the part an entry records. */
export type PayerKind = 'patient' | 'insurance';
export const PAYER_KINDS: readonly PayerKind[] = ['patient', 'insurance'];

/** Where a balance is in its life. */
export type BalanceStatus = 'open' | 'in_outreach' | 'in_plan' | 'paid' | 'disputed' | 'on_hold' | 'sent_to_agency' | 'written_off';
export const BALANCE_STATUSES: readonly BalanceStatus[] = ['open', 'in_outreach', 'in_plan', 'paid', 'disputed', 'on_hold', 'sent_to_agency', 'written_off'];

/** Why a balance is on hold. */
export type HoldReason = 'insurance_pending' | 'dispute' | 'nsa_dispute' | 'bankruptcy' | 'deceased' | 'staff';
export const HOLD_REASONS: readonly HoldReason[] = ['insurance_pending', 'dispute', 'nsa_dispute', 'bankruptcy', 'deceased', 'staff'];

/** Aging buckets, in days since the service (or statement) date of the oldest open item. */
export type AgingBucket = '0-30' | '31-60' | '61-90' | '91-120' | '120+';
export const AGING_BUCKETS: readonly AgingBucket[] = ['0-30', '31-60', '61-90', '91-120', '120+'];

/** The identity of one version of a source record; every ledger entry carries the one that posted it. */
export interface SourceVersion {
  connector: string;
  resourceType: string;
  sourceId: string;
  versionId: string;
  lastUpdated: Date | null;
}

/** One line a source record contributes to the ledger, as the mapping produced it. */
export interface LedgerLine {
  /** Stable within the record (e.g. `lineItem/2`, `FT1/3`, `charges`): how versions are compared line by line. */
  lineKey: string;
  kind: EntryKind;
  /** The amount as the source reports it: a charge adds it to the balance, a payment or adjustment takes it off. */
  amount: Money;
  /** ISO date `YYYY-MM-DD`. */
  serviceDate: string;
  payer: PayerKind;
  /** Kept for analytics; never used in outreach text. */
  serviceCode: string | null;
  description: string | null;
}

/** The signed effect of a line on the balance, in minor units. */
export function balanceEffect(kind: EntryKind, amount: number): number {
  const effect = kind === 'charge' ? amount : -amount;
  return effect === 0 ? 0 : effect;
}

/** An entry still in force (posted, not reversed), as the diff needs it. */
export interface ActiveEntry {
  id: string;
  lineKey: string;
  kind: EntryKind;
  /** The source amount (not the signed effect). */
  amount: number;
  currency: string;
  serviceDate: string;
  payer: PayerKind;
  serviceCode: string | null;
  description: string | null;
  accountId: string;
  guarantorId: string;
}

/** What a new version of a source record posts: reversals of changed or vanished lines, and new lines. */
export interface PostingPlan {
  reverse: ActiveEntry[];
  post: LedgerLine[];
  unchanged: ActiveEntry[];
}

/**
 * The difference between what a source record contributes now and what it contributed before, line by line:
 * an unchanged line stays, a changed one is reversed and posted again, a vanished one is reversed.
 */
export function planPosting(active: readonly ActiveEntry[], lines: readonly LedgerLine[], accountId: string, guarantorId: string): PostingPlan {
  // A source's first version (the usual case in ingest) posts every line: nothing to look up per line.
  if (active.length === 0) return { reverse: [], post: [...lines], unchanged: [] };
  const byKey = new Map(active.map((entry) => [entry.lineKey, entry]));
  const plan: PostingPlan = { reverse: [], post: [], unchanged: [] };
  const seen = new Set<string>();
  for (const line of lines) {
    seen.add(line.lineKey);
    const old = byKey.get(line.lineKey);
    if (old && sameLine(old, line, accountId, guarantorId)) {
      plan.unchanged.push(old);
      continue;
    }
    if (old) plan.reverse.push(old);
    plan.post.push(line);
  }
  for (const entry of active) if (!seen.has(entry.lineKey)) plan.reverse.push(entry);
  return plan;
}

function sameLine(entry: ActiveEntry, line: LedgerLine, accountId: string, guarantorId: string): boolean {
  return (
    entry.kind === line.kind &&
    entry.amount === line.amount.amount &&
    entry.currency === line.amount.currency &&
    entry.serviceDate === line.serviceDate &&
    entry.payer === line.payer &&
    entry.serviceCode === line.serviceCode &&
    entry.description === line.description &&
    entry.accountId === accountId &&
    entry.guarantorId === guarantorId
  );
}

/**
 * Orders two versions of one source record: by `lastUpdated` when both have one and they differ, then by
 * `versionId` numerically when both are whole numbers. Versions that cannot be ordered count as newer
 * (arrival order), so a source with opaque version ids still updates.
 * @returns negative when `a` is older than `b`, 0 when they are the same version, positive when newer.
 */
export function compareVersions(a: Pick<SourceVersion, 'versionId' | 'lastUpdated'>, b: Pick<SourceVersion, 'versionId' | 'lastUpdated'>): number {
  if (a.versionId === b.versionId) return 0;
  if (a.lastUpdated && b.lastUpdated && a.lastUpdated.getTime() !== b.lastUpdated.getTime()) {
    return a.lastUpdated.getTime() - b.lastUpdated.getTime();
  }
  if (/^\d{1,15}$/.test(a.versionId) && /^\d{1,15}$/.test(b.versionId)) return Number(a.versionId) - Number(b.versionId);
  return 1;
}

/** Days from an ISO date to another (`today` − `from`), by calendar date. */
export function daysBetween(from: string, today: string): number {
  return Math.round((Date.parse(`${today}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / 86_400_000);
}

/** The bucket of an item dated `from`, on `today` (both `YYYY-MM-DD`). Future dates are 0–30. */
export function agingBucket(from: string, today: string): AgingBucket {
  const days = daysBetween(from, today);
  if (days <= 30) return '0-30';
  if (days <= 60) return '31-60';
  if (days <= 90) return '61-90';
  if (days <= 120) return '91-120';
  return '120+';
}

/** An item of a balance for aging: its date and signed effect. */
export interface AgingItem {
  date: string;
  effect: number;
}

/** How much of a balance is in each bucket, and the date of its oldest open item. */
export interface Aging {
  oldestOpenDate: string | null;
  bucket: AgingBucket | null;
  buckets: Record<AgingBucket, number>;
}

/**
 * Ages a balance first-in first-out: credits (payments, adjustments, reversals) pay off the oldest charges
 * first; what remains of each charge is aged from its date.
 */
export function ageItems(items: readonly AgingItem[], today: string): Aging {
  const buckets: Record<AgingBucket, number> = { '0-30': 0, '31-60': 0, '61-90': 0, '91-120': 0, '120+': 0 };
  let oldestOpenDate: string | null = null;
  for (const debit of openDebits(items)) {
    oldestOpenDate ??= debit.date;
    buckets[agingBucket(debit.date, today)] += debit.effect;
  }
  return { oldestOpenDate, bucket: oldestOpenDate === null ? null : agingBucket(oldestOpenDate, today), buckets };
}

/** The date of a balance's oldest open item, as {@link ageItems} finds it (without aging the items), or null. */
export function oldestOpenDate(items: readonly AgingItem[]): string | null {
  return openDebits(items)[0]?.date ?? null;
}

/** What remains open of each charge, oldest first, once the credits have paid off the oldest charges first. */
function openDebits(items: readonly AgingItem[]): AgingItem[] {
  const debits = items
    .filter((i) => i.effect > 0)
    .map((i) => ({ ...i }))
    .sort((a, b) => (a.date < b.date ? -1 : a.date > b.date ? 1 : 0));
  let credit = items.filter((i) => i.effect < 0).reduce((sum, i) => sum - i.effect, 0);
  for (const debit of debits) {
    const used = Math.min(credit, debit.effect);
    debit.effect -= used;
    credit -= used;
  }
  return debits.filter((debit) => debit.effect > 0);
}

/**
 * The status a balance moves to by itself when its patient amount changes: paid when nothing is owed any more
 * (from open, in outreach or in a plan), open again when a paid balance gets a new charge. Holds, disputes,
 * agency and write-off are left to people.
 */
export function automaticStatus(current: BalanceStatus, patientAmount: number): BalanceStatus {
  if (patientAmount <= 0 && (current === 'open' || current === 'in_outreach' || current === 'in_plan')) return 'paid';
  if (patientAmount > 0 && current === 'paid') return 'open';
  return current;
}

/** A status change someone (or something) asked for. */
export interface StatusChange {
  status: BalanceStatus;
  /** Required for on_hold. */
  holdReason?: HoldReason | null;
  /** Who: `user:<id>`, `apikey:<id>`, `system:ingest`, `job:<name>`. */
  actor: string;
  note?: string | null;
}

/** Why a status change is refused, or undefined when it is allowed. */
export function statusChangeProblem(change: StatusChange): string | undefined {
  if (!BALANCE_STATUSES.includes(change.status)) return `unknown status "${change.status}"`;
  if (change.status === 'on_hold' && (!change.holdReason || !HOLD_REASONS.includes(change.holdReason))) {
    return `on_hold needs a reason: one of ${HOLD_REASONS.join(', ')}`;
  }
  if (change.status !== 'on_hold' && change.holdReason) return 'a hold reason is only for on_hold';
  if (change.actor.trim() === '') return 'the actor is required';
  return undefined;
}

/** Whether outreach may run on a balance: open or in outreach, and at least the practice's small-balance threshold. */
export function outreachEligible(status: BalanceStatus, patientAmount: number, smallBalanceThreshold: number): boolean {
  return (status === 'open' || status === 'in_outreach') && patientAmount > 0 && patientAmount >= smallBalanceThreshold;
}
