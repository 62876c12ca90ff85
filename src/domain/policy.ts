/**
 * Outreach policies and cadence evaluation, in the manner of Kill Bill's overdue states: escalation is data
 * (steps with a day offset from the first statement, channels, a template and entry conditions), and the
 * question "which step is next for this balance?" is answered afresh every time from three things only —
 * the current policy, the balance as it is now, and the history of attempts. Nothing about the cadence is
 * stored besides the attempts, so editing a policy takes effect from each balance's next step on.
 *
 * Pure: no I/O, time passed in. Quiet hours, caps, consent and the other compliance rules live in
 * `outreach-guards.ts`; this module only says what is due.
 */
import { DateTime, IANAZone } from 'luxon';
import { CHANNELS, type Channel, type Language, type OutreachAttempt, type OutreachBalance } from './outreach.ts';

/** Local times (HH:MM) between which nothing is sent; `start` > `end` crosses midnight (21:00 → 08:00). */
export interface QuietHours {
  start: string;
  end: string;
}

/** Entry conditions of a step: the step applies to a balance only when every one holds. */
export interface StepConditions {
  /** Balance statuses the step applies to (normally `["open"]`). */
  statuses?: string[];
  minimumAmountCents?: number;
  /** The debt is at least this many days old. */
  minimumAgeDays?: number;
  noPlan?: boolean;
  noHold?: boolean;
  /** Send only through channels the patient has consented to (texts always need consent regardless). */
  consent?: boolean;
}

/** One step of a cadence. */
export interface PolicyStep {
  id: string;
  /** Days after the first statement (local calendar days in the recipient's time zone). */
  dayOffset: number;
  channels: Channel[];
  template: string;
  conditions: StepConditions;
  /** The final notice IRS 501(r) requires at least 30 days before an agency hand-off. */
  finalNotice: boolean;
}

/** Attempt limits. */
export interface PolicyCaps {
  /** Most attempts about one balance, all channels together, in any rolling 7 days. */
  perBalancePer7Days: number;
  /** Most attempts on one channel on one local calendar day (1: never two texts in a day). */
  perChannelPerDay: number;
  /** Optional tighter rolling-7-day limits for single channels. */
  perChannelPer7Days: Partial<Record<Channel, number>>;
}

/** A parsed outreach policy. */
export interface Policy {
  name: string;
  /** Zone for quiet hours and no-send days when the recipient's own is unknown (else the practice's). */
  timeZone?: string;
  /** The practice's language, used when the patient's preference is unknown or has no templates. */
  language: Language;
  quietHours: QuietHours;
  /** Sorted by day offset (stable: steps on the same day keep file order). */
  steps: PolicyStep[];
  caps: PolicyCaps;
  /** `sunday`…`saturday`, `YYYY-MM-DD`, or `holidays:US` / `holidays:US-CA`. */
  noSendDays: string[];
  nonprofit501r: boolean;
}

/** A policy document that does not describe a usable policy (beyond what the JSON Schema checks). */
export class PolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyError';
  }
}

/**
 * Turns a policy document (already validated against `policies/policy.schema.json` by the data-file loader)
 * into a {@link Policy}: steps sorted by day offset, optional fields defaulted.
 * @throws PolicyError when a value the schema cannot check is wrong (an unknown time zone, a repeated step id).
 */
