/**
 * Outreach delivery: hands outbox rows to the channel configured for their kind.
 *
 * One run (the `outreach.deliver` job, every minute and woken right after planning):
 * 1. rows of kinds with no channel are held (`held-no-channel`); held rows of kinds that now have one are queued;
 * 2. due queued rows are claimed (`FOR UPDATE SKIP LOCKED`: two workers never send one row) and, for each,
 *    right before sending: the balance must still be in outreach, the message younger than `maxAgeMs`, the
 *    address not opted out nor known undeliverable, and the recipient outside quiet hours in the zone planning
 *    judged them in (else it waits);
 * 3. the result is committed with the attempt: `sent` (provider id kept for status callbacks); a transient
 *    failure is retried with exponential backoff and jitter up to `maxAttempts`; an opt-out (Twilio 21610) is
 *    recorded at once; `undeliverable` marks the address and tries the balance's next channel for the same
 *    step (sms → email → letter), or opens an `undeliverable` staff task when none is left.
 *
 * Logs carry ids, states and provider codes only.
 */
import type { Logger } from '../config/logger.ts';
import { type Clock, localDate } from '../domain/clock.ts';
import type { PostalAddress } from '../domain/contact.ts';
import { nextAllowedInstant } from '../domain/outreach-guards.ts';
import type { MessageChannel, OptOut } from '../domain/outreach.ts';
import { recipientTimeZone, type QuietHours } from '../domain/policy.ts';
import type { Practice } from '../domain/practice.ts';
import type { JobDefinition } from '../scheduler/scheduler.ts';
import { withTransaction, type Database, type Queryable } from '../store/database.ts';
import { LedgerRepository } from '../store/ledger.ts';
import { OutreachDeliveryStore, type DeliveryRow } from '../store/outreach-delivery.ts';
import { OutreachRepository } from '../store/outreach.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { PracticeRepository } from '../store/practices.ts';
import { StaffTaskRepository } from '../store/staff-tasks.ts';
import type { OutboundMessage, SendResult } from './channel.ts';
import { configuredKinds, type ChannelMap } from './channels.ts';
import { dueDateOf } from './run.ts';
import { defaultTemplates, renderMessage, selectTemplate, type TemplateCatalogue } from './templates.ts';

/** The delivery job's name. */
export const OUTREACH_DELIVER_JOB = 'outreach.deliver';

/** Retry schedule defaults. */
export const DELIVERY_DEFAULTS = {
  /** Sends of one row before it is `failed` (the first plus retries). */
  maxAttempts: 6,
  /** First retry after about this long; doubles each time. */
  baseDelayMs: 30_000,
  maxDelayMs: 30 * 60_000,
  /** A message older than this (held for days, retried for long) is not sent any more. */
  maxAgeMs: 72 * 3600_000,
  /** A row left `sending` longer than this was interrupted (worker died). */
  sendingTimeoutMs: 10 * 60_000,
  batchSize: 50,
  /** Sends in flight at once within one worker. */
  parallelism: 16,
  /** Rows one run handles before it asks to run again. */
  runLimit: 5000,
} as const;

/** What delivery needs. */
export interface DeliveryDependencies {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
  logger: Logger;
  channels: ChannelMap;
  /** A guarantor's pay link, for a fallback message whose refused original carried none. */
  payLinkFor?: (practiceId: string, guarantorId: string) => Promise<string>;
  /** The policy's quiet hours, checked right before sending texts and emails (in the recipient's zone, as at planning). */
  quietHours?: QuietHours;
  templates?: TemplateCatalogue;
  /** For jitter; default Math.random. */
  random?: () => number;
  options?: Partial<typeof DELIVERY_DEFAULTS>;
}

/** What one run did (ids and codes only). */
export interface DeliveryRunResult {
  held: number;
  released: number;
  interrupted: number;
  sent: number;
  retried: number;
  failed: number;
  undeliverable: number;
  optedOut: number;
  deferred: number;
  fallbacks: number;
  /** True when the run stopped at its limit with rows still due. */
  more: boolean;
}

