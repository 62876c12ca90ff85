/**
 * Compliance guards: small, separately tested rules that each look at one planned send (a step on a channel
 * for a balance, at an instant) and say allow, suppress (never send this; with the rule and why) or defer
 * (not now; the earliest instant it may go, with the rule and why). {@link decide} runs them all and keeps
 * every verdict, so the timeline can show exactly why a message went, waited or did not go.
 *
 * Reasons carry rule names, dates, counts and time zones — never a phone number, email address or name.
 * Pure: the instant is passed in; no I/O.
 */
import { DateTime } from 'luxon';
import { localDate as dateIn } from './clock.ts';
import { builtInHolidays, type HolidayResolver } from './outreach-holidays.ts';
import { isMessageChannel, type Channel, type OutreachBalance } from './outreach.ts';
import { balanceStopReason, cadenceDay, finalNoticeSent, recipientTimeZone, stepConditionFailures, type Policy, type PolicyStep, type QuietHours } from './policy.ts';

/** The names of the rules, as timelines and metrics show them. */
export const GUARD_RULES = [
  'balance-status',
  'step-conditions',
  'destination',
  'sms-consent',
  'channel-consent',
  'opt-out',
  'undeliverable',
  'nonprofit-501r',
  'no-send-day',
  'quiet-hours',
  'frequency-cap',
  'channel-daily-cap',
] as const;
export type GuardRule = (typeof GUARD_RULES)[number];

/** One rule's verdict on a planned send. */
export type GuardVerdict =
  | { rule: GuardRule; verdict: 'allow'; note?: string }
  | { rule: GuardRule; verdict: 'suppress'; reason: string }
  | { rule: GuardRule; verdict: 'defer'; until: Date; reason: string };

/** The outcome of all the rules. */
export type Decision =
  | { verdict: 'allow' }
  | { verdict: 'suppress'; rule: GuardRule; reason: string }
  | { verdict: 'defer'; until: Date; rule: GuardRule; reason: string };

/** A planned send, as the guards see it. */
export interface SendContext {
  policy: Policy;
  balance: OutreachBalance;
  step: PolicyStep;
  channel: Channel;
  /** The instant the send would happen (the injected clock's now). */
  now: Date;
  /** The practice's IANA zone, the last fallback for the recipient's. */
  practiceTimeZone: string;
  /** Public-holiday calendars for `holidays:XX` no-send days; defaults to the built-in US federal list. */
  holidays?: HolidayResolver;
}

/** A guard: one rule. */
export type Guard = (context: SendContext) => GuardVerdict;

const DAY_MS = 86_400_000;
const WEEK_MS = 7 * DAY_MS;
const allow = (rule: GuardRule, note?: string): GuardVerdict => (note === undefined ? { rule, verdict: 'allow' } : { rule, verdict: 'allow', note });
const zoneOf = (c: SendContext) => recipientTimeZone(c.balance, c.policy, c.practiceTimeZone);
/** Quiet hours and no-send days apply to messages that reach someone at once: texts and emails. */
const isInstant = (channel: Channel) => channel === 'sms' || channel === 'email';

/** Paid, on a plan, on hold, disputed, at an agency, written off or nothing due: outreach stops. */
export const balanceStatusGuard: Guard = ({ balance }) => {
  const reason = balanceStopReason(balance);
  return reason === null ? allow('balance-status') : { rule: 'balance-status', verdict: 'suppress', reason };
};

/** The step's entry conditions still hold at send time (the balance may have changed since planning). */
export const stepConditionsGuard: Guard = ({ step, balance }) => {
  const failures = stepConditionFailures(step, balance);
  return failures.length === 0 ? allow('step-conditions') : { rule: 'step-conditions', verdict: 'suppress', reason: `step ${step.id}: ${failures.join('; ')}` };
};

/** There is somewhere to send it: a phone for texts, an email address, a mailing address for letters. */
export const destinationGuard: Guard = ({ balance, channel }) => {
  const d = balance.destinations;
  const missing = channel === 'sms' ? !d.sms : channel === 'email' ? !d.email : channel === 'letter' ? d.letter !== true : false;
  return missing ? { rule: 'destination', verdict: 'suppress', reason: `no ${channel === 'sms' ? 'mobile number' : channel === 'email' ? 'email address' : 'mailing address'} on file` } : allow('destination');
};