export function parsePolicy(document: Record<string, unknown>): Policy {
  const doc = document as {
    name: string; timeZone?: string; language?: Language; quietHours: QuietHours; noSendDays: string[]; nonprofit501r: boolean;
    caps: { perBalancePer7Days: number; perChannelPerDay: number; perChannelPer7Days?: Partial<Record<Channel, number>> };
    steps: { id: string; dayOffset: number; channels: Channel[]; template: string; conditions?: StepConditions; finalNotice?: boolean }[];
  };
  if (doc.timeZone !== undefined && !isValidZone(doc.timeZone)) {
    throw new PolicyError(`policy "${doc.name}": timeZone "${doc.timeZone}" is not an IANA time zone`);
  }
  const ids = new Set<string>();
  for (const step of doc.steps) {
    if (ids.has(step.id)) throw new PolicyError(`policy "${doc.name}": step id "${step.id}" is used twice`);
    ids.add(step.id);
    for (const channel of step.channels) {
      if (!CHANNELS.includes(channel)) throw new PolicyError(`policy "${doc.name}": step "${step.id}" has unknown channel "${channel}"`);
    }
  }
  if (doc.nonprofit501r) {
    // IRS 501(r): an agency hand-off needs a final notice before it (the nonprofit-501r guard then holds it until
    // day 120 and 30 days after the notice); a cadence with no final notice before its agency step could never hand over.
    for (const step of doc.steps.filter((s) => s.channels.includes('agency'))) {
      if (!doc.steps.some((s) => s.finalNotice === true && s.dayOffset <= step.dayOffset)) {
        throw new PolicyError(
          `policy "${doc.name}": nonprofit501r is on but agency step "${step.id}" has no final notice step (finalNotice: true) on or before its day ${step.dayOffset}`,
        );
      }
    }
  }
  const steps = doc.steps
    .map((step, index) => ({ index, step: { id: step.id, dayOffset: step.dayOffset, channels: [...step.channels], template: step.template, conditions: { ...step.conditions }, finalNotice: step.finalNotice === true } }))
    .sort((a, b) => a.step.dayOffset - b.step.dayOffset || a.index - b.index)
    .map(({ step }) => step);
  return {
    name: doc.name,
    ...(doc.timeZone === undefined ? {} : { timeZone: doc.timeZone }),
    language: doc.language ?? 'en',
    quietHours: { ...doc.quietHours },
    steps,
    caps: { perBalancePer7Days: doc.caps.perBalancePer7Days, perChannelPerDay: doc.caps.perChannelPerDay, perChannelPer7Days: { ...doc.caps.perChannelPer7Days } },
    noSendDays: [...doc.noSendDays],
    nonprofit501r: doc.nonprofit501r,
  };
}

/**
 * The time zone a recipient's local rules (quiet hours, no-send days, "one per day") are judged in:
 * the balance's own valid IANA zone, else the policy's, else the practice's.
 */
export function recipientTimeZone(balance: Pick<OutreachBalance, 'timeZone'>, policy: Pick<Policy, 'timeZone'>, practiceTimeZone: string): string {
  for (const zone of [balance.timeZone, policy.timeZone, practiceTimeZone]) {
    if (zone !== undefined && isValidZone(zone)) return zone;
  }
  return 'UTC';
}

// Luxon builds an Intl.DateTimeFormat on every validity check; planning a million balances asks about the same
// few zones millions of times, so the answer is remembered (zones do not become valid or invalid while running).
const zoneValidity = new Map<string, boolean>();
function isValidZone(zone: string): boolean {
  let valid = zoneValidity.get(zone);
  if (valid === undefined) {
    valid = IANAZone.isValidZone(zone);
    if (zoneValidity.size < 1000) zoneValidity.set(zone, valid);
  }
  return valid;
}

/** Why a balance gets no outreach at all right now, or null when it is open with something due. */
export function balanceStopReason(balance: Pick<OutreachBalance, 'status' | 'hasPlan' | 'hasHold' | 'amountDueCents'>): string | null {
  const byStatus: Record<string, string> = {
    paid: 'the balance is paid',
    in_plan: 'the balance is on a payment plan',
    on_hold: 'the balance is on hold',
    disputed: 'the balance is disputed',
    sent_to_agency: 'the balance was sent to an agency',
    written_off: 'the balance was written off',
  };
  if (balance.status !== 'open') return byStatus[balance.status] ?? `the balance status is ${balance.status}`;
  if (balance.hasPlan) return 'the balance is on a payment plan';
  if (balance.hasHold) return 'the balance is on hold';
  if (balance.amountDueCents <= 0) return 'nothing is due';
  return null;
}

