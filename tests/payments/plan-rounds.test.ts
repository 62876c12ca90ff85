import assert from 'node:assert/strict';
import { it } from 'node:test';
import { CHARGES_AT_ONCE, chargeRounds } from '../../src/payments/plan-jobs.ts';
import type { ClaimedInstallment } from '../../src/store/plans.ts';

const claimed = (planId: string, number: number): ClaimedInstallment => ({ practiceId: 'p', planId, number });

it('charges a sweep\'s installments in rounds: claim order, at most one installment of a plan and CHARGES_AT_ONCE per round', () => {
  const label = (rounds: ClaimedInstallment[][]) => rounds.map((round) => round.map((i) => `${i.planId}${i.number}`));
  assert.deepEqual(label(chargeRounds([claimed('a', 2), claimed('b', 2), claimed('a', 3), claimed('c', 4), claimed('a', 4)])), [['a2', 'b2', 'c4'], ['a3'], ['a4']]);
  assert.deepEqual(chargeRounds([]), []);
  const many = Array.from({ length: CHARGES_AT_ONCE + 3 }, (_, i) => claimed(`plan${i}`, 2));
  assert.deepEqual(chargeRounds(many).map((round) => round.length), [CHARGES_AT_ONCE, 3]);
});