/** Backoff before retry `attempt` (1 = the first retry): exponential with equal jitter, capped. */
export function retryDelayMs(attempt: number, random: () => number = Math.random, options: { baseDelayMs?: number; maxDelayMs?: number } = {}): number {
  const base = options.baseDelayMs ?? DELIVERY_DEFAULTS.baseDelayMs;
  const cap = options.maxDelayMs ?? DELIVERY_DEFAULTS.maxDelayMs;
  const delay = Math.min(cap, base * 2 ** Math.max(0, attempt - 1));
  return Math.round(delay / 2 + random() * (delay / 2));
}

/** The active opt-out among these (same rule as the opt-out guard). */
export function activeOptOut(optOuts: readonly OptOut[], channel: MessageChannel, address: string, now: Date): OptOut | undefined {
  return optOuts.find(
    (o) =>
      o.channel === channel && (o.address === undefined || o.address === address) && o.at.getTime() <= now.getTime() &&
      (o.optedBackInAt === undefined || o.optedBackInAt.getTime() <= o.at.getTime() || o.optedBackInAt.getTime() > now.getTime()),
  );
}

/** Delivers due outbox rows until none is due (or the run limit). */
export async function deliverDue(deps: DeliveryDependencies): Promise<DeliveryRunResult> {
  const o = { ...DELIVERY_DEFAULTS, ...deps.options };
  const store = new OutreachDeliveryStore(deps.db.pool, deps.cipher, deps.clock);
  const kinds = configuredKinds(deps.channels).filter((k): k is MessageChannel => k !== undefined);
  const result: DeliveryRunResult = { held: 0, released: 0, interrupted: 0, sent: 0, retried: 0, failed: 0, undeliverable: 0, optedOut: 0, deferred: 0, fallbacks: 0, more: false };
  const { held, released } = await store.holdAndRelease(kinds);
  result.held = held;
  result.released = released;
  result.interrupted = await store.failInterrupted(new Date(deps.clock.now().getTime() - o.sendingTimeoutMs));
  const practices = new Map<string, Promise<Practice | undefined>>();
  const practiceOf = (id: string) => {
    let p = practices.get(id);
    if (!p) practices.set(id, (p = new PracticeRepository(deps.db.pool).findById(id)));
    return p;
  };
  // Workers take rows from a queue that is refilled (one claim at a time) before it runs dry, so no worker
  // idles at the end of a batch; each claimed batch is checked (opt-outs, balances) right when it is claimed.
  const cache: RunCache = { inOutreach: new Set(), checks: new Map() };
  const queue: DeliveryRow[] = [];
  let handled = 0;
  let exhausted = kinds.length === 0;
  let claiming: Promise<void> | undefined;
  const refill = (): Promise<void> => {
    claiming ??= (async () => {
      if (handled >= o.runLimit) {
        result.more = true;
        exhausted = true;
        return;
      }
      const batch = await store.claimDue(kinds, Math.min(o.batchSize, o.runLimit - handled));
      if (batch.length === 0) {
        exhausted = true;
        return;
      }
      handled += batch.length;
      for (const [id, check] of await store.preSendChecks(batch)) cache.checks.set(id, check);
      for (const id of await store.balancesInOutreach(batch.map((r) => r.balanceId))) cache.inOutreach.add(id);
      queue.push(...batch);
    })().finally(() => {
      claiming = undefined;
    });
    return claiming;
  };
  const worker = async () => {
    for (;;) {
      if (queue.length < o.parallelism && !exhausted) void refill().catch(() => {});
      const row = queue.shift();
      if (!row) {
        if (exhausted && !claiming) return;
        await (claiming ?? refill());
        continue;
      }
      try {
        await deliverOne(deps, o, row, await practiceOf(row.practiceId), result, cache);
      } catch (error) {
        // Unexpected trouble (database, decryption): the row waits for a retry; never a value in the log.
        deps.logger.error('outreach.deliver.row_failed', { outboxId: row.id, practiceId: row.practiceId, error: (error as Error).name, code: (error as { code?: string }).code });
        await store.markRetry(row.id, 'internal', 'internal error while sending', new Date(deps.clock.now().getTime() + retryDelayMs(row.deliveryAttempts, deps.random, o)));
        result.retried++;
      } finally {
        cache.checks.delete(row.id);
      }
    }
  };
  await Promise.all(Array.from({ length: o.parallelism }, worker));
  if (handled > 0 || held > 0 || released > 0 || result.interrupted > 0) {
    deps.logger.info('outreach.deliver', { ...result });
  }
  return result;
}

