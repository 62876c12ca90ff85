/**
 * Planning one balance: the cadence says which step is due, the guards decide each of its channels.
 *
 * This is the pure core the daily planning job and the per-attempt job call (both with the injected clock's
 * now). What the caller does with each planned send:
 * - `allow`: send now (for `agency`, mark the balance agency-ready), then record a `sent` or `failed` attempt;
 * - `defer`: schedule the attempt job at `until` and plan again then (nothing is recorded as an attempt);
 * - `suppress`: record a `suppressed` attempt with the rule and reason so the cadence moves on — except for
 *   `balance-status`, which is shown in the timeline but not recorded as an attempt, so a hold that is lifted
 *   resumes the cadence where it stopped.
 * Every planned send carries the verdict of every rule for the timeline.
 */
import { decide, type DecisionRecord } from '../domain/outreach-guards.ts';
import type { HolidayResolver } from '../domain/outreach-holidays.ts';
import { chooseLanguage, type Channel, type Language, type OutreachBalance } from '../domain/outreach.ts';
import { evaluateCadence, type CadenceEvaluation, type Policy, type PolicyStep } from '../domain/policy.ts';

/** One channel of the due step, decided. */
export interface PlannedSend {
  step: PolicyStep;
  channel: Channel;
  /** The template to render (`step.template`) and the language to render it in. */
  template: string;
  language: Language;
  record: DecisionRecord;
}

/** The plan for one balance at one instant. */
export interface OutreachPlan {
  balanceId: string;
  evaluation: CadenceEvaluation;
  /** Empty unless a step is due. */
  sends: PlannedSend[];
}

/** Options of {@link planOutreach}. */
export interface PlanOptions {
  /** The practice's IANA zone, the last fallback for the recipient's. */
  practiceTimeZone: string;
  /** Public holidays for `holidays:XX` no-send days (default: built-in US federal list). */
  holidays?: HolidayResolver;
}

/** Plans a balance at `now`: the due step (if any) and a decision for each of its pending channels. */
export function planOutreach(policy: Policy, balance: OutreachBalance, now: Date, options: PlanOptions): OutreachPlan {
  const evaluation = evaluateCadence(policy, balance, now, options.practiceTimeZone);
  if (evaluation.kind !== 'due') return { balanceId: balance.balanceId, evaluation, sends: [] };
  const language = chooseLanguage(balance.language, policy.language);
  // Channels are decided in order, each seeing the ones allowed before it as sent, so that two channels of
  // one step cannot together exceed a cap that each alone respects.
  const sends: PlannedSend[] = [];
  let seen = balance;
  for (const channel of evaluation.channels) {
    const record = decide({
      policy, balance: seen, step: evaluation.step, channel, now, practiceTimeZone: options.practiceTimeZone,
      ...(options.holidays === undefined ? {} : { holidays: options.holidays }),
    });
    sends.push({ step: evaluation.step, channel, template: evaluation.step.template, language, record });
    if (record.decision.verdict === 'allow') {
      seen = { ...seen, attempts: [...seen.attempts, { stepId: evaluation.step.id, channel, at: now, outcome: 'sent' }] };
    }
  }
  return { balanceId: balance.balanceId, evaluation, sends };
}

/**
 * When to plan this balance again: the earliest deferral, or when the waited-for step falls due;
 * null when nothing further will happen without a change to the balance (stopped, finished) or when
 * something can be done right now.
 */
export function nextPlanningAt(plan: OutreachPlan): Date | null {
  if (plan.evaluation.kind === 'waiting') return plan.evaluation.dueAt;
  const waits = plan.sends.flatMap((s) => (s.record.decision.verdict === 'defer' ? [s.record.decision.until.getTime()] : []));
  if (plan.sends.some((s) => s.record.decision.verdict !== 'defer') || waits.length === 0) return null;
  return new Date(Math.min(...waits));
}