/**
 * The entry conditions of a step that this balance fails, as reasons (empty when the step applies).
 * The `consent` condition is per channel and is judged by the guards, not here.
 */
export function stepConditionFailures(step: PolicyStep, balance: OutreachBalance): string[] {
  const c = step.conditions;
  const failures: string[] = [];
  if (c.statuses !== undefined && !c.statuses.includes(balance.status)) failures.push(`status ${balance.status} is not one of ${c.statuses.join(', ')}`);
  if (c.minimumAmountCents !== undefined && balance.amountDueCents < c.minimumAmountCents) {
    failures.push(`amount due ${balance.amountDueCents} cents is below the step minimum of ${c.minimumAmountCents}`);
  }
  if (c.minimumAgeDays !== undefined && balance.ageDays < c.minimumAgeDays) failures.push(`the debt is ${balance.ageDays} days old, under ${c.minimumAgeDays}`);
  if (c.noPlan === true && balance.hasPlan) failures.push('the balance is on a payment plan');
  if (c.noHold === true && balance.hasHold) failures.push('the balance is on hold');
  return failures;
}

// Planning a million balances asks for the same few hundred (date, offset, zone) instants millions of times, and
// luxon's zone arithmetic is the costliest part of planning: the answers are remembered (they never change).
const dueAtCache = new Map<string, number>();

/** The instant a step becomes due: the start of day `dayOffset` after the first statement, in the recipient's zone. */
export function stepDueAt(firstStatementDate: string, dayOffset: number, timeZone: string): Date {
  const key = `${firstStatementDate} ${dayOffset} ${timeZone}`;
  let at = dueAtCache.get(key);
  if (at === undefined) {
    at = DateTime.fromISO(firstStatementDate, { zone: timeZone }).plus({ days: dayOffset }).startOf('day').toMillis();
    if (dueAtCache.size >= 100_000) dueAtCache.clear();
    dueAtCache.set(key, at);
  }
  return new Date(at);
}

/** The local calendar day number of an instant, counted from the first statement date (day 0). */
export function cadenceDay(firstStatementDate: string, at: Date, timeZone: string): number {
  const start = DateTime.fromISO(firstStatementDate, { zone: timeZone });
  const day = DateTime.fromJSDate(at, { zone: timeZone }).startOf('day');
  return Math.round(day.diff(start, 'days').days);
}

/** A step passed over by this evaluation, and why. */
export interface SkippedStep {
  stepId: string;
  reason: string;
}

/** What the cadence says for a balance at an instant. */
export type CadenceEvaluation =
  /** Outreach is stopped: paid, plan, hold, dispute, agency, write-off, nothing due. */
  | { kind: 'stopped'; rule: 'balance-status'; reason: string }
  /** Every step is done or passed over; nothing more will be sent. */
  | { kind: 'finished'; skipped: SkippedStep[] }
  /** The next step is not due yet. */
  | { kind: 'waiting'; step: PolicyStep; dueAt: Date; skipped: SkippedStep[] }
  /** A step is due: send it on `channels` (those of the step not yet attempted), each through the guards. */
  | { kind: 'due'; step: PolicyStep; channels: Channel[]; dueAt: Date; skipped: SkippedStep[] };

/**
 * Which step is next for a balance, and on which channels.
 *
 * - Progress is the furthest cadence day any earlier attempt reached: the day offset of its step in the
 *   *current* policy, or, if that step no longer exists, the local day the attempt was made.
 * - Candidates are steps at or after that day with channels not yet attempted.
 * - Of the candidates already due, the latest whose entry conditions hold is chosen (a balance first seen on
 *   day 40 gets the day-30 letter, not five stale reminders); earlier ones are superseded, later ineligible
 *   ones are skipped, each with a reason. In 501(r) mode an unsent final notice is never superseded by an
 *   agency step.
 * - If none is due, the first future candidate is what the balance is waiting for.
 */
