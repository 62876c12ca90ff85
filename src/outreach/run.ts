/**
 * Daily outreach planning for a practice, built to stay fast at a million balances:
 *
 * 1. One set-based query a page at a time picks the outreach-eligible balances whose cadence could have a step
 *    due today (or that outreach has never seen); balances between steps, finished or waiting are not read. On a
 *    PostgreSQL server the next page is read while one is planned.
 * 2. For each page, the cadence starts, attempts, contacts, consents, opt-outs and undeliverable addresses are
 *    read in one query each, and every candidate is planned with {@link planOutreach} (pure).
 * 3. A balance with something to record (a send or a suppression) is then acted on in ONE transaction of its
 *    own, under its per-balance lock, after reading again what could have changed meanwhile (the balance, its
 *    attempts, consents, opt-outs and undeliverable addresses) and planning again from that: two planners, or
 *    two runs on one day, never send a step twice. Balances with only deferrals record nothing. On a PostgreSQL
 *    server a few balances are acted on at once (each in its own transaction); on the embedded database one at
 *    a time.
 *
 * What acting means:
 * - allow: render the step's template (en/es) with only the allow-listed values — practice name and phone, the
 *   guarantor's first name, the amount due, the statement date (day 0 of the cadence), a due date (statement
 *   date + {@link DUE_DAYS}) and the guarantor's signed pay link — and write it to the OUTBOX (the delivery
 *   stage takes it from there), recording the attempt `sent` with the outbox id.
 * - agency: the agency step records an `agency` attempt: the balance is agency-ready until the agency export
 *   (src/outreach/agency.ts) hands it over.
 * - suppress: record the attempt `suppressed` with the rule and reason, so the cadence moves on (a
 *   `balance-status` stop is not recorded, so a lifted hold resumes where it stopped).
 * - defer: record nothing; the result reports when it may go (the next hourly run retries).
 */
import type { Logger } from '../config/logger.ts';
import { type Clock, localDate } from '../domain/clock.ts';
import type { PostalAddress } from '../domain/contact.ts';
import { outreachEligible } from '../domain/ledger.ts';
import type { HolidayResolver } from '../domain/outreach-holidays.ts';
import type { BalanceStatus, MessageChannel, OutreachBalance } from '../domain/outreach.ts';
import { recipientTimeZone, type Policy } from '../domain/policy.ts';
import type { Practice } from '../domain/practice.ts';
import type { PayLinkKeyRing } from '../domain/pay-link.ts';
import { issuePayLink, payLinkToken, payLinkUrl } from '../domain/pay-link.ts';
import { DEFAULT_PAY_BASE_URL, PAY_LINK_REUSE_MARGIN_MS, PAY_LINK_TTL_SECONDS } from '../store/guarantor-pay-links.ts';
import { withTransaction, type Database } from '../store/database.ts';
import { LedgerRepository } from '../store/ledger.ts';
import { OutreachPlanningReader, PlanningPayLinks, PlanningWrites, type PlanningBalance, type PlanningContact, type PlanningContactRules } from '../store/outreach-planning.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { PracticeRepository } from '../store/practices.ts';
import type { JobDefinition } from '../scheduler/scheduler.ts';
import { planOutreach, type OutreachPlan } from './plan.ts';
import { PolicyBook } from './policy-book.ts';
import { addressTimeZone } from './recipient-zone.ts';
import { defaultTemplates, renderMessage, selectTemplate, type TemplateCatalogue } from './templates.ts';

/** Days from the statement date to the due date shown in messages. */
export const DUE_DAYS = 30;

const DAY_MS = 86_400_000;

/** The due date messages show for a statement date (`YYYY-MM-DD`): {@link DUE_DAYS} calendar days later. */
export function dueDateOf(statementDate: string): string {
  return new Date(Date.parse(`${statementDate}T00:00:00Z`) + DUE_DAYS * DAY_MS).toISOString().slice(0, 10);
}

