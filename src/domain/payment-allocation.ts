/**
 * How a payment is split across a guarantor's open balances, pure: oldest balance first (by its oldest open
 * service date, then by id, so the split is deterministic), each balance taking at most what it owes. The
 * allocations sum exactly to the payment; they become the ledger entries and the `detail` lines of the
 * FHIR PaymentReconciliation written back.
 */

/** An open balance as allocation needs it. */
export interface AllocatableBalance {
  readonly balanceId: string;
  /** What is owed now, in minor units (> 0 to receive anything). */
  readonly openCents: number;
  /** ISO date of the oldest open service on the balance. */
  readonly oldestServiceDate: string;
}

export interface Allocation {
  readonly balanceId: string;
  readonly amountCents: number;
}

/** Why a payment cannot be allocated. */
export class AllocationError extends Error {
  readonly code: 'invalid-amount' | 'exceeds-balance';
  constructor(code: AllocationError['code'], message: string) {
    super(message);
    this.name = 'AllocationError';
    this.code = code;
  }
}

/** The balances in the order payments are applied to them. */
export function allocationOrder(balances: readonly AllocatableBalance[]): AllocatableBalance[] {
  return [...balances].sort((a, b) =>
    a.oldestServiceDate < b.oldestServiceDate ? -1 : a.oldestServiceDate > b.oldestServiceDate ? 1 : a.balanceId < b.balanceId ? -1 : a.balanceId > b.balanceId ? 1 : 0,
  );
}

/**
 * Splits `amountCents` across the open balances, oldest first.
 * @throws AllocationError when the amount is not a positive safe integer or exceeds what is owed in total
 *   (the pay page never offers more than the amount due).
 */
export function allocatePayment(amountCents: number, balances: readonly AllocatableBalance[]): Allocation[] {
  if (!Number.isSafeInteger(amountCents) || amountCents <= 0) throw new AllocationError('invalid-amount', 'a payment is a positive integer number of minor units');
  const owed = balances.reduce((sum, b) => sum + Math.max(0, b.openCents), 0);
  if (amountCents > owed) throw new AllocationError('exceeds-balance', `the payment of ${amountCents} exceeds the ${owed} owed`);
  const allocations: Allocation[] = [];
  let left = amountCents;
  for (const balance of allocationOrder(balances)) {
    if (left === 0) break;
    if (balance.openCents <= 0) continue;
    const take = Math.min(left, balance.openCents);
    allocations.push({ balanceId: balance.balanceId, amountCents: take });
    left -= take;
  }
  return allocations;
}