interface RunCache {
  /** Balances of the claimed batch still in outreach. */
  inOutreach: Set<string>;
  /** Opt-outs and undeliverable marks of the claimed batch's addresses, read right before the batch is sent. */
  checks: Map<string, { optOuts: OptOut[]; undeliverable: boolean }>;
}

async function deliverOne(deps: DeliveryDependencies, o: typeof DELIVERY_DEFAULTS, row: DeliveryRow, practice: Practice | undefined, result: DeliveryRunResult, run: RunCache): Promise<void> {
  const now = deps.clock.now();
  const store = new OutreachDeliveryStore(deps.db.pool, deps.cipher, deps.clock);
  const channel = deps.channels[row.channel];
  if (!channel) {
    await store.markRetry(row.id, 'no-channel', 'no channel configured', now);
    return;
  }
  // Right before sending: is this still a message to send? (Checked for the whole batch at once.)
  if (!run.inOutreach.has(row.balanceId)) {
    await closeWithoutSending(deps, row, 'balance-closed', 'the balance left outreach (paid, plan, hold…) before sending', 'balance-status');
    result.failed++;
    return;
  }
  if (now.getTime() - row.createdAt.getTime() > o.maxAgeMs) {
    await closeWithoutSending(deps, row, 'expired', `not sent within ${Math.round(o.maxAgeMs / 3600_000)} h of planning`, 'delivery');
    result.failed++;
    return;
  }
  const check = run.checks.get(row.id) ?? { optOuts: [], undeliverable: false };
  if (row.channel !== 'letter') {
    const optOut = activeOptOut(check.optOuts, row.channel, row.recipient, now);
    if (optOut) {
      await closeWithoutSending(deps, row, 'opted-out', `opted out of ${row.channel} on ${optOut.at.toISOString()} (${optOut.source})`, 'opt-out');
      result.failed++;
      return;
    }
    if (deps.quietHours && practice) {
      // In the zone planning judged the recipient in (their address's, else the policy's, else the practice's).
      const zone = recipientTimeZone({ timeZone: row.recipientTimeZone ?? undefined }, {}, practice.timeZone);
      const until = nextAllowedInstant(deps.quietHours, now, zone);
      if (until.getTime() > now.getTime()) {
        await store.defer(row.id, until);
        result.deferred++;
        return;
      }
    }
  }
  if (check.undeliverable) {
    await applyRefusal(deps, row, { status: 'failed', code: 'known-undeliverable', reason: `this ${row.channel} address was refused before`, transient: false, undeliverable: true });
    result.undeliverable++;
    return;
  }
  const message: OutboundMessage = {
    outboxId: row.id, practiceId: row.practiceId, balanceId: row.balanceId, channel: row.channel, to: row.recipient,
    subject: row.subject, body: row.body, html: row.html, language: row.language,
  };
  let sent: SendResult;
  try {
    sent = await channel.send(message);
  } catch (error) {
    sent = { status: 'failed', code: (error as { code?: string }).code ?? 'exception', reason: `the ${row.channel} channel threw ${(error as Error).name}`, transient: true };
  }
  if (sent.status === 'sent') {
    await store.markSentWithAttempt(row.id, sent.providerMessageId, `accepted by the ${row.channel} channel`);
    result.sent++;
    return;
  }
  if (sent.transient && !sent.optedOut && !sent.undeliverable && row.deliveryAttempts < o.maxAttempts) {
    const at = new Date(now.getTime() + retryDelayMs(row.deliveryAttempts, deps.random, o));
    await store.markRetry(row.id, sent.code, sent.reason, at);
    deps.logger.warn('outreach.deliver.retry', { outboxId: row.id, channel: row.channel, code: sent.code, attempt: row.deliveryAttempts, at: at.toISOString() });
    result.retried++;
    return;
  }
  const outcome = await applyRefusal(deps, row, sent);
  if (outcome.optedOut) result.optedOut++;
  if (outcome.undeliverable) result.undeliverable++;
  else result.failed++;
  if (outcome.fallbackOutboxId) result.fallbacks++;
}