/** The consent in force for a channel and address at an instant: recorded with a source and a time, not revoked. */
export function consentInForce(balance: OutreachBalance, channel: Channel, now: Date) {
  const address = channel === 'sms' ? balance.destinations.sms : channel === 'email' ? balance.destinations.email : undefined;
  return balance.consents.find(
    (c) =>
      c.channel === channel &&
      (c.address === undefined || c.address === address) &&
      c.source.trim() !== '' &&
      c.at.getTime() <= now.getTime() &&
      (c.revokedAt === undefined || c.revokedAt.getTime() > now.getTime()),
  );
}

/** Texts need recorded consent (TCPA): a consent record with a source and a time, for this number, not revoked. */
export const smsConsentGuard: Guard = ({ balance, channel, now }) => {
  if (channel !== 'sms') return allow('sms-consent', 'not a text');
  const consent = consentInForce(balance, 'sms', now);
  return consent === undefined
    ? { rule: 'sms-consent', verdict: 'suppress', reason: 'no recorded consent (source and time) to text this number' }
    : allow('sms-consent', `consent from ${consent.source} on ${consent.at.toISOString()}`);
};

/** A step with the `consent` condition goes only through channels the patient consented to. */
export const channelConsentGuard: Guard = ({ step, balance, channel, now }) => {
  if (step.conditions.consent !== true || !isMessageChannel(channel) || channel === 'sms') return allow('channel-consent');
  return consentInForce(balance, channel, now) === undefined
    ? { rule: 'channel-consent', verdict: 'suppress', reason: `step ${step.id} requires consent and there is none for ${channel}` }
    : allow('channel-consent');
};

/** The number or address (or the whole channel) is opted out, and has not opted back in. */
export const optOutGuard: Guard = ({ balance, channel, now }) => {
  if (!isMessageChannel(channel)) return allow('opt-out');
  const address = channel === 'sms' ? balance.destinations.sms : channel === 'email' ? balance.destinations.email : undefined;
  const active = balance.optOuts.find(
    (o) =>
      o.channel === channel &&
      (o.address === undefined || o.address === address) &&
      o.at.getTime() <= now.getTime() &&
      (o.optedBackInAt === undefined || o.optedBackInAt.getTime() <= o.at.getTime() || o.optedBackInAt.getTime() > now.getTime()),
  );
  return active === undefined ? allow('opt-out') : { rule: 'opt-out', verdict: 'suppress', reason: `opted out of ${channel} on ${active.at.toISOString()} (${active.source})` };
};

/** The address on file for the channel was refused by the provider as undeliverable: the step's other channels go instead. */
export const undeliverableGuard: Guard = ({ balance, channel }) => {
  if (!isMessageChannel(channel) || !balance.undeliverable?.includes(channel)) return allow('undeliverable');
  return { rule: 'undeliverable', verdict: 'suppress', reason: `the ${channel === 'sms' ? 'mobile number' : channel === 'email' ? 'email address' : 'mailing address'} on file was refused as undeliverable` };
};

/**
 * IRS 501(r) (nonprofit hospital facilities): no agency hand-off (an extraordinary collection action) before
 * 120 days after the first statement, and only 30 days or more after a final notice was sent.
 */
export const nonprofit501rGuard: Guard = (context) => {
  const { policy, balance, channel } = context;
  if (!policy.nonprofit501r || channel !== 'agency') return allow('nonprofit-501r');
  const zone = zoneOf(context);
  const day120 = DateTime.fromISO(balance.firstStatementDate, { zone }).plus({ days: 120 }).startOf('day').toJSDate();
  const notice = finalNoticeSent(balance.attempts, policy);
  if (notice === undefined) return { rule: 'nonprofit-501r', verdict: 'suppress', reason: 'IRS 501(r): no final notice has been sent, so no agency hand-off' };
  const noticePlus30 = new Date(notice.at.getTime() + 30 * DAY_MS);
  const until = new Date(Math.max(day120.getTime(), noticePlus30.getTime()));
  if (until.getTime() <= context.now.getTime()) return allow('nonprofit-501r');
  const day = cadenceDay(balance.firstStatementDate, context.now, zone);
  return {
    rule: 'nonprofit-501r',
    verdict: 'defer',
    until,
    reason: `IRS 501(r): agency hand-off waits until day 120 after the first statement (now day ${day}) and 30 days after the final notice of ${notice.at.toISOString()}`,
  };
};

