/**
 * What ledger posting takes and returns, and why it refuses, shared by {@link LedgerRepository} (one source
 * record) and {@link LedgerBatch} (many), which posts for both. Re-exported by `ledger.ts`.
 */
import type { LedgerBatch } from './ledger-batch.ts';
import type { LedgerRepository } from './ledger.ts';

/** Why the ledger refused a write; nothing was changed. */
export class LedgerError extends Error {
  readonly code: 'currency-mismatch' | 'invalid-status-change' | 'not-found' | 'invalid-line';
  constructor(code: LedgerError['code'], message: string) {
    super(message);
    this.name = 'LedgerError';
    this.code = code;
  }
}

/** Where a source record's lines go. */
export interface PostingTarget {
  accountId: string;
  guarantorId: string;
  patientId: string | null;
}

/** What posting a source record version did. */
export interface PostingResult {
  /** posted: the ledger changed; unchanged: a new version with the same lines; duplicate: this version was seen; stale: an older version. */
  outcome: 'posted' | 'unchanged' | 'duplicate' | 'stale';
  posted: number;
  reversed: number;
  /** Balances whose amounts were recomputed. */
  balanceIds: string[];
}

/** A bigint column's text as a safe integer. @throws LedgerError (`invalid-line`) beyond the safe integer range. */
export function toSafe(value: string | number): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new LedgerError('invalid-line', `amount ${value} is beyond the safe integer range`);
  return n;
}