/** Closes a row that must not go out any more; its attempt becomes `suppressed` with the rule. */
async function closeWithoutSending(deps: DeliveryDependencies, row: DeliveryRow, code: string, reason: string, rule: string): Promise<void> {
  await withTransaction(deps.db, async (tx) => {
    const store = new OutreachDeliveryStore(tx, deps.cipher, deps.clock);
    await store.markFinal(row.id, 'failed', code, reason);
    await store.updateAttempt(row.id, { status: 'suppressed', rule, reason });
  });
  deps.logger.info('outreach.deliver.not_sent', { outboxId: row.id, channel: row.channel, code });
}

/** What {@link applyRefusal} did. */
export interface RefusalOutcome {
  optedOut: boolean;
  undeliverable: boolean;
  /** The outbox row of the next channel, when one was queued. */
  fallbackOutboxId?: string;
  /** The staff task opened when no channel was left. */
  staffTaskId?: string;
}

/**
 * Records a final refusal of a row (from a send or a status callback), in one transaction: the row `failed` or
 * `undeliverable`, its attempt `failed` with the code; an opt-out when the provider says so; for an undeliverable
 * address, the mark and the balance's next channel for the same step, or a staff task when none is left.
 */
export async function applyRefusal(
  deps: Pick<DeliveryDependencies, 'db' | 'cipher' | 'clock' | 'logger' | 'payLinkFor' | 'templates'>,
  row: DeliveryRow,
  refusal: Extract<SendResult, { status: 'failed' }>,
): Promise<RefusalOutcome> {
  const outcome: RefusalOutcome = { optedOut: refusal.optedOut === true, undeliverable: refusal.undeliverable === true };
  await withTransaction(deps.db, async (tx) => {
    const store = new OutreachDeliveryStore(tx, deps.cipher, deps.clock);
    const now = deps.clock.now();
    await store.markFinal(row.id, refusal.undeliverable ? 'undeliverable' : 'failed', refusal.code, refusal.reason);
    await store.updateAttempt(row.id, { status: 'failed', rule: 'delivery', reason: `${refusal.code}: ${refusal.reason}` });
    if (refusal.optedOut && row.channel !== 'letter') {
      await new OutreachRepository(tx, deps.cipher, deps.clock).recordOptOut(row.practiceId, { channel: row.channel, address: row.recipient, source: `provider:${refusal.code}`, at: now });
    }
    if (refusal.undeliverable) {
      await store.markUndeliverable(row.practiceId, row.channel, row.recipient, refusal.code);
      Object.assign(outcome, await nextChannel(deps, tx, row, refusal.code));
    }
  });
  deps.logger.info('outreach.deliver.refused', { outboxId: row.id, channel: row.channel, code: refusal.code, optedOut: outcome.optedOut, undeliverable: outcome.undeliverable, fallbackOutboxId: outcome.fallbackOutboxId, staffTaskId: outcome.staffTaskId });
  return outcome;
}

const FALLBACK_ORDER: readonly MessageChannel[] = ['sms', 'email', 'letter'];