/** Optional no-send days (weekdays, dates, public holidays) in the recipient's local calendar. */
export const noSendDayGuard: Guard = (context) => {
  const { policy, channel, now } = context;
  if (!isInstant(channel) || policy.noSendDays.length === 0) return allow('no-send-day');
  const zone = zoneOf(context);
  if (context.holidays !== undefined && context.holidays !== builtInHolidays) return noSendDayVerdict(policy.noSendDays, now, zone, context.holidays);
  // With the built-in calendars the verdict depends only on the days, the instant and the zone: once per run and zone.
  const key = `${policy.noSendDays.join(',')} ${now.getTime()} ${zone}`;
  let verdict = noSendVerdicts.get(key);
  if (verdict === undefined) remember(noSendVerdicts, key, (verdict = noSendDayVerdict(policy.noSendDays, now, zone, builtInHolidays)));
  return { ...verdict };
};

const noSendVerdicts = new Map<string, GuardVerdict>();

function noSendDayVerdict(noSendDays: string[], now: Date, zone: string, holidays: HolidayResolver): GuardVerdict {
  const today = DateTime.fromJSDate(now, { zone });
  const unknown = noSendDays.filter((d) => d.startsWith('holidays:') && holidays(d.slice(9), today.toISODate()!) === undefined);
  const note = unknown.length > 0 ? `unknown holiday calendar ${unknown.join(', ')} not applied` : undefined;
  const why = noSendReason(noSendDays, today, holidays);
  if (why === null) return allow('no-send-day', note);
  let day = today.startOf('day');
  for (let i = 0; i < 366 && noSendReason(noSendDays, day, holidays) !== null; i++) day = day.plus({ days: 1 }).startOf('day');
  return { rule: 'no-send-day', verdict: 'defer', until: day.toJSDate(), reason: `${today.toISODate()} in ${zone} is a no-send day (${why})` };
}

const WEEKDAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];

function noSendReason(days: string[], local: DateTime, holidays: HolidayResolver): string | null {
  const date = local.toISODate()!;
  for (const entry of days) {
    if (entry === WEEKDAYS[local.weekday - 1]) return entry;
    if (entry === date) return 'listed date';
    if (entry.startsWith('holidays:') && holidays(entry.slice(9), date) === true) return `public holiday, ${entry}`;
  }
  return null;
}

function minutesOf(time: string): number {
  return Number(time.slice(0, 2)) * 60 + Number(time.slice(3, 5));
}

/** Whether a local minute of the day falls inside the quiet (no-send) window. */
export function isQuietMinute(quiet: QuietHours, minute: number): boolean {
  const start = minutesOf(quiet.start);
  const end = minutesOf(quiet.end);
  if (start === end) return false;
  return start < end ? minute >= start && minute < end : minute >= start || minute < end;
}

const minuteOfDay = (local: DateTime) => local.hour * 60 + local.minute;

/**
 * The earliest instant at or after `now` outside quiet hours in `zone`: `now` itself when it is allowed,
 * else the next local `quiet.end` (on a DST change day, luxon moves a non-existent local time forward).
 */
export function nextAllowedInstant(quiet: QuietHours, now: Date, zone: string): Date {
  const { until } = quietAnswer(quiet, now, zone);
  return until === now.getTime() ? now : new Date(until);
}

/** Quiet hours for one window, instant and zone: when sending may start, and why it waits (null when it need not). */
interface QuietAnswer {
  until: number;
  reason: string | null;
}

/**
 * Planning asks for every balance at the run's one instant (and defers every text of a run made at night for the
 * same reason): the answer is worked out once per window, instant and zone.
 */
