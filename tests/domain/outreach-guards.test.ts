import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DateTime } from 'luxon';
import {
  balanceStatusGuard, channelConsentGuard, channelDailyCapGuard, decide, destinationGuard, frequencyCapGuard, GUARD_RULES, isQuietMinute,
  nextAllowedInstant, noSendDayGuard, nonprofit501rGuard, optOutGuard, quietHoursGuard, smsConsentGuard, stepConditionsGuard, undeliverableGuard, type SendContext,
} from '../../src/domain/outreach-guards.ts';
import { builtInHolidays, usFederalHolidays } from '../../src/domain/outreach-holidays.ts';
import { classifyInbound } from '../../src/domain/outreach-keywords.ts';
import type { OutreachAttempt, OutreachBalance } from '../../src/domain/outreach.ts';
import { evaluateCadence } from '../../src/domain/policy.ts';
import { at, attempt, balance, defaultPolicy, PRACTICE_ZONE } from './outreach-fixtures.ts';

const policy = defaultPolicy();
const step = (id: string) => policy.steps.find((s) => s.id === id)!;

/** A planned first-reminder text at 10:00 EST on Tuesday 2026-03-03, all else in order. */
function ctx(overrides: Partial<SendContext> & { b?: Partial<OutreachBalance> } = {}): SendContext {
  const { b, ...rest } = overrides;
  return { policy, balance: balance(b), step: step('first-reminder'), channel: 'sms', now: at('2026-03-03T15:00:00Z'), practiceTimeZone: PRACTICE_ZONE, ...rest };
}
const iso = (d: Date) => d.toISOString();
const untilOf = (v: { verdict: string; until?: Date }) => (v.verdict === 'defer' && v.until ? iso(v.until) : v.verdict);

