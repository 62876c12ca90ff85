import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { allocatePayment, AllocationError } from '../../src/domain/payment-allocation.ts';

const balances = [
  { balanceId: 'bal_b', openCents: 5_000, oldestServiceDate: '2026-01-10' },
  { balanceId: 'bal_a', openCents: 2_000, oldestServiceDate: '2025-12-01' },
  { balanceId: 'bal_c', openCents: 3_000, oldestServiceDate: '2026-01-10' },
  { balanceId: 'bal_zero', openCents: 0, oldestServiceDate: '2025-01-01' },
];

describe('payment allocation', () => {
  it('pays the oldest balance first, ties by id, never more than a balance owes', () => {
    assert.deepEqual(allocatePayment(10_000, balances), [
      { balanceId: 'bal_a', amountCents: 2_000 }, { balanceId: 'bal_b', amountCents: 5_000 }, { balanceId: 'bal_c', amountCents: 3_000 },
    ]);
    assert.deepEqual(allocatePayment(2_500, balances), [{ balanceId: 'bal_a', amountCents: 2_000 }, { balanceId: 'bal_b', amountCents: 500 }]);
    assert.throws(() => allocatePayment(10_001, balances), { code: 'exceeds-balance' });
    assert.throws(() => allocatePayment(0, balances), AllocationError);
    assert.throws(() => allocatePayment(1.5, balances), AllocationError);
  });

  it('sums exactly and respects every balance (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ balanceId: fc.string({ minLength: 1, maxLength: 8 }), openCents: fc.integer({ min: -100, max: 1_000_000 }), oldestServiceDate: fc.constantFrom('2025-01-01', '2025-06-01', '2026-01-01') }), { minLength: 1, maxLength: 20 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (list, fraction) => {
          const unique = [...new Map(list.map((b) => [b.balanceId, b])).values()];
          const owed = unique.reduce((s, b) => s + Math.max(0, b.openCents), 0);
          fc.pre(owed > 0);
          const amount = Math.max(1, Math.floor(owed * fraction));
          const allocations = allocatePayment(amount, unique);
          assert.equal(allocations.reduce((s, a) => s + a.amountCents, 0), amount);
          for (const a of allocations) {
            const b = unique.find((x) => x.balanceId === a.balanceId)!;
            assert.ok(a.amountCents > 0 && a.amountCents <= b.openCents);
          }
          assert.equal(new Set(allocations.map((a) => a.balanceId)).size, allocations.length);
        },
      ),
    );
  });
});