/** Balances read and planned per page. */
const PAGE_SIZE = 1000;
/**
 * Balances acted on in one transaction (each under its own lock, all held until the commit). On a server several
 * batches run at once, so they stay small; the embedded database runs one transaction at a time anyway, where
 * each batch's fixed statements (lock, re-reads, writes, BEGIN/COMMIT) are what bigger batches save.
 */
const BATCH_SIZE = 50;
const EMBEDDED_BATCH_SIZE = 250;

/** What planning needs. */
export interface PlanPracticeOptions {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
  logger: Logger;
  practiceId: string;
  /** The practice's policy (see {@link PolicyBook}). */
  policy: Policy;
  /** Signing keys of the pay links every message carries. */
  payLinkKeys: PayLinkKeyRing;
  /** The engine's public URL, for pay links (default: the pay-link service's). */
  publicUrl?: string;
  /** Templates (default: Settle's own, en and es). */
  templates?: TemplateCatalogue;
  holidays?: HolidayResolver;
  /** Balances acted on at once on a PostgreSQL server (default: the pool size less two, at most 8; always 1 embedded). */
  concurrency?: number;
  /** Balances read and planned per page (default 1000). */
  pageSize?: number;
}

/** What one planning run did. Ids, rules and times only: no names, phones or emails. */
export interface PlanPracticeResult {
  practiceId: string;
  /** Outreach-eligible balances of the practice (those not read were between steps). */
  balances: number;
  /** Balances whose cadence could have had something due, and were planned. */
  planned: number;
  sent: { balanceId: string; stepId: string; channel: MessageChannel; outboxId: string; attemptId: string }[];
  suppressed: { balanceId: string; stepId: string; channel: string; rule: string; reason: string; attemptId: string | null }[];
  deferred: { balanceId: string; stepId: string; channel: string; rule: string; reason: string; until: Date }[];
  failed: { balanceId: string; stepId: string; channel: string; reason: string }[];
  agencyReady: { balanceId: string; stepId: string; attemptId: string }[];
}

/** Plans outreach for every outreach-eligible balance of a practice at the clock's now. */
export async function planPractice(options: PlanPracticeOptions): Promise<PlanPracticeResult> {
  const { db, cipher, clock, practiceId, policy } = options;
  const practice = await new PracticeRepository(db.pool).findById(practiceId);
  if (!practice) throw new Error(`no practice ${practiceId}`);
  const now = clock.now();
  const zone = recipientTimeZone({ timeZone: practice.timeZone }, policy, practice.timeZone);
  const today = localDate(now, zone);
  const threshold = await new LedgerRepository(db.pool, cipher, clock).smallBalanceThreshold(practiceId);
  const reader = new OutreachPlanningReader(db.pool, cipher);
  const result = { ...emptyResult(practiceId), balances: await reader.eligibleCount(practiceId, threshold) };
  const run: Run = { options, practice, now, today, threshold, result, links: new Map() };
  const concurrency = db.kind === 'embedded' ? 1 : Math.max(1, options.concurrency ?? Math.min(8, (db.pool.options.max ?? 10) - 2));
  const pageSize = Math.max(1, options.pageSize ?? PAGE_SIZE);
  const batchSize = db.kind === 'embedded' ? EMBEDDED_BATCH_SIZE : BATCH_SIZE;
  const pageAfter = (cursor: string | null) => reader.candidates(practiceId, { threshold, today, cadence: policy, cursor, limit: pageSize });
  let cursor: string | null = null;
  let prefetched: Promise<PlanningBalance[]> | undefined;
  for (;;) {
    const page: PlanningBalance[] = await (prefetched ?? pageAfter(cursor));
    prefetched = undefined;
    if (page.length === 0) break;
    cursor = page.at(-1)!.id;
    if (page.length === pageSize && db.kind !== 'embedded') {
      // On a server the next page is read while this one is planned and acted on: pages hold disjoint balances,
      // and nothing done to this page's balances changes which balances the next one holds.
      prefetched = pageAfter(cursor);
      prefetched.catch(() => undefined); // a failure is thrown where the page is awaited
    }
    result.planned += page.length;
    const prepared = await preparePage(run, reader, page);
    await fetchPayLinks(run, [...new Set(prepared.filter(needsPayLink).map((p) => p.balance.guarantorId))]);
    const batches: Prepared[][] = [];
    for (let i = 0; i < prepared.length; i += batchSize) batches.push(prepared.slice(i, i + batchSize));
    await forEachLimited(batches, concurrency, (batch) => actOnBatch(run, batch));
    if (page.length < pageSize) break;
  }
  options.logger.info('outreach.plan', {
    practiceId, balances: result.balances, planned: result.planned, sent: result.sent.length, suppressed: result.suppressed.length,
    deferred: result.deferred.length, failed: result.failed.length, agencyReady: result.agencyReady.length,
  });
  return result;
}