describe('quiet hours (21:00–08:00 recipient local time)', () => {
  it('defers an evening text to 08:00 the next morning, not drops it', () => {
    const v = quietHoursGuard(ctx({ now: at('2026-03-04T02:30:00Z') })); // 21:30 EST
    assert.equal(v.verdict, 'defer');
    assert.equal(untilOf(v), '2026-03-04T13:00:00.000Z');
    assert.match(v.verdict === 'defer' ? v.reason : '', /^21:30 in America\/New_York is inside quiet hours 21:00–08:00; waits until 2026-03-04 08:00 EST$/);
    assert.equal(quietHoursGuard(ctx({ now: at('2026-03-04T01:59:00Z') })).verdict, 'allow', '20:59 is fine');
    assert.equal(quietHoursGuard(ctx({ now: at('2026-03-04T02:00:00Z') })).verdict, 'defer', '21:00 is quiet');
    assert.equal(quietHoursGuard(ctx({ now: at('2026-03-03T13:00:00Z') })).verdict, 'allow', '08:00 is fine');
  });

  it('judges the same instant in each recipient’s own time zone', () => {
    const now = at('2026-07-15T13:00:00Z');
    const zone = (timeZone: string) => untilOf(quietHoursGuard(ctx({ now, b: { timeZone } })));
    assert.equal(zone('America/New_York'), 'allow'); // 09:00 EDT
    assert.equal(zone('America/Chicago'), 'allow'); // 08:00 CDT
    assert.equal(zone('America/Los_Angeles'), '2026-07-15T15:00:00.000Z'); // 06:00 PDT
    assert.equal(zone('America/Phoenix'), '2026-07-15T15:00:00.000Z'); // 06:00 MST, no DST
    assert.equal(zone('Pacific/Honolulu'), '2026-07-15T18:00:00.000Z'); // 03:00 HST
    assert.equal(zone('Asia/Kolkata'), 'allow'); // 18:30 IST
  });

  it('falls back to the policy zone, then the practice zone, when the recipient’s is unknown', () => {
    const now = at('2026-07-15T13:00:00Z');
    assert.equal(untilOf(quietHoursGuard(ctx({ now, b: { timeZone: undefined }, practiceTimeZone: 'America/Los_Angeles' }))), '2026-07-15T15:00:00.000Z');
    assert.equal(untilOf(quietHoursGuard(ctx({ now, b: { timeZone: undefined }, policy: { ...policy, timeZone: 'America/New_York' }, practiceTimeZone: 'America/Los_Angeles' }))), 'allow');
  });

  it('spring forward (America/New_York, 2026-03-08): the window opens at 08:00 EDT, one hour earlier in UTC', () => {
    for (const now of ['2026-03-08T02:30:00Z', '2026-03-08T06:00:00Z', '2026-03-08T06:59:00Z', '2026-03-08T07:00:00Z', '2026-03-08T11:59:00Z']) {
      assert.equal(untilOf(quietHoursGuard(ctx({ now: at(now) }))), '2026-03-08T12:00:00.000Z', now);
    }
    assert.equal(quietHoursGuard(ctx({ now: at('2026-03-08T12:00:00Z') })).verdict, 'allow');
    assert.equal(untilOf(quietHoursGuard(ctx({ now: at('2026-03-09T01:00:00Z') }))), '2026-03-09T12:00:00.000Z', '21:00 EDT');
  });

  it('fall back (America/New_York, 2026-11-01): both 01:30s wait for 08:00 EST', () => {
    for (const now of ['2026-11-01T01:00:00Z', '2026-11-01T04:00:00Z', '2026-11-01T05:30:00Z', '2026-11-01T06:30:00Z', '2026-11-01T12:59:00Z']) {
      assert.equal(untilOf(quietHoursGuard(ctx({ now: at(now) }))), '2026-11-01T13:00:00.000Z', now);
    }
    assert.equal(quietHoursGuard(ctx({ now: at('2026-11-02T01:59:00Z') })).verdict, 'allow', '20:59 EST');
    assert.equal(untilOf(quietHoursGuard(ctx({ now: at('2026-11-02T02:00:00Z') }))), '2026-11-02T13:00:00.000Z', '21:00 EST');
  });

  it('a window that would open inside a DST gap opens when the gap ends', () => {
    const quiet = { start: '22:00', end: '02:30' };
    assert.equal(iso(nextAllowedInstant(quiet, at('2026-03-08T06:15:00Z'), 'America/New_York')), '2026-03-08T07:00:00.000Z'); // 01:15 EST → 03:00 EDT
  });

  it('an allowed window lost entirely in a DST gap opens the next day', () => {
    // Santiago skips 00:00–01:00 on 2026-09-06; a policy allowing only 00:00–00:01 has no window that day.
    assert.equal(iso(nextAllowedInstant({ start: '00:01', end: '00:00' }, at('2026-09-05T04:01:00Z'), 'America/Santiago')), '2026-09-07T03:00:00.000Z');
  });

  it('supports a window that does not cross midnight, and none at all', () => {
    assert.equal(isQuietMinute({ start: '12:00', end: '13:00' }, 12 * 60 + 30), true);
    assert.equal(isQuietMinute({ start: '12:00', end: '13:00' }, 13 * 60), false);
    assert.equal(isQuietMinute({ start: '08:00', end: '08:00' }, 3 * 60), false);
  });

  it('leaves letters and the agency hand-off alone', () => {
    assert.equal(quietHoursGuard(ctx({ now: at('2026-03-04T04:00:00Z'), channel: 'letter' })).verdict, 'allow');
    assert.equal(quietHoursGuard(ctx({ now: at('2026-03-04T04:00:00Z'), channel: 'agency' })).verdict, 'allow');
  });

  it('property: the deferred instant is never before now, is outside quiet hours, within a day or two, and the earliest such minute', () => {
    const zones = ['America/New_York', 'America/Los_Angeles', 'America/Phoenix', 'Pacific/Honolulu', 'America/Anchorage', 'Europe/London', 'Australia/Lord_Howe', 'America/Santiago', 'Asia/Kathmandu', 'UTC'];
    const hhmm = fc.integer({ min: 0, max: 24 * 60 - 1 }).map((m) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`);
    fc.assert(
      fc.property(fc.date({ min: at('2025-01-01T00:00:00Z'), max: at('2028-12-31T00:00:00Z'), noInvalidDate: true }), fc.constantFrom(...zones), hhmm, hhmm, (now, zone, start, end) => {
        const quiet = { start, end };
        const until = nextAllowedInstant(quiet, now, zone);
        const local = DateTime.fromJSDate(until, { zone });
        assert.ok(until.getTime() >= now.getTime());
        // Within a day, or two when a DST gap swallows a whole (tiny) allowed window.
        assert.ok(until.getTime() - now.getTime() <= 49 * 3600_000);
        assert.equal(isQuietMinute(quiet, local.hour * 60 + local.minute), false);
        if (until.getTime() > now.getTime()) {
          const before = DateTime.fromMillis(until.getTime() - 60_000, { zone });
          assert.ok(until.getTime() - 60_000 < now.getTime() || isQuietMinute(quiet, before.hour * 60 + before.minute), 'earliest');
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('no-send days', () => {
  it('defers a Sunday text to Monday (the default policy sends nothing on Sundays)', () => {
    const v = noSendDayGuard(ctx({ now: at('2026-03-08T14:00:00Z') }));
    assert.equal(untilOf(v), '2026-03-09T04:00:00.000Z');
    assert.match(v.verdict === 'defer' ? v.reason : '', /2026-03-08 in America\/New_York is a no-send day \(sunday\)/);
  });

  it('knows the US federal holidays, observed dates included, and skips a run of no-send days', () => {
    const v = noSendDayGuard(ctx({ now: at('2026-07-03T14:00:00Z') })); // Friday, Independence Day observed; Sat the 4th; Sunday
    assert.equal(untilOf(v), '2026-07-06T04:00:00.000Z');
    assert.match(v.verdict === 'defer' ? v.reason : '', /public holiday, holidays:US/);
    assert.ok(usFederalHolidays(2026).has('2026-11-26'), 'Thanksgiving');
    assert.ok(usFederalHolidays(2026).has('2026-01-19'), 'MLK Day');
    assert.ok(usFederalHolidays(2026).has('2026-05-25'), 'Memorial Day');
    assert.ok(usFederalHolidays(2027).has('2027-12-24'), 'Christmas 2027 on a Saturday is observed Friday');
    assert.equal(builtInHolidays('US-CA', '2026-09-07'), true, 'Labor Day');
    assert.equal(builtInHolidays('US', '2026-09-08'), false);
    assert.equal(builtInHolidays('FR', '2026-07-14'), undefined);
  });

  it('honours listed dates and weekdays, judged in the recipient’s calendar', () => {
    const custom = { ...policy, noSendDays: ['2026-03-03', 'saturday'] };
    assert.equal(untilOf(noSendDayGuard(ctx({ policy: custom }))), '2026-03-04T05:00:00.000Z');
    // 2026-03-04T03:00Z is still March 3 in New York, already March 4 in UTC.
    assert.equal(noSendDayGuard(ctx({ policy: custom, now: at('2026-03-04T03:00:00Z') })).verdict, 'defer');
    assert.equal(noSendDayGuard(ctx({ policy: custom, now: at('2026-03-04T03:00:00Z'), b: { timeZone: 'UTC' } })).verdict, 'allow');
  });

  it('reports a holiday calendar it does not know instead of silently ignoring it, and takes an injected resolver', () => {
    const french = { ...policy, noSendDays: ['holidays:FR'] };
    assert.deepEqual(noSendDayGuard(ctx({ policy: french, now: at('2026-07-14T14:00:00Z') })), {
      rule: 'no-send-day', verdict: 'allow', note: 'unknown holiday calendar holidays:FR not applied',
    });
    const holidays = (calendar: string, date: string) => (calendar === 'FR' ? date === '2026-07-14' : undefined);
    assert.equal(noSendDayGuard(ctx({ policy: french, now: at('2026-07-14T14:00:00Z'), holidays })).verdict, 'defer');
  });

  it('applies to texts and emails, not letters', () => {
    assert.equal(noSendDayGuard(ctx({ now: at('2026-03-08T14:00:00Z'), channel: 'email' })).verdict, 'defer');
    assert.equal(noSendDayGuard(ctx({ now: at('2026-03-08T14:00:00Z'), channel: 'letter' })).verdict, 'allow');
  });
});

describe('consent, opt-outs, destinations', () => {
  it('a text needs recorded consent with a source and a time, for this number, in force', () => {
    assert.equal(smsConsentGuard(ctx()).verdict, 'allow');
    const consent = balance().consents[0]!;
    const cases: [string, Partial<OutreachBalance>][] = [
      ['none', { consents: [] }],
      ['no source', { consents: [{ ...consent, source: '  ' }] }],
      ['given later', { consents: [{ ...consent, at: at('2026-04-01T00:00:00Z') }] }],
      ['revoked', { consents: [{ ...consent, revokedAt: at('2026-02-01T00:00:00Z') }] }],
      ['another number', { consents: [{ ...consent, address: '+15555550199' }] }],
      ['email consent only', { consents: [{ ...consent, channel: 'email' }] }],
    ];
    for (const [name, b] of cases) {
      assert.deepEqual(smsConsentGuard(ctx({ b })), { rule: 'sms-consent', verdict: 'suppress', reason: 'no recorded consent (source and time) to text this number' }, name);
    }
    assert.equal(smsConsentGuard(ctx({ channel: 'letter', b: { consents: [] } })).verdict, 'allow');
  });

  it('a step with the consent condition sends email only with email consent; letters need none by default', () => {
    const email = ctx({ step: step('second-reminder'), channel: 'email', b: { consents: balance().consents.filter((c) => c.channel === 'sms') } });
    assert.equal(channelConsentGuard(email).verdict, 'suppress');
    assert.equal(channelConsentGuard({ ...email, balance: balance() }).verdict, 'allow');
    assert.equal(channelConsentGuard(ctx({ step: step('statement-letter'), channel: 'letter', b: { consents: [] } })).verdict, 'allow');
  });

  it('STOP then the next step is suppressed; START lets it through again', () => {
    const stopAt = at('2026-03-05T18:00:00Z');
    const reply = classifyInbound('Please STOP texting me!');
    assert.equal(reply.intent, 'opt-out');
    const optedOut = balance({
      attempts: [attempt('statement-ready', 'sms', '2026-03-02T15:00:00Z'), attempt('statement-ready', 'email', '2026-03-02T15:00:00Z')],
      optOuts: [{ channel: 'sms', address: '+15555550100', source: `keyword:${reply.keyword}`, at: stopAt }],
    });
    const now = at('2026-03-09T16:00:00Z'); // Monday 12:00 EDT, a week after day 0
    const next = evaluateCadence(policy, optedOut, now, PRACTICE_ZONE);
    assert.equal(next.kind === 'due' && next.step.id, 'first-reminder');
    const record = decide({ ...ctx(), balance: optedOut, now });
    assert.deepEqual(record.decision, { verdict: 'suppress', rule: 'opt-out', reason: 'opted out of sms on 2026-03-05T18:00:00.000Z (keyword:STOP)' });
    assert.doesNotMatch(JSON.stringify(record), /5555550100|pat@example/, 'no phone or email in the record');
    assert.equal(optOutGuard({ ...ctx(), balance: optedOut, channel: 'email', now }).verdict, 'allow', 'email is a separate channel');
    const back = { ...optedOut, optOuts: [{ ...optedOut.optOuts[0]!, optedBackInAt: at('2026-03-06T12:00:00Z') }] };
    assert.equal(decide({ ...ctx(), balance: back, now }).decision.verdict, 'allow');
    const other = { ...optedOut, destinations: { ...optedOut.destinations, sms: '+15555550111' }, consents: [{ ...optedOut.consents[0]!, address: '+15555550111' }] };
    assert.equal(optOutGuard({ ...ctx(), balance: other, now }).verdict, 'allow', 'another number is not opted out');
  });

  it('a channel-wide opt-out covers every address', () => {
    assert.equal(optOutGuard(ctx({ b: { optOuts: [{ channel: 'sms', source: 'staff:u1', at: at('2026-03-01T00:00:00Z') }] } })).verdict, 'suppress');
  });

  it('an address a provider refused as undeliverable gets nothing on that channel; the others are unaffected', () => {
    assert.deepEqual(undeliverableGuard(ctx({ b: { undeliverable: ['sms'] } })), { rule: 'undeliverable', verdict: 'suppress', reason: 'the mobile number on file was refused as undeliverable' });
    assert.equal(undeliverableGuard(ctx({ channel: 'email', b: { undeliverable: ['sms'] } })).verdict, 'allow');
    assert.equal(undeliverableGuard(ctx()).verdict, 'allow');
    const record = decide(ctx({ b: { undeliverable: ['sms'] } }));
    assert.deepEqual(record.decision, { verdict: 'suppress', rule: 'undeliverable', reason: 'the mobile number on file was refused as undeliverable' });
  });

  it('there must be somewhere to send it', () => {
    assert.deepEqual(destinationGuard(ctx({ b: { destinations: { email: 'x@example.org' } } })), { rule: 'destination', verdict: 'suppress', reason: 'no mobile number on file' });
    assert.equal(destinationGuard(ctx({ channel: 'letter', b: { destinations: {} } })).verdict, 'suppress');
    assert.equal(destinationGuard(ctx({ channel: 'agency', b: { destinations: {} } })).verdict, 'allow');
  });
});

describe('balance status and step conditions at send time', () => {
  it('a payment between planning and sending cancels the send', () => {
    assert.equal(balanceStatusGuard(ctx()).verdict, 'allow');
    for (const status of ['paid', 'in_plan', 'on_hold', 'disputed', 'sent_to_agency', 'written_off'] as const) {
      assert.equal(balanceStatusGuard(ctx({ b: { status } })).verdict, 'suppress', status);
    }
    assert.deepEqual(decide(ctx({ b: { status: 'paid', amountDueCents: 0 } })).decision, { verdict: 'suppress', rule: 'balance-status', reason: 'the balance is paid' });
    assert.equal(decide(ctx({ b: { hasPlan: true } })).decision.verdict, 'suppress');
  });

  it('re-checks the step’s entry conditions', () => {
    const v = stepConditionsGuard(ctx({ step: step('final-notice'), channel: 'email', b: { amountDueCents: 2000 } }));
    assert.deepEqual(v, { rule: 'step-conditions', verdict: 'suppress', reason: 'step final-notice: amount due 2000 cents is below the step minimum of 2500' });
  });
});

describe('IRS 501(r) nonprofit mode', () => {
  const nonprofit = { ...policy, nonprofit501r: true };
  const agency = (attempts: OutreachAttempt[], now: string) => nonprofit501rGuard(ctx({ policy: nonprofit, step: step('agency-referral'), channel: 'agency', now: at(now), b: { attempts } }));

  it('no agency hand-off without a final notice', () => {
    assert.deepEqual(agency([], '2026-07-15T15:00:00Z'), { rule: 'nonprofit-501r', verdict: 'suppress', reason: 'IRS 501(r): no final notice has been sent, so no agency hand-off' });
    assert.equal(agency([attempt('final-notice', 'letter', '2026-05-01T15:00:00Z', 'failed')], '2026-07-15T15:00:00Z').verdict, 'suppress', 'a failed notice is no notice');
  });

  it('waits until 120 days after the first statement', () => {
    const v = agency([attempt('final-notice', 'letter', '2026-05-01T15:00:00Z')], '2026-06-05T15:00:00Z'); // day 95
    assert.equal(untilOf(v), '2026-06-30T04:00:00.000Z'); // 2026-03-02 + 120 days, local midnight
    assert.match(v.verdict === 'defer' ? v.reason : '', /now day 95/);
  });

  it('and until 30 days after the final notice', () => {
    assert.equal(untilOf(agency([attempt('final-notice', 'letter', '2026-06-10T15:00:00Z')], '2026-07-01T15:00:00Z')), '2026-07-10T15:00:00.000Z');
    assert.equal(agency([attempt('final-notice', 'letter', '2026-05-01T15:00:00Z')], '2026-07-01T15:00:00Z').verdict, 'allow');
  });

  it('counts a notice flagged final when it was sent even if the policy no longer marks that step', () => {
    const flagged = { ...attempt('old-final', 'letter', '2026-05-01T15:00:00Z'), finalNotice: true };
    assert.equal(agency([flagged], '2026-07-01T15:00:00Z').verdict, 'allow');
  });

  it('does nothing outside nonprofit mode or for messages', () => {
    assert.equal(nonprofit501rGuard(ctx({ step: step('agency-referral'), channel: 'agency' })).verdict, 'allow');
    assert.equal(nonprofit501rGuard(ctx({ policy: nonprofit })).verdict, 'allow');
  });
});

describe('frequency caps', () => {
  const seven = { ...policy, caps: { perBalancePer7Days: 7, perChannelPerDay: 1, perChannelPer7Days: {} } };
  const history = [
    attempt('a', 'sms', '2026-03-02T15:00:00Z'),
    attempt('a', 'email', '2026-03-02T15:00:00Z'),
    attempt('b', 'sms', '2026-03-03T15:00:00Z'),
    attempt('c', 'email', '2026-03-04T15:00:00Z'),
    attempt('d', 'sms', '2026-03-05T15:00:00Z'),
    attempt('e', 'letter', '2026-03-06T15:00:00Z'),
    attempt('f', 'sms', '2026-03-07T15:00:00Z'),
  ];

  it('the 7-in-7 cap: an 8th attempt in any rolling 7 days waits until the oldest leaves the window', () => {
    const now = at('2026-03-09T13:00:00Z');
    assert.equal(frequencyCapGuard(ctx({ policy: seven, now, b: { attempts: history.slice(1) } })).verdict, 'allow', 'six is fine');
    const v = frequencyCapGuard(ctx({ policy: seven, now, b: { attempts: history } }));
    assert.deepEqual(v, { rule: 'frequency-cap', verdict: 'defer', until: at('2026-03-09T15:00:00Z'), reason: 'already 7 attempts about this balance in the last 7 days' });
    assert.equal(frequencyCapGuard(ctx({ policy: seven, now: at('2026-03-09T15:00:00Z'), b: { attempts: history } })).verdict, 'allow', 'the window is rolling');
  });

  it('suppressed attempts and the agency hand-off do not count', () => {
    const suppressed = history.map((a) => ({ ...a, outcome: 'suppressed' as const }));
    assert.equal(frequencyCapGuard(ctx({ policy: seven, now: at('2026-03-08T16:00:00Z'), b: { attempts: suppressed } })).verdict, 'allow');
  });

  it('the default policy allows two attempts per balance in 7 days', () => {
    const v = frequencyCapGuard(ctx({ now: at('2026-03-08T16:00:00Z'), b: { attempts: history.slice(5) } }));
    assert.equal(untilOf(v), '2026-03-13T15:00:00.000Z');
  });

  it('a per-channel 7-day cap holds one channel back and leaves the others', () => {
    const perChannel = { ...seven, caps: { ...seven.caps, perChannelPer7Days: { sms: 2 } } };
    const attempts = [attempt('a', 'sms', '2026-03-02T15:00:00Z'), attempt('b', 'sms', '2026-03-04T15:00:00Z')];
    const v = frequencyCapGuard(ctx({ policy: perChannel, now: at('2026-03-06T15:00:00Z'), b: { attempts } }));
    assert.deepEqual(v, { rule: 'frequency-cap', verdict: 'defer', until: at('2026-03-09T15:00:00Z'), reason: 'already 2 sms attempts in the last 7 days' });
    assert.equal(frequencyCapGuard(ctx({ policy: perChannel, channel: 'email', now: at('2026-03-06T15:00:00Z'), b: { attempts } })).verdict, 'allow');
  });

  it('never two on one local day by the same channel', () => {
    const attempts = [attempt('a', 'sms', '2026-03-03T13:30:00Z')];
    const v = channelDailyCapGuard(ctx({ now: at('2026-03-03T20:00:00Z'), b: { attempts } }));
    assert.equal(untilOf(v), '2026-03-04T05:00:00.000Z');
    assert.match(v.verdict === 'defer' ? v.reason : '', /already 1 sms attempt\(s\) on 2026-03-03 in America\/New_York/);
    assert.equal(channelDailyCapGuard(ctx({ channel: 'email', now: at('2026-03-03T20:00:00Z'), b: { attempts } })).verdict, 'allow', 'another channel');
    // 22:00 EST on March 3 and 09:00 EST on March 4 are different local days, though the same UTC day.
    assert.equal(channelDailyCapGuard(ctx({ now: at('2026-03-04T14:00:00Z'), b: { attempts: [attempt('a', 'sms', '2026-03-04T03:00:00Z')] } })).verdict, 'allow');
  });
});

describe('decide', () => {
  it('allows when every rule allows, recording every rule’s verdict in order', () => {
    const record = decide(ctx());
    assert.deepEqual(record.decision, { verdict: 'allow' });
    assert.deepEqual(record.verdicts.map((v) => v.rule), [...GUARD_RULES]);
    assert.ok(record.verdicts.every((v) => v.verdict === 'allow'));
    assert.equal(record.timeZone, 'America/New_York');
    assert.equal(iso(record.decidedAt), '2026-03-03T15:00:00.000Z');
  });

  it('returns the first blocking rule but keeps the others’ verdicts', () => {
    const record = decide(ctx({ now: at('2026-03-04T03:00:00Z'), b: { consents: [] } }));
    assert.equal(record.decision.verdict, 'suppress');
    assert.equal(record.decision.verdict === 'suppress' && record.decision.rule, 'sms-consent');
    assert.equal(record.verdicts.find((v) => v.rule === 'quiet-hours')?.verdict, 'defer');
  });

  it('a Saturday-night text waits for Monday 08:00, across the spring-forward Sunday', () => {
    const record = decide(ctx({ now: at('2026-03-08T03:00:00Z') })); // Sat 22:00 EST
    assert.equal(record.decision.verdict, 'defer');
    assert.equal(record.decision.verdict === 'defer' && record.decision.rule, 'quiet-hours');
    assert.equal(untilOf(record.decision), '2026-03-09T12:00:00.000Z'); // Mon 08:00 EDT
  });

  it('a text the evening before Thanksgiving waits for Friday 08:00', () => {
    const record = decide(ctx({ now: at('2026-11-26T03:00:00Z') })); // Wed 22:00 EST
    assert.equal(untilOf(record.decision), '2026-11-27T13:00:00.000Z');
  });

  it('a cap that lifts at night waits on until the morning', () => {
    const seven = { ...policy, noSendDays: [], caps: { perBalancePer7Days: 1, perChannelPerDay: 1, perChannelPer7Days: {} } };
    const record = decide(ctx({ policy: seven, now: at('2026-03-10T15:00:00Z'), b: { attempts: [attempt('a', 'email', '2026-03-04T04:00:00Z')] } })); // 23:00 EST
    assert.equal(record.decision.verdict === 'defer' && record.decision.rule, 'frequency-cap');
    assert.equal(untilOf(record.decision), '2026-03-11T12:00:00.000Z'); // 08:00 EDT
  });

  it('property: a deferred send is due later than now, and at that instant nothing defers it again', () => {
    const zones = ['America/New_York', 'America/Los_Angeles', 'Pacific/Honolulu', 'America/Phoenix'];
    const instant = fc.date({ min: at('2026-01-01T00:00:00Z'), max: at('2027-01-01T00:00:00Z'), noInvalidDate: true });
    const attemptArb = fc.record({ hoursBefore: fc.integer({ min: 0, max: 24 * 10 }), channel: fc.constantFrom('sms' as const, 'email' as const, 'letter' as const) });
    fc.assert(
      fc.property(instant, fc.constantFrom(...zones), fc.array(attemptArb, { maxLength: 8 }), fc.constantFrom('sms' as const, 'email' as const), fc.integer({ min: 1, max: 7 }), (now, timeZone, past, channel, cap) => {
        const attempts = past.map((p, i) => attempt(`s${i}`, p.channel, new Date(now.getTime() - p.hoursBefore * 3600_000).toISOString()));
        const p = { ...policy, caps: { perBalancePer7Days: cap, perChannelPerDay: 1, perChannelPer7Days: {} } };
        const context = ctx({ policy: p, now, channel, b: { timeZone, attempts } });
        const { decision } = decide(context);
        if (decision.verdict !== 'defer') return;
        assert.ok(decision.until.getTime() > now.getTime());
        const later = decide({ ...context, now: decision.until });
        assert.notEqual(later.decision.verdict, 'defer', JSON.stringify(later.decision));
        const local = DateTime.fromJSDate(decision.until, { zone: timeZone });
        assert.ok(local.hour >= 8 && local.hour < 21, local.toISO()!);
        assert.notEqual(local.weekday, 7, 'not a Sunday');
      }),
      { numRuns: 1000 },
    );
  });
});
