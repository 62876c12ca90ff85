import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DateTime } from 'luxon';
import { ManualClock } from '../../src/domain/clock.ts';
import type { OutreachBalance } from '../../src/domain/outreach.ts';
import type { Policy } from '../../src/domain/policy.ts';
import { nextPlanningAt, planOutreach } from '../../src/outreach/plan.ts';
import { defaultTemplates, renderMessage, SAMPLE_VALUES, selectTemplate } from '../../src/outreach/templates.ts';
import { at, balance, defaultPolicy, PRACTICE_ZONE } from '../domain/outreach-fixtures.ts';

interface Logged {
  step: string;
  channel: string;
  outcome: 'sent' | 'suppressed';
  /** Local time in the recipient's zone. */
  local: string;
  language?: string;
  rule?: string;
}

/**
 * Drives a balance through a policy the way the jobs will: plan at the clock's now; send what is allowed,
 * record what is suppressed; then move the clock to the next planning instant (a deferral or a due step).
 * `events` change the balance at given instants (a payment, a STOP).
 */
function simulate(policy: Policy, start: OutreachBalance, from: string, events: { at: string; change: (b: OutreachBalance) => OutreachBalance }[] = []) {
  const clock = new ManualClock(at(from));
  let b = start;
  const log: Logged[] = [];
  const pending = events.map((e) => ({ ...e, when: at(e.at) }));
  for (let i = 0; i < 500; i++) {
    while (pending.length > 0 && pending[0]!.when <= clock.now()) b = pending.shift()!.change(b);
    const now = clock.now();
    const plan = planOutreach(policy, b, now, { practiceTimeZone: PRACTICE_ZONE });
    let acted = false;
    for (const send of plan.sends) {
      const { decision } = send.record;
      if (decision.verdict === 'defer') continue;
      acted = true;
      const outcome = decision.verdict === 'allow' ? 'sent' : 'suppressed';
      b = { ...b, attempts: [...b.attempts, { stepId: send.step.id, channel: send.channel, at: now, outcome, finalNotice: send.step.finalNotice }] };
      const local = DateTime.fromJSDate(now, { zone: send.record.timeZone }).toFormat('ccc yyyy-MM-dd HH:mm');
      log.push({ step: send.step.id, channel: send.channel, outcome, local, language: send.language, ...(decision.verdict === 'suppress' ? { rule: decision.rule } : {}) });
      if (send.channel !== 'agency' && outcome === 'sent') {
        const template = selectTemplate(defaultTemplates, send.template, send.channel, send.language)!;
        const message = renderMessage(template, { ...SAMPLE_VALUES, amountDueCents: b.amountDueCents });
        if (message.sms) assert.equal(message.sms.segments, 1);
      }
    }
    if (acted) continue;
    const next = nextPlanningAt(plan);
    const candidates = [next, pending[0]?.when].filter((d): d is Date => d instanceof Date);
    if (candidates.length === 0) return { log, balance: b, end: plan.evaluation.kind };
    clock.set(new Date(Math.min(...candidates.map((d) => d.getTime()))));
  }
  assert.fail('the simulation did not settle');
}

const short = (log: Logged[]) => log.map((l) => `${l.local} ${l.step} ${l.channel} ${l.outcome}${l.rule ? ` (${l.rule})` : ''}`);