interface Run {
  options: PlanPracticeOptions;
  practice: Practice;
  now: Date;
  today: string;
  threshold: number;
  result: PlanPracticeResult;
  /** Pay links issued or found in this run, by guarantor. */
  links: Map<string, string>;
}

interface Prepared {
  balance: PlanningBalance & { firstStatementDate: string };
  contact: PlanningContact;
  plan: OutreachPlan;
  /** What the plan was made from, to tell under the lock whether anything changed since. */
  fingerprint: string;
}

/** The parts of a balance's planning input that another process may change while a page is being planned. */
function fingerprintOf(input: OutreachBalance): string {
  return JSON.stringify([input.status, input.amountDueCents, input.hasHold, input.hasPlan, input.firstStatementDate, input.attempts, input.consents, input.optOuts, input.undeliverable]);
}

function needsPayLink(item: Prepared): boolean {
  return item.plan.sends.some((s) => s.channel !== 'agency' && s.record.decision.verdict === 'allow');
}

/** Reads a page's cadence starts, attempts, contacts and contact rules at once and plans each balance. */
async function preparePage(run: Run, reader: OutreachPlanningReader, page: PlanningBalance[]): Promise<Prepared[]> {
  const unseen = page.filter((b) => b.firstStatementDate === null).map((b) => b.id);
  const starts = await reader.startCadences(run.practice.id, unseen, run.today, run.now);
  const balances = page.map((b) => ({ ...b, firstStatementDate: b.firstStatementDate ?? starts.get(b.id)! }));
  const ids = balances.map((b) => b.id);
  const [attempts, contacts] = await Promise.all([reader.attempts(ids), reader.contacts(balances)]);
  const addresses = new Map(balances.map((b) => [b.id, destinationsOf(contacts.get(b.id)!)]));
  const rules = await reader.contactRules(run.practice.id, new Map([...addresses].map(([id, d]) => [id, { ...(d.sms ? { sms: d.sms } : {}), ...(d.email ? { email: d.email } : {}) }])));
  const prepared: Prepared[] = [];
  for (const balance of balances) {
    const contact = contacts.get(balance.id)!;
    const input = outreachInput(run, balance, contact, attempts.get(balance.id) ?? [], rules.get(balance.id)!);
    const plan = planFor(run, input);
    if (plan.sends.length === 0) continue;
    if (plan.sends.every((s) => s.record.decision.verdict === 'defer')) {
      for (const send of plan.sends) {
        const d = send.record.decision;
        if (d.verdict === 'defer') run.result.deferred.push({ balanceId: balance.id, stepId: send.step.id, channel: send.channel, rule: d.rule, reason: d.reason, until: d.until });
      }
      continue;
    }
    prepared.push({ balance, contact, plan, fingerprint: fingerprintOf(input) });
  }
  return prepared;
}

function planFor(run: Run, input: OutreachBalance): OutreachPlan {
  return planOutreach(run.options.policy, input, run.now, {
    practiceTimeZone: run.practice.timeZone,
    ...(run.options.holidays ? { holidays: run.options.holidays } : {}),
  });
}