async function nextChannel(
  deps: Pick<DeliveryDependencies, 'cipher' | 'clock' | 'payLinkFor' | 'templates'>,
  tx: Queryable,
  row: DeliveryRow,
  code: string,
): Promise<{ fallbackOutboxId?: string; staffTaskId?: string }> {
  const store = new OutreachDeliveryStore(tx, deps.cipher, deps.clock);
  const outreach = new OutreachRepository(tx, deps.cipher, deps.clock);
  const ledger = new LedgerRepository(tx, deps.cipher, deps.clock);
  const attempt = await store.attemptOf(row.id);
  const balance = await ledger.getBalance(row.balanceId);
  if (!attempt || !balance) return {};
  // The step reached the person another way (day 0 goes by text and email): nothing more to do.
  if ((await store.stepReached(row.balanceId, attempt.stepId)).some((c) => c !== row.channel)) return {};
  if (!balance.outreachEligible) return {};
  const tried = new Set(await store.stepChannels(row.balanceId, attempt.stepId));
  tried.add(row.channel);
  const contact = await ledger.getGuarantorContact(balance.guarantorId);
  const now = deps.clock.now();
  const practice = await new PracticeRepository(tx).findById(row.practiceId);
  for (const channel of FALLBACK_ORDER) {
    if (tried.has(channel) || !practice) continue;
    const recipient = channel === 'sms' ? contact?.phones?.find((p) => /\d/.test(p)) : channel === 'email' ? contact?.email?.trim() || undefined : formatAddress(contact?.address);
    if (!recipient) continue;
    if (channel !== 'letter') {
      if (await store.isUndeliverable(row.practiceId, channel, recipient)) continue;
      const rules = await outreach.contactRules(row.practiceId, { [channel]: recipient });
      if (activeOptOut(rules.optOuts, channel, recipient, now)) continue;
      // Texts need recorded consent (TCPA), as at planning.
      if (channel === 'sms' && !rules.consents.some((c) => c.channel === 'sms' && c.at <= now && (c.revokedAt === undefined || c.revokedAt > now))) continue;
    }
    const template = selectTemplate(deps.templates ?? defaultTemplates, row.template, channel, row.language);
    if (!template) continue;
    const today = localDate(now, practice.timeZone);
    const statementDate = await outreach.cadenceStart(row.practiceId, row.balanceId, today);
    const rendered = renderMessage(template, {
      practiceName: practice.name,
      practicePhone: practice.phone,
      firstName: contact?.name?.given?.[0] ?? null,
      amountDueCents: balance.patientAmount.amount,
      currency: balance.patientAmount.currency,
      statementDate,
      dueDate: dueDateOf(statementDate),
      payLink: payLinkIn(row.body) ?? (deps.payLinkFor ? await deps.payLinkFor(row.practiceId, balance.guarantorId) : null),
    });
    const fallbackOutboxId = await store.addFallback(row, {
      channel, recipient, subject: rendered.subject ?? null, body: rendered.text, html: rendered.html ?? null, language: rendered.language, template: rendered.template,
    });
    await outreach.recordAttempt({
      practiceId: row.practiceId, balanceId: row.balanceId, stepId: attempt.stepId, channel, plannedAt: now, status: 'sent', outboxId: fallbackOutboxId,
      reason: `next channel after ${row.channel} was undeliverable (${code})`, finalNotice: attempt.finalNotice,
    });
    return { fallbackOutboxId };
  }
  const task = await new StaffTaskRepository(tx, deps.clock).open({
    practiceId: row.practiceId, kind: 'undeliverable', balanceId: row.balanceId, guarantorId: balance.guarantorId,
    note: `Could not reach the guarantor for step ${attempt.stepId}: ${row.channel} was undeliverable (${code}) and no other channel is available.`,
    subjectRef: `outbox:${row.id}`,
  });
  return { staffTaskId: task.id };
}

/** The pay link a rendered message carried (its first URL), so a fallback repeats the same link. */
function payLinkIn(body: string): string | undefined {
  return body.match(/https?:\/\/[^\s<>"]+/)?.[0]?.replace(/[.,;:)]+$/, '');
}

function formatAddress(address: PostalAddress | undefined): string | undefined {
  if (!address || !(address.lines ?? []).some((l) => l.trim() !== '') || !(address.postalCode || address.city)) return undefined;
  const cityLine = [address.city, [address.state, address.postalCode].filter(Boolean).join(' ')].filter(Boolean).join(', ');
  return [...(address.lines ?? []), cityLine, address.country].filter((s) => s && s.trim() !== '').join('\n');
}

/** What the delivery job is built from. */
export interface DeliveryJobDependencies extends DeliveryDependencies {
  /** Asks for the job to run again soon (when a run stopped at its limit). */
  enqueueSoon?: (name: string) => void;
}

/** `outreach.deliver`: one delivery run. */
export function outreachDeliverJob(deps: DeliveryJobDependencies): JobDefinition<Record<string, never>> {
  return {
    name: OUTREACH_DELIVER_JOB,
    concurrency: 1,
    async run() {
      const result = await deliverDue(deps);
      if (result.more) deps.enqueueSoon?.(OUTREACH_DELIVER_JOB);
    },
  };
}