export function evaluateCadence(policy: Policy, balance: OutreachBalance, now: Date, practiceTimeZone: string): CadenceEvaluation {
  const stop = balanceStopReason(balance);
  if (stop !== null) return { kind: 'stopped', rule: 'balance-status', reason: stop };
  const zone = recipientTimeZone(balance, policy, practiceTimeZone);
  const progress = progressDay(policy, balance.attempts, balance.firstStatementDate, zone);
  const candidates = policy.steps
    .map((step) => ({ step, channels: pendingChannels(step, balance.attempts), dueAt: stepDueAt(balance.firstStatementDate, step.dayOffset, zone) }))
    .filter((c) => c.step.dayOffset >= progress && c.channels.length > 0);
  const due = candidates.filter((c) => c.dueAt.getTime() <= now.getTime());
  const skipped: SkippedStep[] = [];
  let chosen: (typeof candidates)[number] | undefined;
  for (let i = due.length - 1; i >= 0; i--) {
    const candidate = due[i]!;
    const failures = stepConditionFailures(candidate.step, balance);
    if (failures.length > 0) {
      skipped.push({ stepId: candidate.step.id, reason: failures.join('; ') });
      continue;
    }
    chosen = candidate;
    break;
  }
  if (chosen !== undefined && policy.nonprofit501r && chosen.step.channels.includes('agency') && !finalNoticeSent(balance.attempts, policy)) {
    const notice = due.find((c) => c.step.finalNotice && c.step.dayOffset <= chosen!.step.dayOffset && stepConditionFailures(c.step, balance).length === 0);
    if (notice !== undefined) {
      skipped.push({ stepId: chosen.step.id, reason: 'IRS 501(r): the final notice goes first' });
      chosen = notice;
    }
  }
  if (chosen !== undefined) {
    for (const c of due) {
      if (c.step.dayOffset < chosen.step.dayOffset || (c.step.dayOffset === chosen.step.dayOffset && c !== chosen && due.indexOf(c) < due.indexOf(chosen))) {
        if (!skipped.some((s) => s.stepId === c.step.id)) skipped.push({ stepId: c.step.id, reason: `superseded by the later step ${chosen.step.id}` });
      }
    }
    return { kind: 'due', step: chosen.step, channels: chosen.channels, dueAt: chosen.dueAt, skipped: orderSkips(skipped, policy) };
  }
  const next = candidates.find((c) => c.dueAt.getTime() > now.getTime());
  if (next !== undefined) return { kind: 'waiting', step: next.step, dueAt: next.dueAt, skipped: orderSkips(skipped, policy) };
  return { kind: 'finished', skipped: orderSkips(skipped, policy) };
}

function orderSkips(skipped: SkippedStep[], policy: Policy): SkippedStep[] {
  const order = new Map(policy.steps.map((s, i) => [s.id, i]));
  return [...skipped].sort((a, b) => (order.get(a.stepId) ?? 0) - (order.get(b.stepId) ?? 0));
}

function progressDay(policy: Policy, attempts: OutreachAttempt[], firstStatementDate: string, zone: string): number {
  let progress = 0;
  for (const attempt of attempts) {
    const step = policy.steps.find((s) => s.id === attempt.stepId);
    progress = Math.max(progress, step?.dayOffset ?? cadenceDay(firstStatementDate, attempt.at, zone));
  }
  return progress;
}

function pendingChannels(step: PolicyStep, attempts: OutreachAttempt[]): Channel[] {
  return step.channels.filter((channel) => !attempts.some((a) => a.stepId === step.id && a.channel === channel));
}

/** Whether a final notice was sent: an attempt flagged as one, or of a step the current policy marks as one. */
export function finalNoticeSent(attempts: OutreachAttempt[], policy: Policy): OutreachAttempt | undefined {
  const finalIds = new Set(policy.steps.filter((s) => s.finalNotice).map((s) => s.id));
  return attempts
    .filter((a) => a.outcome === 'sent' && (a.finalNotice === true || finalIds.has(a.stepId)))
    .sort((a, b) => a.at.getTime() - b.at.getTime())[0];
}