function destinationsOf({ contact }: PlanningContact): { sms?: string; email?: string; address?: PostalAddress } {
  const phone = contact?.phones?.find((p) => /\d/.test(p));
  const email = contact?.email?.trim() || undefined;
  return { ...(phone ? { sms: phone } : {}), ...(email ? { email } : {}), ...(contact?.address ? { address: contact.address } : {}) };
}

function outreachInput(
  run: Run,
  balance: PlanningBalance & { firstStatementDate: string },
  planningContact: PlanningContact,
  attempts: OutreachBalance['attempts'],
  rules: PlanningContactRules,
): OutreachBalance {
  const { sms, email, address } = destinationsOf(planningContact);
  const language = planningContact.contact?.language ?? planningContact.patientLanguage;
  const zone = addressTimeZone(address);
  return {
    balanceId: balance.id,
    status: outreachStatus(balance.status),
    amountDueCents: balance.patientAmountMinor,
    currency: balance.currency,
    firstStatementDate: balance.firstStatementDate,
    ageDays: balance.oldestOpenDate ? Math.max(0, calendarDaysBetween(balance.oldestOpenDate, run.today)) : 0,
    hasPlan: balance.status === 'in_plan',
    hasHold: balance.status === 'on_hold' || balance.holdReason !== null,
    consents: rules.consents,
    optOuts: rules.optOuts,
    ...(rules.undeliverable.length > 0 ? { undeliverable: rules.undeliverable } : {}),
    attempts,
    destinations: { ...(sms ? { sms } : {}), ...(email ? { email } : {}), letter: hasMailingAddress(address) },
    ...(zone ? { timeZone: zone } : {}),
    ...(language ? { language } : {}),
  };
}

