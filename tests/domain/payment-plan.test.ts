import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import {
  chargeInstant, localDate, offeredPlans, onInstallmentFailure, payoffAmountCents, planSchedule, PlanError, splitInstallments, type PlanTerms,
} from '../../src/domain/payment-plan.ts';

const terms: PlanTerms = { minimumInstallmentCents: 2500, maximumMonths: 12 };

describe('plan offers', () => {
  it('offer 2..max months while the installment stays at or above the minimum', () => {
    assert.deepEqual(offeredPlans(25_000, terms).map((o) => o.months), [2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(offeredPlans(1_000_000, terms).map((o) => o.months), [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert.deepEqual(offeredPlans(4_999, terms), []);
    assert.deepEqual(offeredPlans(5_000, terms).map((o) => [o.months, o.installmentCents]), [[2, 2500]]);
    assert.deepEqual(offeredPlans(25_000, { minimumInstallmentCents: 1, maximumMonths: 1 }), []);
    assert.deepEqual(offeredPlans(10_000, terms)[1], { months: 3, installmentCents: 3333, remainderInstallmentCents: 3334, totalCents: 10_000 });
  });

  it('read the default policy terms', () => {
    const policy = JSON.parse(readFileSync(new URL('../../policies/default.json', import.meta.url), 'utf8')) as { planTerms: PlanTerms };
    assert.ok(offeredPlans(60_000, policy.planTerms).length > 0);
  });

  it('refuse bad input', () => {
    assert.throws(() => offeredPlans(12.5, terms), PlanError);
    assert.throws(() => offeredPlans(-1, terms), PlanError);
    assert.throws(() => offeredPlans(100, { minimumInstallmentCents: 0, maximumMonths: 3 }), PlanError);
    assert.throws(() => splitInstallments(3, 4), PlanError);
    assert.throws(() => planSchedule({ balanceCents: 10_000, months: 5, startDate: '2026-01-31', terms }), { code: 'not-offered' });
    assert.throws(() => planSchedule({ balanceCents: 10_000, months: 2, startDate: '2026-02-30' }), { code: 'invalid-date' });
  });
});

describe('plan schedules', () => {
  it('sum exactly, remainder on the first or last installment', () => {
    assert.deepEqual(splitInstallments(10_000, 3), [3334, 3333, 3333]);
    assert.deepEqual(splitInstallments(10_000, 3, 'last'), [3333, 3333, 3334]);
    assert.deepEqual(splitInstallments(10_001, 4), [2501, 2500, 2500, 2500]);
  });

  it('fall monthly from the start date, clamping to the end of shorter months without drifting', () => {
    const schedule = planSchedule({ balanceCents: 60_000, months: 6, startDate: '2026-01-31', terms });
    assert.deepEqual(schedule.map((i) => i.dueDate), ['2026-01-31', '2026-02-28', '2026-03-31', '2026-04-30', '2026-05-31', '2026-06-30']);
    const leap = planSchedule({ balanceCents: 10_000, months: 2, startDate: '2028-01-30' });
    assert.deepEqual(leap.map((i) => i.dueDate), ['2028-01-30', '2028-02-29']);
    const yearEnd = planSchedule({ balanceCents: 10_000, months: 3, startDate: '2026-11-30' });
    assert.deepEqual(yearEnd.map((i) => i.dueDate), ['2026-11-30', '2026-12-30', '2027-01-30']);
    assert.deepEqual(schedule.map((i) => i.number), [1, 2, 3, 4, 5, 6]);
  });

  it('hold the invariants for any balance and offered plan (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10_000_000 }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 120 }),
        fc.constantFrom('first' as const, 'last' as const),
        fc.date({ min: new Date('2020-01-01T00:00:00Z'), max: new Date('2040-12-31T00:00:00Z'), noInvalidDate: true }),
        (balance, minimum, maxMonths, remainder, start) => {
          const t = { minimumInstallmentCents: minimum, maximumMonths: maxMonths };
          const offers = offeredPlans(balance, t);
          if (balance < 2 * minimum || maxMonths < 2) assert.deepEqual(offers, []);
          for (const offer of offers) assert.ok(offer.months >= 2 && offer.months <= maxMonths && offer.installmentCents >= minimum);
          // Schedules of the shortest, a middle and the longest offer (all of them makes the property slow).
          const sample = offers.length === 0 ? [] : [...new Set([offers[0]!, offers[offers.length >> 1]!, offers[offers.length - 1]!])];
          for (const offer of sample) {
            const schedule = planSchedule({ balanceCents: balance, months: offer.months, startDate: start.toISOString().slice(0, 10), remainder, terms: t });
            assert.equal(schedule.length, offer.months);
            assert.equal(schedule.reduce((s, i) => s + i.amountCents, 0), balance);
            for (const i of schedule) {
              assert.ok(Number.isSafeInteger(i.amountCents));
              assert.ok(i.amountCents >= minimum, `${i.amountCents} < ${minimum}`);
            }
            const amounts = schedule.map((i) => i.amountCents);
            assert.ok(Math.max(...amounts) - Math.min(...amounts) < offer.months);
            for (let k = 1; k < schedule.length; k++) assert.ok(schedule[k]!.dueDate > schedule[k - 1]!.dueDate);
          }
          // Whatever split is asked for directly sums exactly too; an installment is only below the minimum when
          // the balance itself is (a one-installment "plan" of a small balance).
          const count = Math.min(maxMonths, balance);
          const parts = splitInstallments(balance, count, remainder);
          assert.equal(parts.reduce((a, b) => a + b, 0), balance);
          if (count === 1 && balance < minimum) assert.equal(parts[0], balance);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('failed installments and payoff', () => {
  it('retry +1, +3, +7 days after the first failure, then default', () => {
    assert.deepEqual(onInstallmentFailure('2026-03-31', 1), { action: 'retry', retryOn: '2026-04-01', retry: 1, askPatientToAuthenticate: false });
    assert.deepEqual(onInstallmentFailure('2026-03-31', 2), { action: 'retry', retryOn: '2026-04-03', retry: 2, askPatientToAuthenticate: false });
    assert.deepEqual(onInstallmentFailure('2026-03-31', 3, 'card_declined'), { action: 'retry', retryOn: '2026-04-07', retry: 3, askPatientToAuthenticate: false });
    assert.deepEqual(onInstallmentFailure('2026-03-31', 4), { action: 'default', askPatientToAuthenticate: false });
    assert.equal(onInstallmentFailure('2026-03-31', 1, 'authentication_required').askPatientToAuthenticate, true);
    assert.deepEqual(onInstallmentFailure('2026-03-31', 2, undefined, [2]), { action: 'default', askPatientToAuthenticate: false });
    assert.throws(() => onInstallmentFailure('2026-03-31', 0), PlanError);
  });

  it('pay off early for exactly what is unpaid', () => {
    const schedule = planSchedule({ balanceCents: 10_000, months: 3, startDate: '2026-01-15' });
    assert.equal(payoffAmountCents(schedule, []), 10_000);
    assert.equal(payoffAmountCents(schedule, [1]), 6666);
    assert.equal(payoffAmountCents(schedule, [1, 3]), 3333);
    assert.equal(payoffAmountCents(schedule, [1, 2, 3]), 0);
  });
});

describe('plan dates in the practice time zone', () => {
  it('starts on the local date, and charges at 10:00 local time across DST', () => {
    assert.equal(localDate(new Date('2026-03-01T03:30:00Z'), 'America/Los_Angeles'), '2026-02-28');
    assert.equal(localDate(new Date('2026-03-01T03:30:00Z'), 'UTC'), '2026-03-01');
    assert.equal(chargeInstant('2026-03-02', 'America/New_York').toISOString(), '2026-03-02T15:00:00.000Z');
    assert.equal(chargeInstant('2026-04-02', 'America/New_York').toISOString(), '2026-04-02T14:00:00.000Z');
    assert.equal(chargeInstant('2026-03-08', 'America/New_York', 2).toISOString(), '2026-03-08T07:00:00.000Z', 'the 02:00 gap moves to 03:00 EDT');
    assert.throws(() => chargeInstant('2026-02-30', 'America/New_York'), PlanError);
    assert.throws(() => localDate(new Date(), 'Mars/Olympus'), PlanError);
  });
});