function quietAnswer(quiet: QuietHours, now: Date, zone: string): QuietAnswer {
  const key = `${quiet.start} ${quiet.end} ${now.getTime()} ${zone}`;
  let answer = quietAnswers.get(key);
  if (answer === undefined) {
    const until = findAllowedInstant(quiet, now, zone);
    const reason = until.getTime() === now.getTime()
      ? null
      : `${DateTime.fromJSDate(now, { zone }).toFormat('HH:mm')} in ${zone} is inside quiet hours ${quiet.start}–${quiet.end}; waits until ${DateTime.fromJSDate(until, { zone }).toFormat('yyyy-MM-dd HH:mm ZZZZ')}`;
    remember(quietAnswers, key, (answer = { until: until.getTime(), reason }));
  }
  return answer;
}

const quietAnswers = new Map<string, QuietAnswer>();
const localDates = new Map<string, string>();

function remember<V>(cache: Map<string, V>, key: string, value: V): void {
  if (cache.size >= 100_000) cache.clear();
  cache.set(key, value);
}

/** The local calendar date (`YYYY-MM-DD`) of an instant in a zone, remembered (attempts of one run share their instant). */
function localDate(at: Date, zone: string): string {
  const key = `${at.getTime()} ${zone}`;
  let date = localDates.get(key);
  if (date === undefined) {
    date = dateIn(at, zone);
    remember(localDates, key, date);
  }
  return date;
}

function findAllowedInstant(quiet: QuietHours, now: Date, zone: string): Date {
  let at = now;
  // Normally one step; a second only when a DST gap swallowed the whole allowed window (Santiago, 00:00–00:01).
  for (let i = 0; i < 4; i++) {
    const local = DateTime.fromJSDate(at, { zone });
    if (!isQuietMinute(quiet, minuteOfDay(local))) return at;
    at = windowOpening(quiet, local);
  }
  return at;
}

function windowOpening(quiet: QuietHours, local: DateTime): Date {
  const end = minutesOf(quiet.end);
  const atEnd = (day: DateTime) => day.startOf('day').set({ hour: Math.floor(end / 60), minute: end % 60, second: 0, millisecond: 0 });
  let candidate = atEnd(local);
  if (candidate.toMillis() <= local.toMillis()) candidate = atEnd(local.startOf('day').plus({ days: 1 }));
  if (minuteOfDay(candidate) !== end) {
    // The end of quiet hours fell in a DST gap (02:30 on a spring-forward night): luxon moved it past the gap;
    // the window really opens at the first instant after the gap, so walk back to it.
    while (candidate.minus({ minutes: 1 }).toMillis() > local.toMillis() && !isQuietMinute(quiet, minuteOfDay(candidate.minus({ minutes: 1 })))) {
      candidate = candidate.minus({ minutes: 1 });
    }
  }
  return candidate.toJSDate();
}

/** Texts and emails go only outside quiet hours (by default 08:00–21:00) in the recipient's local time. */
export const quietHoursGuard: Guard = (context) => {
  const { policy, channel, now } = context;
  if (!isInstant(channel)) return allow('quiet-hours', `${channel} is not subject to quiet hours`);
  const zone = zoneOf(context);
  const { until, reason } = quietAnswer(policy.quietHours, now, zone);
  if (reason === null) return allow('quiet-hours');
  return { rule: 'quiet-hours', verdict: 'defer', until: new Date(until), reason };
};

/** Attempts that count against caps: sent or failed messages (not suppressed ones, not the agency hand-off). */
function countedAttempts(balance: OutreachBalance, now: Date) {
  return balance.attempts.filter((a) => a.outcome !== 'suppressed' && isMessageChannel(a.channel) && a.at.getTime() <= now.getTime());
}

/** The instant the oldest attempts leave the rolling window so that fewer than `cap` remain; null if already fewer. */
function rollingWindowFree(times: number[], cap: number, now: Date): Date | null {
  const inWindow = times.filter((t) => t > now.getTime() - WEEK_MS).sort((a, b) => a - b);
  if (inWindow.length < cap) return null;
  return new Date(inWindow[inWindow.length - cap]! + WEEK_MS);
}

/**
 * At most `caps.perBalancePer7Days` attempts about a balance in any rolling 7 days (all message channels
 * together), and at most `caps.perChannelPer7Days[channel]` on one channel; the send waits for the window.
 */
