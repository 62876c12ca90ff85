/**
 * Daily outreach planning for a practice: for each outreach-eligible balance, build what the rules need from the
 * ledger and the outreach store, plan with {@link planOutreach}, and act on each decision — one transaction per
 * balance, under a per-balance lock, so two planners (or two runs on one day) never send a step twice:
 *
 * - allow: render the step's template (en/es) with only the allow-listed values and write it to the OUTBOX, and
 *   record the attempt `sent` with the outbox id. No channel credentials exist yet (Twilio, SMTP, print), so every
 *   send goes to the outbox: nothing leaves the machine until a channel is configured.
 * - suppress: record the attempt `suppressed` with the rule and reason, so the cadence moves on (a
 *   `balance-status` stop is not recorded, so a lifted hold resumes where it stopped).
 * - defer: record nothing; the result reports when it may go (the next daily run, or a per-attempt job, retries).
 *
 * Values a message may carry: practice name and phone, the guarantor's first name, the patient amount due, the
 * statement date (day 0 of the cadence: the day outreach first saw the balance), a due date (statement date + 30
 * days) and the pay link. Until signed pay links are wired, the link is the placeholder `${publicUrl}/p/pending`.
 * The agency hand-off (`agency` channel) is reported as agency-ready, not recorded: the agency export owns it.
 */
import { DateTime } from 'luxon';
import type { Logger } from '../config/logger.ts';
import type { Clock } from '../domain/clock.ts';
import type { PostalAddress } from '../domain/contact.ts';
import type { HolidayResolver } from '../domain/outreach-holidays.ts';
import type { BalanceStatus, MessageChannel, OutreachBalance } from '../domain/outreach.ts';
import { parsePolicy, type Policy } from '../domain/policy.ts';
import type { Practice } from '../domain/practice.ts';
import { withTransaction, type Database } from '../store/database.ts';
import { LedgerRepository, type Balance } from '../store/ledger.ts';
import { OutreachRepository } from '../store/outreach.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { PracticeRepository } from '../store/practices.ts';
import type { JobDefinition } from '../scheduler/scheduler.ts';
import { planOutreach } from './plan.ts';
import { defaultTemplates, renderMessage, selectTemplate, type TemplateCatalogue } from './templates.ts';

/** Days from the statement date to the due date shown in messages. */
export const DUE_DAYS = 30;

/** What planning needs. */
export interface PlanPracticeOptions {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
  logger: Logger;
  practiceId: string;
  policy: Policy;
  /** The engine's public URL, for pay links (default `http://localhost:8080`). */
  publicUrl?: string;
  /** Templates (default: Settle's own, en and es). */
  templates?: TemplateCatalogue;
  holidays?: HolidayResolver;
}

/** What one planning run did. Ids, rules and times only: no names, phones or emails. */
export interface PlanPracticeResult {
  practiceId: string;
  /** Outreach-eligible balances looked at. */
  balances: number;
  sent: { balanceId: string; stepId: string; channel: MessageChannel; outboxId: string; attemptId: string }[];
  suppressed: { balanceId: string; stepId: string; channel: string; rule: string; reason: string; attemptId: string | null }[];
  deferred: { balanceId: string; stepId: string; channel: string; rule: string; reason: string; until: Date }[];
  failed: { balanceId: string; stepId: string; channel: string; reason: string }[];
  agencyReady: { balanceId: string; stepId: string }[];
}

/** The placeholder pay link, until signed pay links land. */
export function placeholderPayLink(publicUrl: string | undefined): string {
  return `${(publicUrl ?? 'http://localhost:8080').replace(/\/+$/, '')}/p/pending`;
}