/** Calendar days from one `YYYY-MM-DD` date to another (plain date arithmetic: no zone, no DST). */
function calendarDaysBetween(from: string, to: string): number {
  return Math.round((Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / DAY_MS);
}

/**
 * Acts on a batch of balances in one transaction: takes every balance's planning lock (in id order, so two
 * planners cannot deadlock), reads again under the locks what may have changed since the page was read (the
 * balance, its attempts, its consents and opt-outs), plans again any balance whose input changed, and records.
 * The results count only once committed; if the batch fails, each balance is retried in a transaction of its
 * own, so one balance's trouble never stops the others.
 */
async function actOnBatch(run: Run, batch: Prepared[]): Promise<void> {
  const { options } = run;
  const partial = emptyResult(run.practice.id);
  try {
    await withTransaction(options.db, async (tx) => {
      const writes = new PlanningWrites(options.cipher, options.clock);
      const reader = new OutreachPlanningReader(tx, options.cipher);
      const ids = batch.map((b) => b.balance.id).sort();
      await reader.lockBalances(ids);
      const fresh = new Map((await reader.balances(ids)).map((b) => [b.id, b]));
      const attempts = await reader.attempts(ids);
      const rules = await reader.contactRules(run.practice.id, new Map(batch.map((item) => {
        const { sms, email } = destinationsOf(item.contact);
        return [item.balance.id, { ...(sms ? { sms } : {}), ...(email ? { email } : {}) }];
      })));
      for (const item of batch) {
        const now = fresh.get(item.balance.id);
        if (!now || now.firstStatementDate === null || !outreachEligible(now.status, now.patientAmountMinor, run.threshold)) continue;
        const balance = { ...now, firstStatementDate: now.firstStatementDate };
        const input = outreachInput(run, balance, item.contact, attempts.get(balance.id) ?? [], rules.get(balance.id)!);
        const plan = fingerprintOf(input) === item.fingerprint ? item.plan : planFor(run, input);
        // Links are fetched before the transaction (a link needs a connection of its own, and the embedded database
        // runs one transaction at a time); a balance whose new plan needs one not fetched waits for the next run.
        const payLink = needsPayLink({ ...item, plan }) ? run.links.get(balance.guarantorId) : undefined;
        if (needsPayLink({ ...item, plan }) && payLink === undefined) {
          partial.failed.push({ balanceId: balance.id, stepId: '', channel: '', reason: 'no pay link could be issued for the guarantor; the next run tries again' });
          continue;
        }
        recordPlan(run, partial, writes, balance, item.contact, plan, payLink);
      }
      await writes.flush(tx);
    });
  } catch (error) {
    if (batch.length > 1) {
      for (const item of batch) await actOnBatch(run, [item]);
      return;
    }
    // The log carries ids and the error class only (never a message that might quote a value).
    const balanceId = batch[0]!.balance.id;
    options.logger.error('outreach.plan.balance_failed', { practiceId: run.practice.id, balanceId, error: (error as Error).name, code: (error as { code?: string }).code });
    run.result.failed.push({ balanceId, stepId: '', channel: '', reason: (error as Error).message });
    return;
  }
  const { result } = run;
  result.sent.push(...partial.sent);
  result.suppressed.push(...partial.suppressed);
  result.deferred.push(...partial.deferred);
  result.failed.push(...partial.failed);
  result.agencyReady.push(...partial.agencyReady);
}

function emptyResult(practiceId: string): PlanPracticeResult {
  return { practiceId, balances: 0, planned: 0, sent: [], suppressed: [], deferred: [], failed: [], agencyReady: [] };
}

/**
 * Finds or issues the pay links of a page's guarantors into `run.links`, by the rule of `payLinkForGuarantor`
 * (src/store/guarantor-pay-links.ts: reuse a link signed with the current key, not revoked and valid for at least
 * another week, else issue one valid 30 days), in two statements for the page rather than two per guarantor.
 * A failure is logged with ids only; those balances wait for the next run.
 */
async function fetchPayLinks(run: Run, guarantorIds: string[]): Promise<void> {
  const wanted = guarantorIds.filter((id) => !run.links.has(id));
  if (wanted.length === 0) return;
  const { db, clock, payLinkKeys: keys, publicUrl, logger } = run.options;
  const base = publicUrl ?? DEFAULT_PAY_BASE_URL;
  const links = new PlanningPayLinks(db.pool);
  try {
    for (const link of await links.reusable(run.practice.id, wanted, keys.current, new Date(clock.now().getTime() + PAY_LINK_REUSE_MARGIN_MS))) {
      run.links.set(link.guarantorId, payLinkUrl(base, payLinkToken(link, keys)));
    }
    const issued = wanted.filter((id) => !run.links.has(id)).map((guarantorId) => issuePayLink({ guarantorId, ttlSeconds: PAY_LINK_TTL_SECONDS, clock, keyRing: keys }));
    const stored = await links.create(run.practice.id, issued.map((l) => ({ linkId: l.linkId, guarantorId: l.guarantorId, keyId: l.keyId, expiresAt: l.expiresAt })), clock.now());
    for (const link of issued) if (stored.has(link.guarantorId)) run.links.set(link.guarantorId, payLinkUrl(base, link.token));
  } catch (error) {
    logger.error('outreach.plan.pay_link_failed', { practiceId: run.practice.id, guarantors: wanted.length, error: (error as Error).name, code: (error as { code?: string }).code });
  }
}

function recordPlan(
  run: Run, result: PlanPracticeResult, writes: PlanningWrites, balance: PlanningBalance & { firstStatementDate: string }, planningContact: PlanningContact,
  plan: OutreachPlan, payLink: string | undefined,
): void {
  const { options, practice, now } = run;
  const { sms, email, address } = destinationsOf(planningContact);
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
      const attemptId = writes.attempt({ ...base, status: 'suppressed', rule: decision.rule, reason: decision.reason });
      result.suppressed.push({ balanceId: balance.id, stepId: send.step.id, channel: send.channel, rule: decision.rule, reason: decision.reason, attemptId });
      continue;
    }
    if (send.channel === 'agency') {
      const attemptId = writes.attempt({ ...base, status: 'sent', reason: 'agency-ready: waits for the agency export' });
      result.agencyReady.push({ balanceId: balance.id, stepId: send.step.id, attemptId });
      continue;
    }
    const channel = send.channel;
    const template = selectTemplate(options.templates ?? defaultTemplates, send.template, channel, send.language);
    const recipient = channel === 'sms' ? sms : channel === 'email' ? email : formatAddress(address);
    let rendered;
    try {
      if (!template) throw new Error(`no ${channel} template "${send.template}"`);
      rendered = renderMessage(template, {
        practiceName: practice.name,
        practicePhone: practice.phone,
        firstName: planningContact.contact?.name?.given?.[0] ?? null,
        amountDueCents: balance.patientAmountMinor,
        currency: balance.currency,
        statementDate: balance.firstStatementDate,
        dueDate: dueDateOf(balance.firstStatementDate),
        payLink: payLink ?? null,
      });
    } catch (error) {
      const reason = (error as Error).message;
      writes.attempt({ ...base, status: 'failed', rule: 'template', reason });
      result.failed.push({ balanceId: balance.id, stepId: send.step.id, channel, reason });
      continue;
    }
    const outboxId = writes.outbox({
      practiceId: practice.id, balanceId: balance.id, channel, recipient: recipient!, subject: rendered.subject ?? null, body: rendered.text,
      html: rendered.html ?? null, language: rendered.language, template: rendered.template, recipientTimeZone: send.record.timeZone,
    });
    const attemptId = writes.attempt({ ...base, status: 'sent', outboxId, reason: 'written to the outbox' });
    result.sent.push({ balanceId: balance.id, stepId: send.step.id, channel, outboxId, attemptId });
  }
}