export const frequencyCapGuard: Guard = ({ policy, balance, channel, now }) => {
  if (!isMessageChannel(channel)) return allow('frequency-cap');
  const attempts = countedAttempts(balance, now);
  const overall = rollingWindowFree(attempts.map((a) => a.at.getTime()), policy.caps.perBalancePer7Days, now);
  const channelCap = policy.caps.perChannelPer7Days[channel];
  const perChannel = channelCap === undefined ? null : rollingWindowFree(attempts.filter((a) => a.channel === channel).map((a) => a.at.getTime()), channelCap, now);
  if (overall === null && perChannel === null) return allow('frequency-cap');
  const until = new Date(Math.max(overall?.getTime() ?? 0, perChannel?.getTime() ?? 0));
  const what = overall !== null && (perChannel === null || overall.getTime() >= perChannel.getTime())
    ? `${policy.caps.perBalancePer7Days} attempts about this balance`
    : `${channelCap} ${channel} attempts`;
  return { rule: 'frequency-cap', verdict: 'defer', until, reason: `already ${what} in the last 7 days` };
};

/** Never more than `caps.perChannelPerDay` (normally one) attempts on a channel on one local calendar day. */
export const channelDailyCapGuard: Guard = (context) => {
  const { policy, balance, channel, now } = context;
  if (!isMessageChannel(channel)) return allow('channel-daily-cap');
  const zone = zoneOf(context);
  const today = localDate(now, zone);
  const sameDay = countedAttempts(balance, now).filter((a) => a.channel === channel && localDate(a.at, zone) === today);
  if (sameDay.length < policy.caps.perChannelPerDay) return allow('channel-daily-cap');
  const until = DateTime.fromJSDate(now, { zone }).startOf('day').plus({ days: 1 }).startOf('day').toJSDate();
  return { rule: 'channel-daily-cap', verdict: 'defer', until, reason: `already ${sameDay.length} ${channel} attempt(s) on ${today} in ${zone}` };
};

/** Every guard, in the order {@link decide} consults them: suppressions first, then the waits. */
export const GUARDS: readonly Guard[] = [
  balanceStatusGuard,
  stepConditionsGuard,
  destinationGuard,
  smsConsentGuard,
  channelConsentGuard,
  optOutGuard,
  undeliverableGuard,
  nonprofit501rGuard,
  noSendDayGuard,
  quietHoursGuard,
  frequencyCapGuard,
  channelDailyCapGuard,
];

/** A decision with the verdict of every rule at the instant it was taken. */
export interface DecisionRecord {
  decision: Decision;
  /** One verdict per rule, in {@link GUARD_RULES} order, evaluated at `decidedAt`. */
  verdicts: GuardVerdict[];
  decidedAt: Date;
  /** The zone local rules were judged in. */
  timeZone: string;
}

/**
 * Runs every guard on a planned send. The decision is the first blocking verdict (suppressions come before
 * waits in the rule order). A wait's `until` is the earliest instant at which *no* waiting rule objects —
 * found by re-running the guards at each proposed instant until they agree (a Saturday-night text under a
 * Sunday rule waits for Monday 08:00, not Sunday 08:00) — and is always later than `now`.
 */
export function decide(context: SendContext): DecisionRecord {
  const verdicts = GUARDS.map((guard) => guard(context));
  const timeZone = zoneOf(context);
  const first = verdicts.find((v) => v.verdict !== 'allow');
  const record = (decision: Decision): DecisionRecord => ({ decision, verdicts, decidedAt: context.now, timeZone });
  if (first === undefined) return record({ verdict: 'allow' });
  if (first.verdict === 'suppress') return record({ verdict: 'suppress', rule: first.rule, reason: first.reason });
  let until = first.verdict === 'defer' ? first.until : context.now;
  for (let i = 0; i < 100; i++) {
    const later = GUARDS.map((guard) => guard({ ...context, now: until })).filter((v): v is Extract<GuardVerdict, { verdict: 'defer' }> => v.verdict === 'defer');
    if (later.length === 0) break;
    until = new Date(Math.max(...later.map((v) => v.until.getTime())));
  }
  return record({ verdict: 'defer', until, rule: first.rule, reason: first.reason });
}
