import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { planSchedule, PlanError } from '../../src/domain/payment-plan.ts';
import { applyPlanEvent, planRemainingCents, startPlan, type PlanEvent, type PlanState } from '../../src/domain/payment-plan-state.ts';

const schedule = planSchedule({ balanceCents: 10_000, months: 4, startDate: '2026-01-31' });
// 2500 × 4, due 01-31, 02-28, 03-31, 04-30

describe('plan state machine', () => {
  it('starts with the first installment paid and the others scheduled on their due dates', () => {
    const { state, effects } = startPlan('plan_1', 'USD', schedule);
    assert.equal(state.status, 'active');
    assert.deepEqual(state.installments.map((i) => i.status), ['paid', 'scheduled', 'scheduled', 'scheduled']);
    assert.deepEqual(effects, [
      { kind: 'schedule-charge', installment: 2, attempt: 1, on: '2026-02-28', amountCents: 2500 },
      { kind: 'schedule-charge', installment: 3, attempt: 1, on: '2026-03-31', amountCents: 2500 },
      { kind: 'schedule-charge', installment: 4, attempt: 1, on: '2026-04-30', amountCents: 2500 },
    ]);
    assert.equal(planRemainingCents(state), 7500);
  });

  it('completes when every installment is paid, ignoring duplicate and late events', () => {
    let { state } = startPlan('plan_1', 'USD', schedule);
    for (const n of [2, 3]) state = applyPlanEvent(state, { type: 'charge-succeeded', installment: n, attempt: 1, on: schedule[n - 1]!.dueDate }).state;
    const duplicate = applyPlanEvent(state, { type: 'charge-succeeded', installment: 3, attempt: 1, on: '2026-03-31' });
    assert.equal(duplicate.state, state);
    assert.deepEqual(duplicate.effects, []);
    const done = applyPlanEvent(state, { type: 'charge-succeeded', installment: 4, attempt: 1, on: '2026-04-30' });
    assert.equal(done.state.status, 'completed');
    assert.deepEqual(done.effects, [{ kind: 'plan-completed', how: 'installments' }]);
    assert.equal(planRemainingCents(done.state), 0);
    assert.deepEqual(applyPlanEvent(done.state, { type: 'charge-failed', installment: 4, attempt: 2, on: '2026-05-01' }).effects, []);
  });

  it('retries a declined installment +1, +3, +7 days, recovers, and asks for authentication when the bank wants it', () => {
    let { state } = startPlan('plan_1', 'USD', schedule);
    let step = applyPlanEvent(state, { type: 'charge-failed', installment: 2, attempt: 1, on: '2026-02-28', code: 'card_declined' });
    assert.deepEqual(step.effects, [{ kind: 'schedule-charge', installment: 2, attempt: 2, on: '2026-03-01', amountCents: 2500 }]);
    state = step.state;
    step = applyPlanEvent(state, { type: 'charge-failed', installment: 2, attempt: 2, on: '2026-03-01', code: 'authentication_required' });
    assert.deepEqual(step.effects, [
      { kind: 'ask-authentication', installment: 2, amountCents: 2500 },
      { kind: 'schedule-charge', installment: 2, attempt: 3, on: '2026-03-03', amountCents: 2500 },
    ]);
    state = step.state;
    // The failure of attempt 1 delivered again, late: nothing happens.
    assert.deepEqual(applyPlanEvent(state, { type: 'charge-failed', installment: 2, attempt: 1, on: '2026-02-28' }).effects, []);
    step = applyPlanEvent(state, { type: 'charge-succeeded', installment: 2, attempt: 3, on: '2026-03-03' });
    assert.equal(step.state.installments[1]!.status, 'paid');
    assert.equal(step.state.status, 'active');
    assert.deepEqual(step.effects, []);
  });

  it('defaults after the last retry fails, cancelling what is scheduled, with the remainder due', () => {
    let { state } = startPlan('plan_1', 'USD', schedule);
    const on = ['2026-02-28', '2026-03-01', '2026-03-03', '2026-03-07'];
    let effects: unknown[] = [];
    for (let attempt = 1; attempt <= 4; attempt++) ({ state, effects } = applyPlanEvent(state, { type: 'charge-failed', installment: 2, attempt, on: on[attempt - 1]! }) as { state: PlanState; effects: unknown[] });
    assert.equal(state.status, 'defaulted');
    assert.deepEqual(effects, [{ kind: 'cancel-charges', installments: [2, 3, 4] }, { kind: 'plan-defaulted', remainingCents: 7500 }]);
    assert.equal(planRemainingCents(state), 0, 'nothing more is owed to the plan: the balance owns it again');
  });

  it('pays off early for exactly the unpaid remainder', () => {
    let { state } = startPlan('plan_1', 'USD', schedule);
    state = applyPlanEvent(state, { type: 'charge-succeeded', installment: 2, attempt: 1, on: '2026-02-28' }).state;
    assert.throws(() => applyPlanEvent(state, { type: 'paid-off', amountCents: 5000 - 1, on: '2026-03-10' }), PlanError);
    const paidOff = applyPlanEvent(state, { type: 'paid-off', amountCents: 5000, on: '2026-03-10' });
    assert.equal(paidOff.state.status, 'paid-off');
    assert.deepEqual(paidOff.effects, [{ kind: 'cancel-charges', installments: [3, 4] }, { kind: 'plan-completed', how: 'paid-off' }]);
  });

  it('keeps paid + remaining = balance and never charges a paid installment again (property)', () => {
    const eventArb = fc.oneof(
      fc.record({ type: fc.constant('charge-succeeded' as const), installment: fc.integer({ min: 1, max: 4 }), attempt: fc.integer({ min: 1, max: 5 }), on: fc.constant('2026-03-01') }),
      fc.record({
        type: fc.constant('charge-failed' as const), installment: fc.integer({ min: 1, max: 4 }), attempt: fc.integer({ min: 1, max: 5 }), on: fc.constant('2026-03-01'),
        code: fc.constantFrom('card_declined', 'authentication_required'),
      }),
      fc.record({ type: fc.constant('cancelled' as const), on: fc.constant('2026-03-01') }),
    );
    fc.assert(
      fc.property(fc.array(eventArb, { maxLength: 30 }), fc.boolean(), (events: PlanEvent[], firstPaid) => {
        let { state } = startPlan('plan_p', 'USD', schedule, { firstPaid });
        const paidOnce = new Set<number>();
        for (const event of events) {
          const before = state;
          const { state: next, effects } = applyPlanEvent(state, event);
          if (before.status !== 'active') assert.equal(next, before);
          for (const effect of effects) {
            if (effect.kind === 'schedule-charge') assert.notEqual(next.installments[effect.installment - 1]!.status, 'paid');
          }
          for (const i of next.installments) {
            if (i.status === 'paid') paidOnce.add(i.number);
            else assert.ok(!paidOnce.has(i.number), 'a paid installment never becomes unpaid');
          }
          const paid = next.installments.filter((i) => i.status === 'paid').reduce((s, i) => s + i.amountCents, 0);
          if (next.status === 'active') assert.equal(paid + planRemainingCents(next), 10_000);
          state = next;
        }
      }),
    );
  });
});
