import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chooseLanguage } from '../../src/domain/outreach.ts';
import {
  balanceStopReason, cadenceDay, evaluateCadence, parsePolicy, PolicyError, recipientTimeZone, stepDueAt, type CadenceEvaluation, type Policy,
} from '../../src/domain/policy.ts';
import { at, attempt, balance, defaultPolicy, PRACTICE_ZONE } from './outreach-fixtures.ts';

const evaluate = (policy: Policy, b = balance(), now = at('2026-03-02T15:00:00Z')) => evaluateCadence(policy, b, now, PRACTICE_ZONE);
const stepOf = (e: CadenceEvaluation) => ('step' in e ? e.step.id : e.kind);

describe('parsePolicy', () => {
  it('parses the shipped default policy: the issue 6 cadence, sorted, with defaults', () => {
    const policy = defaultPolicy();
    assert.equal(policy.name, 'default');
    assert.equal(policy.language, 'en');
    assert.deepEqual(policy.quietHours, { start: '21:00', end: '08:00' });
    assert.deepEqual(
      policy.steps.map((s) => [s.dayOffset, s.channels.join('+'), s.template]),
      [
        [0, 'sms+email', 'statement-ready'],
        [7, 'sms', 'friendly-reminder'],
        [21, 'email', 'friendly-reminder'],
        [30, 'letter', 'statement-letter'],
        [45, 'letter', 'second-notice'],
        [60, 'letter+email', 'final-notice'],
        [90, 'agency', 'agency-referral'],
      ],
    );
    assert.equal(policy.steps.find((s) => s.id === 'final-notice')?.finalNotice, true);
    assert.deepEqual(policy.caps.perChannelPer7Days, {});
  });

  it('sorts steps by day offset, keeping file order on the same day', () => {
    const base = defaultPolicy();
    const policy = parsePolicy({
      name: 'x', quietHours: base.quietHours, caps: base.caps, noSendDays: [], nonprofit501r: false, planTerms: {},
      steps: [
        { id: 'b', dayOffset: 10, channels: ['sms'], template: 't' },
        { id: 'a', dayOffset: 0, channels: ['email'], template: 't' },
        { id: 'c', dayOffset: 10, channels: ['letter'], template: 't' },
      ],
    });
    assert.deepEqual(policy.steps.map((s) => s.id), ['a', 'b', 'c']);
  });

  it('rejects an unknown time zone and a repeated step id', () => {
    const base = { name: 'x', quietHours: { start: '21:00', end: '08:00' }, caps: { perBalancePer7Days: 7, perChannelPerDay: 1 }, noSendDays: [], nonprofit501r: false };
    assert.throws(() => parsePolicy({ ...base, timeZone: 'Mars/Olympus', steps: [] }), PolicyError);
    const step = { id: 'a', dayOffset: 0, channels: ['sms'], template: 't' };
    assert.throws(() => parsePolicy({ ...base, steps: [step, step] }), /step id "a" is used twice/);
  });
});

describe('recipientTimeZone, days and stops', () => {
  it('uses the recipient zone, else the policy zone, else the practice zone; invalid zones are skipped', () => {
    assert.equal(recipientTimeZone({ timeZone: 'America/Denver' }, { timeZone: 'America/Chicago' }, PRACTICE_ZONE), 'America/Denver');
    assert.equal(recipientTimeZone({}, { timeZone: 'America/Chicago' }, PRACTICE_ZONE), 'America/Chicago');
    assert.equal(recipientTimeZone({ timeZone: 'Nowhere/Else' }, {}, PRACTICE_ZONE), PRACTICE_ZONE);
  });

  it('counts cadence days in the local calendar, across a DST change', () => {
    assert.equal(cadenceDay('2026-03-02', at('2026-03-09T03:30:00Z'), 'America/New_York'), 6, '23:30 on March 8 is still day 6');
    assert.equal(cadenceDay('2026-03-02', at('2026-03-09T03:30:00Z'), 'UTC'), 7);
    assert.equal(stepDueAt('2026-03-02', 7, 'America/New_York').toISOString(), '2026-03-09T04:00:00.000Z', 'midnight EDT after the change');
    assert.equal(stepDueAt('2026-03-02', 0, 'America/New_York').toISOString(), '2026-03-02T05:00:00.000Z', 'midnight EST');
  });

  it('names why a balance gets no outreach', () => {
    const b = balance();
    assert.equal(balanceStopReason(b), null);
    assert.equal(balanceStopReason({ ...b, status: 'paid' }), 'the balance is paid');
    assert.equal(balanceStopReason({ ...b, status: 'disputed' }), 'the balance is disputed');
    assert.equal(balanceStopReason({ ...b, status: 'in_plan' }), 'the balance is on a payment plan');
    assert.equal(balanceStopReason({ ...b, hasPlan: true }), 'the balance is on a payment plan');
    assert.equal(balanceStopReason({ ...b, status: 'on_hold' }), 'the balance is on hold');
    assert.equal(balanceStopReason({ ...b, hasHold: true }), 'the balance is on hold');
    assert.equal(balanceStopReason({ ...b, amountDueCents: 0 }), 'nothing is due');
  });
});