/** Plans outreach for every outreach-eligible balance of a practice at the clock's now. */
export async function planPractice(options: PlanPracticeOptions): Promise<PlanPracticeResult> {
  const { db, cipher, clock, practiceId } = options;
  const practice = await new PracticeRepository(db.pool).findById(practiceId);
  if (!practice) throw new Error(`no practice ${practiceId}`);
  const ledger = new LedgerRepository(db.pool, cipher, clock);
  const result: PlanPracticeResult = { practiceId, balances: 0, sent: [], suppressed: [], deferred: [], failed: [], agencyReady: [] };
  let cursor: string | undefined;
  do {
    const page = await ledger.listBalances(practiceId, { limit: 500, ...(cursor ? { cursor } : {}) });
    for (const balance of page.balances) {
      if (!balance.outreachEligible) continue;
      result.balances++;
      try {
        await planBalance(options, practice, balance.id, result);
      } catch (error) {
        // One balance's trouble never stops the others; the log carries ids and the error class only (never a message
        // that might quote a value).
        options.logger.error('outreach.plan.balance_failed', { practiceId, balanceId: balance.id, error: (error as Error).name, code: (error as { code?: string }).code });
        result.failed.push({ balanceId: balance.id, stepId: '', channel: '', reason: (error as Error).message });
      }
    }
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  options.logger.info('outreach.plan', {
    practiceId, balances: result.balances, sent: result.sent.length, suppressed: result.suppressed.length, deferred: result.deferred.length, failed: result.failed.length,
  });
  return result;
}

async function planBalance(options: PlanPracticeOptions, practice: Practice, balanceId: string, result: PlanPracticeResult): Promise<void> {
  const { db, cipher, clock, policy } = options;
  const now = clock.now();
  await withTransaction(db, async (tx) => {
    const ledger = new LedgerRepository(tx, cipher, clock);
    const store = new OutreachRepository(tx, cipher, clock);
    await store.lockBalance(balanceId);
    const balance = await ledger.getBalance(balanceId);
    if (!balance || !balance.outreachEligible) return;
    const today = DateTime.fromJSDate(now, { zone: practice.timeZone }).toISODate()!;
    const firstStatementDate = await store.cadenceStart(practice.id, balance.id, today);
    const contact = await ledger.getGuarantorContact(balance.guarantorId);
    const patient = balance.patientId ? await ledger.getPatient(balance.patientId) : undefined;
    const phone = contact?.phones?.find((p) => /\d/.test(p));
    const email = contact?.email?.trim() || undefined;
    const address = contact?.address;
    const rules = await store.contactRules(practice.id, { ...(phone ? { sms: phone } : {}), ...(email ? { email } : {}) });
    const language = contact?.language ?? patient?.language;
    const input: OutreachBalance = {
      balanceId: balance.id,
      status: outreachStatus(balance.status),
      amountDueCents: balance.patientAmount.amount,
      currency: balance.patientAmount.currency,
      firstStatementDate,
      ageDays: balance.oldestOpenDate ? Math.max(0, Math.round(DateTime.fromISO(today).diff(DateTime.fromISO(balance.oldestOpenDate), 'days').days)) : 0,
      hasPlan: balance.status === 'in_plan',
      hasHold: balance.status === 'on_hold' || balance.holdReason !== null,
      consents: rules.consents,
      optOuts: rules.optOuts,
      attempts: await store.cadenceAttempts(balance.id),
      destinations: { ...(phone ? { sms: phone } : {}), ...(email ? { email } : {}), letter: hasMailingAddress(address) },
      timeZone: practice.timeZone,
      ...(language ? { language } : {}),
    };
    const plan = planOutreach(policy, input, now, {
      practiceTimeZone: practice.timeZone,
      ...(options.holidays ? { holidays: options.holidays } : {}),
    });
    for (const send of plan.sends) {
      const { decision, verdicts } = send.record;
      const base = { practiceId: practice.id, balanceId: balance.id, stepId: send.step.id, channel: send.channel, plannedAt: now, verdicts, finalNotice: send.step.finalNotice };
      if (decision.verdict === 'defer') {
        result.deferred.push({ balanceId: balance.id, stepId: send.step.id, channel: send.channel, rule: decision.rule, reason: decision.reason, until: decision.until });
        continue;
      }
      if (decision.verdict === 'suppress') {
        if (decision.rule === 'balance-status') {
          result.suppressed.push({ balanceId: balance.id, stepId: send.step.id, channel: send.channel, rule: decision.rule, reason: decision.reason, attemptId: null });
          continue;
        }
        const attempt = await store.recordAttempt({ ...base, status: 'suppressed', rule: decision.rule, reason: decision.reason });
        result.suppressed.push({ balanceId: balance.id, stepId: send.step.id, channel: send.channel, rule: decision.rule, reason: decision.reason, attemptId: attempt.id });
        continue;
      }
      if (send.channel === 'agency') {
        result.agencyReady.push({ balanceId: balance.id, stepId: send.step.id });
        continue;
      }
      const channel = send.channel;
      const template = selectTemplate(options.templates ?? defaultTemplates, send.template, channel, send.language);
      const recipient = channel === 'sms' ? phone : channel === 'email' ? email : formatAddress(address);
      let rendered;
      try {
        if (!template) throw new Error(`no ${channel} template "${send.template}"`);
        rendered = renderMessage(template, {
          practiceName: practice.name,
          practicePhone: practice.phone,
          firstName: contact?.name?.given?.[0] ?? null,
          amountDueCents: balance.patientAmount.amount,
          currency: balance.patientAmount.currency,
          statementDate: firstStatementDate,
          dueDate: DateTime.fromISO(firstStatementDate, { zone: 'UTC' }).plus({ days: DUE_DAYS }).toISODate(),
          payLink: placeholderPayLink(options.publicUrl),
        });
      } catch (error) {
        const reason = (error as Error).message;
        await store.recordAttempt({ ...base, status: 'failed', rule: 'template', reason });
        result.failed.push({ balanceId: balance.id, stepId: send.step.id, channel, reason });
        continue;
      }
      const outboxId = await store.addToOutbox({
        practiceId: practice.id, balanceId: balance.id, channel, recipient: recipient!, subject: rendered.subject ?? null, body: rendered.text,
        html: rendered.html ?? null, language: rendered.language, template: rendered.template,
      });
      const attempt = await store.recordAttempt({ ...base, status: 'sent', outboxId, reason: 'written to the outbox (no channel configured)' });
      result.sent.push({ balanceId: balance.id, stepId: send.step.id, channel, outboxId, attemptId: attempt.id });
    }
  });
}

function outreachStatus(status: Balance['status']): BalanceStatus {
  return status === 'in_outreach' ? 'open' : (status as BalanceStatus);
}

function hasMailingAddress(address: PostalAddress | undefined): boolean {
  return !!address && (address.lines ?? []).some((l) => l.trim() !== '') && !!(address.postalCode || address.city);
}

function formatAddress(address: PostalAddress | undefined): string {
  if (!address) return '';
  const cityLine = [address.city, [address.state, address.postalCode].filter(Boolean).join(' ')].filter(Boolean).join(', ');
  return [...(address.lines ?? []), cityLine, address.country].filter((s) => s && s.trim() !== '').join('\n');
}

/** The `outreach.plan` job's name. */
export const OUTREACH_PLAN_JOB = 'outreach.plan';

/** What the planning job is built from. */
export interface OutreachJobDependencies {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
  logger: Logger;
  /** The `policies/default.json` document (already schema-checked by the data-file loader); parsed here. */
  defaultPolicy: Record<string, unknown>;
  publicUrl?: string;
}

/** `outreach.plan`: plans one practice (`data.practiceId`) or every practice, with the default policy. */
export function outreachPlanJob(deps: OutreachJobDependencies): JobDefinition<{ practiceId?: string }> {
  const policy = parsePolicy(deps.defaultPolicy);
  return {
    name: OUTREACH_PLAN_JOB,
    concurrency: 1,
    async run(data) {
      const practices = data?.practiceId ? [data.practiceId] : (await new PracticeRepository(deps.db.pool).list()).map((p) => p.id);
      for (const practiceId of practices) {
        await planPractice({
          db: deps.db, cipher: deps.cipher, clock: deps.clock, logger: deps.logger, practiceId, policy,
          ...(deps.publicUrl ? { publicUrl: deps.publicUrl } : {}),
        });
      }
    },
  };
}