/** Runs `work` over `items` with at most `limit` at once. */
async function forEachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]!);
  }));
}

function outreachStatus(status: PlanningBalance['status']): BalanceStatus {
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
  /** The policies/ files (already schema-checked by the data-file loader): `<practice slug>` for a practice's own, else `default`. */
  policies?: readonly { name: string; data: Record<string, unknown> }[];
  /** The `policies/default.json` document, when `policies` does not hold it. */
  defaultPolicy?: Record<string, unknown>;
  /** Pay-link signing keys (SETTLE_PAY_LINK_KEYS): without them planning refuses to run rather than send a message with no link. */
  payLinkKeys?: PayLinkKeyRing;
  publicUrl?: string;
}

/** `outreach.plan`: plans one practice (`data.practiceId`) or every practice, each with its own policy or `default`. */
export function outreachPlanJob(deps: OutreachJobDependencies): JobDefinition<{ practiceId?: string }> {
  const book = PolicyBook.from([...(deps.policies ?? []), ...(deps.defaultPolicy && !deps.policies?.some((p) => p.name === 'default') ? [{ name: 'default', data: deps.defaultPolicy }] : [])]);
  return {
    name: OUTREACH_PLAN_JOB,
    concurrency: 1,
    async run(data) {
      if (!deps.payLinkKeys) throw new Error('outreach.plan needs the pay-link keys (SETTLE_PAY_LINK_KEYS): nothing was planned');
      const repository = new PracticeRepository(deps.db.pool);
      const practices = data?.practiceId ? [await repository.findById(data.practiceId)].filter((p) => p !== undefined) : await repository.list();
      for (const practice of practices) {
        const policy = book.forPractice(practice.slug);
        if (!policy) {
          deps.logger.warn('outreach.plan.no_policy', { practiceId: practice.id });
          continue;
        }
        await planPractice({
          db: deps.db, cipher: deps.cipher, clock: deps.clock, logger: deps.logger, practiceId: practice.id, policy, payLinkKeys: deps.payLinkKeys,
          ...(deps.publicUrl ? { publicUrl: deps.publicUrl } : {}),
        });
      }
    },
  };
}