describe('evaluateCadence', () => {
  const policy = defaultPolicy();

  it('makes day 0 due on text and email', () => {
    const e = evaluate(policy);
    assert.equal(e.kind, 'due');
    assert.equal(stepOf(e), 'statement-ready');
    assert.deepEqual(e.kind === 'due' && e.channels, ['sms', 'email']);
  });

  it('waits for the next step once a step is attempted, then makes it due on its day', () => {
    const b = balance({ attempts: [attempt('statement-ready', 'sms', '2026-03-02T15:00:00Z'), attempt('statement-ready', 'email', '2026-03-02T15:00:01Z')] });
    const waiting = evaluate(policy, b, at('2026-03-05T15:00:00Z'));
    assert.equal(waiting.kind, 'waiting');
    assert.equal(stepOf(waiting), 'first-reminder');
    assert.equal(waiting.kind === 'waiting' && waiting.dueAt.toISOString(), '2026-03-09T04:00:00.000Z');
    const due = evaluate(policy, b, at('2026-03-09T13:00:00Z'));
    assert.equal(stepOf(due), 'first-reminder');
  });

  it('keeps offering the channels of a step not yet attempted', () => {
    const b = balance({ attempts: [attempt('statement-ready', 'email', '2026-03-02T15:00:00Z')] });
    const e = evaluate(policy, b, at('2026-03-03T15:00:00Z'));
    assert.equal(stepOf(e), 'statement-ready');
    assert.deepEqual(e.kind === 'due' && e.channels, ['sms']);
  });

  it('a suppressed attempt counts as done: the cadence moves on', () => {
    const b = balance({ attempts: [attempt('statement-ready', 'sms', '2026-03-02T15:00:00Z', 'suppressed'), attempt('statement-ready', 'email', '2026-03-02T15:00:00Z')] });
    assert.equal(evaluate(policy, b, at('2026-03-03T15:00:00Z')).kind, 'waiting');
  });

  it('a balance first seen late gets the step its age puts it in, not every missed one', () => {
    const e = evaluate(policy, balance(), at('2026-04-11T15:00:00Z')); // day 40
    assert.equal(stepOf(e), 'statement-letter');
    assert.deepEqual(e.kind === 'due' && e.skipped.map((s) => s.stepId), ['statement-ready', 'first-reminder', 'second-reminder']);
    assert.match(e.kind === 'due' ? e.skipped[0]!.reason : '', /superseded by the later step statement-letter/);
  });

  it('skips a due step whose entry conditions fail, with the reason, and falls back to the latest that applies', () => {
    const small = balance({ amountDueCents: 1000, attempts: [attempt('statement-letter', 'letter', '2026-04-01T15:00:00Z')] });
    const e = evaluate(policy, small, at('2026-05-04T15:00:00Z')); // day 63: final notice needs $25
    assert.equal(stepOf(e), 'second-notice');
    assert.deepEqual(e.kind === 'due' && e.skipped, [{ stepId: 'final-notice', reason: 'amount due 1000 cents is below the step minimum of 2500' }]);
    const done = evaluate(policy, { ...small, attempts: [...small.attempts, attempt('second-notice', 'letter', '2026-04-16T15:00:00Z')] }, at('2026-06-15T15:00:00Z'));
    assert.equal(done.kind, 'finished');
    assert.deepEqual(done.kind === 'finished' && done.skipped.map((s) => s.stepId), ['final-notice', 'agency-referral']);
  });

  it('a paid balance cancels the next step', () => {
    const b = balance({ attempts: [attempt('statement-ready', 'sms', '2026-03-02T15:00:00Z'), attempt('statement-ready', 'email', '2026-03-02T15:00:00Z')] });
    assert.equal(stepOf(evaluate(policy, b, at('2026-03-09T15:00:00Z'))), 'first-reminder');
    for (const status of ['paid', 'in_plan', 'on_hold', 'disputed', 'sent_to_agency', 'written_off'] as const) {
      const e = evaluate(policy, { ...b, status }, at('2026-03-09T15:00:00Z'));
      assert.equal(e.kind, 'stopped', status);
      assert.equal(e.kind === 'stopped' && e.rule, 'balance-status');
    }
    assert.equal(evaluate(policy, { ...b, hasHold: true }, at('2026-03-09T15:00:00Z')).kind, 'stopped');
  });

  it('a hold lifted resumes where the cadence was', () => {
    const b = balance({ attempts: [attempt('statement-ready', 'sms', '2026-03-02T15:00:00Z'), attempt('statement-ready', 'email', '2026-03-02T15:00:00Z')] });
    assert.equal(evaluate(policy, { ...b, hasHold: true }, at('2026-03-12T15:00:00Z')).kind, 'stopped');
    assert.equal(stepOf(evaluate(policy, b, at('2026-03-12T15:00:00Z'))), 'first-reminder');
  });

  it('a policy change applies from the next step on: done steps are not redone, new later steps are followed', () => {
    const b = balance({
      attempts: [
        attempt('statement-ready', 'sms', '2026-03-02T15:00:00Z'), attempt('statement-ready', 'email', '2026-03-02T15:00:00Z'),
        attempt('first-reminder', 'sms', '2026-03-09T15:00:00Z'),
      ],
    });
    const edited: Policy = {
      ...policy,
      steps: [
        { ...policy.steps[0]!, channels: ['sms', 'email', 'letter'] }, // a new channel on a step already done
        { id: 'welcome-call-card', dayOffset: 3, channels: ['letter'], template: 'statement-ready', conditions: {}, finalNotice: false }, // a new earlier step
        policy.steps[1]!,
        { id: 'nudge', dayOffset: 14, channels: ['sms'], template: 'friendly-reminder', conditions: {}, finalNotice: false }, // a new later step
        ...policy.steps.slice(2),
      ],
    };
    assert.equal(evaluate(edited, b, at('2026-03-12T15:00:00Z')).kind, 'waiting');
    assert.equal(stepOf(evaluate(edited, b, at('2026-03-12T15:00:00Z'))), 'nudge');
    assert.equal(stepOf(evaluate(edited, b, at('2026-03-16T15:00:00Z'))), 'nudge');
  });

  it('an attempt of a step the policy no longer has still counts, by the day it was made', () => {
    const b = balance({ attempts: [attempt('retired-step', 'sms', '2026-03-25T15:00:00Z')] }); // day 23
    const e = evaluate(policy, b, at('2026-03-26T15:00:00Z'));
    assert.equal(stepOf(e), 'statement-letter');
    assert.equal(e.kind, 'waiting');
  });

  it('501(r): an unsent final notice is never superseded by the agency step', () => {
    const b = balance({ attempts: [attempt('second-notice', 'letter', '2026-04-16T15:00:00Z')] });
    const now = at('2026-06-05T15:00:00Z'); // day 95
    assert.equal(stepOf(evaluate(policy, b, now)), 'agency-referral');
    const nonprofit = { ...policy, nonprofit501r: true };
    const e = evaluate(nonprofit, b, now);
    assert.equal(stepOf(e), 'final-notice');
    assert.ok(e.kind === 'due' && e.skipped.some((s) => s.stepId === 'agency-referral' && /501\(r\)/.test(s.reason)));
  });

  it('finishes after the last step', () => {
    const b = balance({ attempts: [attempt('agency-referral', 'agency', '2026-05-31T15:00:00Z')] });
    assert.deepEqual(evaluate(policy, b, at('2026-07-01T15:00:00Z')), { kind: 'finished', skipped: [] });
  });
});

describe('chooseLanguage', () => {
  it('uses the patient language when Settle has templates for it, else the practice language, else English', () => {
    assert.equal(chooseLanguage('es', 'en'), 'es');
    assert.equal(chooseLanguage('es-MX', 'en'), 'es');
    assert.equal(chooseLanguage('spa', undefined), 'es');
    assert.equal(chooseLanguage('EN-us', 'es'), 'en');
    assert.equal(chooseLanguage('vi', 'es'), 'es');
    assert.equal(chooseLanguage(undefined, 'es'), 'es');
    assert.equal(chooseLanguage(undefined, undefined), 'en');
    assert.equal(chooseLanguage('  ', 'fr'), 'en');
  });
});
