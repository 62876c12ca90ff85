import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  attemptIdentity, checkIdentityAnswer, DEFAULT_ATTEMPT_POLICY, INITIAL_ATTEMPT_STATE, parseTypedBirthDate, zip5, type AttemptState, type IdentityAnswer,
} from '../../src/payments/identity-check.ts';

const onFile = { birthDate: '1984-03-07', zip: '02139-4307' };
const dob = (text: string): IdentityAnswer => ({ kind: 'birth-date', text });
const zip = (text: string): IdentityAnswer => ({ kind: 'zip', text });

describe('identity answers', () => {
  it('accept the birth date in ISO, US month-first, 8-digit and two-digit-year forms', () => {
    for (const text of ['1984-03-07', '03/07/1984', '3/7/1984', '3/7/84', '03-07-1984', '03.07.1984', '03071984', ' 3/07/1984 ']) {
      assert.equal(checkIdentityAnswer(dob(text), onFile), 'match', text);
    }
  });

  it('do not accept day-first, and tell a non-date apart from a wrong date', () => {
    assert.equal(checkIdentityAnswer(dob('07/03/1984'), onFile), 'mismatch');
    assert.equal(checkIdentityAnswer(dob('3/7/85'), onFile), 'mismatch');
    assert.equal(checkIdentityAnswer(dob('1984-03-08'), onFile), 'mismatch');
    for (const text of ['', 'March 7', '13/01/1984', '02/30/1984', '1984/03/07', '3/7/198', '1984-3-7x']) {
      assert.equal(checkIdentityAnswer(dob(text), onFile), 'invalid', text);
    }
    assert.equal(parseTypedBirthDate('02/29/2000')?.day, 29);
    assert.equal(parseTypedBirthDate('02/29/1900'), undefined);
  });

  it('compare five-digit ZIPs, ZIP+4 on either side', () => {
    assert.equal(checkIdentityAnswer(zip('02139'), onFile), 'match');
    assert.equal(checkIdentityAnswer(zip('02139-1111'), onFile), 'match');
    assert.equal(checkIdentityAnswer(zip('02138'), onFile), 'mismatch');
    assert.equal(checkIdentityAnswer(zip('2139'), onFile), 'invalid');
    assert.equal(checkIdentityAnswer(zip('02139'), { birthDate: '1984-03-07' }), 'unavailable');
    assert.equal(checkIdentityAnswer(dob('3/7/1984'), { zip: '02139' }), 'unavailable');
    assert.equal(zip5('021394307'), '02139');
  });

  it('match every valid birth date typed in every accepted form', () => {
    fc.assert(
      fc.property(fc.date({ min: new Date('1900-01-01T00:00:00Z'), max: new Date('2025-12-31T00:00:00Z'), noInvalidDate: true }), (d) => {
        const y = d.getUTCFullYear(), m = d.getUTCMonth() + 1, day = d.getUTCDate();
        const p = (n: number) => String(n).padStart(2, '0');
        const stored = { birthDate: `${y}-${p(m)}-${p(day)}` };
        for (const text of [`${y}-${p(m)}-${p(day)}`, `${m}/${day}/${y}`, `${p(m)}/${p(day)}/${y}`, `${m}/${day}/${p(y % 100)}`, `${p(m)}${p(day)}${y}`]) {
          assert.equal(checkIdentityAnswer(dob(text), stored), 'match', text);
        }
      }),
    );
  });
});

describe('identity attempt limiter', () => {
  const t0 = Date.parse('2026-03-01T12:00:00Z');
  const MIN = 60_000;

  it('locks the link on the fifth wrong answer within an hour, for a day', () => {
    let state: AttemptState = INITIAL_ATTEMPT_STATE;
    for (let i = 1; i <= 4; i++) {
      const step = attemptIdentity(state, dob('1/1/1990'), onFile, t0 + i * MIN);
      assert.deepEqual(step.outcome, { result: 'mismatch', remaining: 5 - i });
      state = step.state;
    }
    const fifth = attemptIdentity(state, zip('99999'), onFile, t0 + 5 * MIN);
    assert.deepEqual(fifth.outcome, { result: 'locked', until: t0 + 5 * MIN + DEFAULT_ATTEMPT_POLICY.lockMs });
    state = fifth.state;
    // Even the right answer is refused while locked, and the state does not change.
    const right = attemptIdentity(state, dob('03/07/1984'), onFile, t0 + 6 * MIN);
    assert.equal(right.outcome.result, 'locked');
    assert.equal(right.state, state);
    // After the lock: a fresh start.
    const later = attemptIdentity(state, dob('03/07/1984'), onFile, t0 + 5 * MIN + DEFAULT_ATTEMPT_POLICY.lockMs);
    assert.deepEqual(later.outcome, { result: 'verified' });
    assert.deepEqual(later.state, INITIAL_ATTEMPT_STATE);
  });

  it('forgets failures older than the window, and does not count unreadable input', () => {
    let state: AttemptState = INITIAL_ATTEMPT_STATE;
    for (let i = 0; i < 4; i++) state = attemptIdentity(state, dob('1/1/1990'), onFile, t0 + i * MIN).state;
    const invalid = attemptIdentity(state, dob('yesterday'), onFile, t0 + 5 * MIN);
    assert.deepEqual(invalid.outcome, { result: 'invalid' });
    assert.equal(invalid.state.failures.length, 4);
    // Just over an hour after the first failure, only three are within the hour.
    const next = attemptIdentity(state, dob('1/1/1990'), onFile, t0 + 60 * MIN + 1000);
    assert.deepEqual(next.outcome, { result: 'mismatch', remaining: 1 });
  });

  it('never allows more than maxFailures wrong answers in any hour (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 20 * MIN }), fc.boolean()), { maxLength: 60 }), (steps) => {
        let state: AttemptState = INITIAL_ATTEMPT_STATE;
        let now = t0;
        const compared: number[] = [];
        for (const [gap, right] of steps) {
          now += gap;
          const { state: next, outcome } = attemptIdentity(state, right ? dob('3/7/1984') : dob('1/1/1990'), onFile, now);
          if (outcome.result === 'mismatch' || (outcome.result === 'locked' && next !== state)) compared.push(now);
          if (outcome.result === 'verified') compared.length = 0;
          state = next;
          const inHour = compared.filter((t) => t > now - 60 * MIN);
          assert.ok(inHour.length <= DEFAULT_ATTEMPT_POLICY.maxFailures);
        }
      }),
    );
  });
});