describe('planOutreach over a whole cadence (default policy, America/New_York)', () => {
  it('sends every step on its day, inside the allowed hours, never on Sunday, within the caps', () => {
    const { log, end } = simulate(defaultPolicy(), balance(), '2026-03-02T05:00:00Z');
    assert.deepEqual(short(log), [
      'Mon 2026-03-02 08:00 statement-ready sms sent',
      'Mon 2026-03-02 08:00 statement-ready email sent',
      'Mon 2026-03-09 09:00 first-reminder sms sent', // 08:00 EDT, then the 2-in-7-days cap until a week after 08:00 EST
      'Mon 2026-03-23 08:00 second-reminder email sent',
      'Wed 2026-04-01 00:00 statement-letter letter sent', // letters go into the print batch, no quiet hours
      'Thu 2026-04-16 00:00 second-notice letter sent',
      'Fri 2026-05-01 00:00 final-notice letter sent',
      'Fri 2026-05-01 08:00 final-notice email sent',
      'Sun 2026-05-31 00:00 agency-referral agency sent',
    ]);
    assert.equal(end, 'finished');
  });

  it('a payment mid-cadence cancels the next step', () => {
    const { log, end } = simulate(defaultPolicy(), balance(), '2026-03-02T05:00:00Z', [
      { at: '2026-03-12T17:00:00Z', change: (b) => ({ ...b, status: 'paid', amountDueCents: 0 }) },
    ]);
    assert.deepEqual(log.map((l) => l.step), ['statement-ready', 'statement-ready', 'first-reminder']);
    assert.equal(end, 'stopped');
  });

  it('STOP after the first text: later texts are suppressed with the rule, email and letters go on', () => {
    const { log } = simulate(defaultPolicy(), balance(), '2026-03-02T05:00:00Z', [
      { at: '2026-03-03T15:00:00Z', change: (b) => ({ ...b, optOuts: [{ channel: 'sms', address: b.destinations.sms, source: 'keyword:STOP', at: at('2026-03-03T15:00:00Z') }] }) },
    ]);
    assert.deepEqual(short(log).slice(2, 4), [
      'Mon 2026-03-09 00:00 first-reminder sms suppressed (opt-out)',
      'Mon 2026-03-23 08:00 second-reminder email sent',
    ]);
    assert.equal(log.filter((l) => l.channel === 'sms' && l.outcome === 'sent').length, 1);
  });

  it('Spanish-speaking patients get Spanish templates', () => {
    const { log } = simulate(defaultPolicy(), balance({ language: 'es-MX' }), '2026-03-02T05:00:00Z');
    assert.ok(log.every((l) => l.language === 'es'));
  });

  it('a hold pauses the cadence and lifting it resumes with the step then due', () => {
    const { log } = simulate(defaultPolicy(), balance(), '2026-03-02T05:00:00Z', [
      { at: '2026-03-05T15:00:00Z', change: (b) => ({ ...b, hasHold: true }) },
      { at: '2026-04-03T15:00:00Z', change: (b) => ({ ...b, hasHold: false }) },
    ]);
    assert.deepEqual(short(log).slice(2, 4), ['Fri 2026-04-03 11:00 statement-letter letter sent', 'Thu 2026-04-16 00:00 second-notice letter sent']);
  });

  it('nonprofit 501(r): the agency hand-off waits for day 120', () => {
    const { log } = simulate({ ...defaultPolicy(), nonprofit501r: true }, balance(), '2026-03-02T05:00:00Z');
    assert.equal(short(log).at(-1), 'Tue 2026-06-30 00:00 agency-referral agency sent');
  });

  it('decides the channels of one step in turn, so together they respect the caps', () => {
    const oneADay = { ...defaultPolicy(), caps: { perBalancePer7Days: 1, perChannelPerDay: 1, perChannelPer7Days: {} } };
    const plan = planOutreach(oneADay, balance(), at('2026-03-02T15:00:00Z'), { practiceTimeZone: PRACTICE_ZONE });
    assert.deepEqual(plan.sends.map((s) => [s.channel, s.record.decision.verdict]), [['sms', 'allow'], ['email', 'defer']]);
  });

  it('says when to plan again', () => {
    const waiting = planOutreach(defaultPolicy(), balance({ attempts: [{ stepId: 'statement-ready', channel: 'sms', at: at('2026-03-02T15:00:00Z'), outcome: 'sent' }, { stepId: 'statement-ready', channel: 'email', at: at('2026-03-02T15:00:00Z'), outcome: 'sent' }] }), at('2026-03-03T15:00:00Z'), { practiceTimeZone: PRACTICE_ZONE });
    assert.equal(nextPlanningAt(waiting)?.toISOString(), '2026-03-09T04:00:00.000Z');
    const night = planOutreach(defaultPolicy(), balance(), at('2026-03-03T03:00:00Z'), { practiceTimeZone: PRACTICE_ZONE });
    assert.equal(nextPlanningAt(night)?.toISOString(), '2026-03-03T13:00:00.000Z');
    assert.equal(nextPlanningAt(planOutreach(defaultPolicy(), balance({ status: 'paid' }), at('2026-03-03T03:00:00Z'), { practiceTimeZone: PRACTICE_ZONE })), null);
  });
});
