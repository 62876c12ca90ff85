/**
 * Twilio's webhooks (public routes; `application/x-www-form-urlencoded`), each verified with
 * `X-Twilio-Signature` (twilio.validateRequest, the Auth Token, over SETTLE_PUBLIC_URL + the path and query
 * Twilio called): a missing or wrong signature is a 403 and nothing is stored.
 *
 *   POST /webhooks/twilio/status    a message's delivery report: delivered → the outbox row and its attempt
 *                                   `delivered`; undelivered/failed with ErrorCode → 21610 records an opt-out,
 *                                   30003/30005/30006 mark the number undeliverable and queue the next channel,
 *                                   others mark it failed; queued/accepted/sending/sent change nothing.
 *   POST /webhooks/twilio/inbound   a patient's reply (TwiML answer): STOP and the other opt-out words opt the
 *                                   number out at once with one confirmation; START/UNSTOP opt it back in;
 *                                   HELP answers with the practice's phone; PAY sends the pay link again;
 *                                   anything else opens a staff task (no automatic answer).
 *
 * Each inbound message id is handled once (Twilio retries). The number's practice is found by its blind index
 * (LedgerRepository.findByContact); an opt-out from a number no practice knows applies to every practice.
 * Logs carry message ids, intents and practice ids: never the number or the text.
 */
import type { Request } from 'express';
import twilio from 'twilio';
import { ApiError } from '../api/problem.ts';
import type { AnyRoute } from '../api/routes.ts';
import type { Logger } from '../config/logger.ts';
import type { Clock } from '../domain/clock.ts';
import { classifyInbound, keywordReply, type KeywordIntent } from '../domain/outreach-keywords.ts';
import { chooseLanguage, type Language } from '../domain/outreach.ts';
import type { Practice } from '../domain/practice.ts';
import { withTransaction, type Database } from '../store/database.ts';
import { LedgerRepository } from '../store/ledger.ts';
import { OutreachDeliveryStore } from '../store/outreach-delivery.ts';
import { OutreachRepository } from '../store/outreach.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { PracticeRepository } from '../store/practices.ts';
import type { PayLinkKeyRing } from '../domain/pay-link.ts';
import { payLinkForGuarantor } from '../store/guarantor-pay-links.ts';
import { StaffTaskRepository } from '../store/staff-tasks.ts';
import { applyRefusal } from './deliver.ts';
import type { TemplateCatalogue } from './templates.ts';
import { TWILIO_INBOUND_PATH, TWILIO_STATUS_PATH, twilioFailure } from './twilio-channel.ts';

/** What the webhooks need. */
export interface TwilioWebhookDependencies {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
  logger: Logger;
  /** TWILIO_AUTH_TOKEN: signatures are checked with it. Unset: the webhooks answer 500 webhook_not_configured. */
  authToken: string | undefined;
  /** SETTLE_PUBLIC_URL: the URL Twilio signs is this plus the path. */
  publicUrl: string | undefined;
  /** A guarantor's pay link (payLinkForGuarantor), for PAY and for fallback messages. */
  payLinkFor?: (practiceId: string, guarantorId: string) => Promise<string>;
  templates?: TemplateCatalogue;
  /** Asks the delivery job to run soon (a fallback message was queued). */
  wakeDelivery?: () => void;
}

const MAX_BODY = 64 * 1024;

/** The form parameters of a webhook, whether or not a body parser ran first. */
async function formOf(req: Request): Promise<Record<string, string>> {
  if (!req.is('application/x-www-form-urlencoded')) throw new ApiError(415, 'unsupported_media_type', 'Twilio webhooks are application/x-www-form-urlencoded.');
  const parsed: unknown = req.body;
  if (parsed && typeof parsed === 'object' && !Buffer.isBuffer(parsed)) return parsed as Record<string, string>;
  let text = typeof parsed === 'string' ? parsed : Buffer.isBuffer(parsed) ? parsed.toString('utf8') : undefined;
  if (text === undefined) {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY) throw new ApiError(413, 'payload_too_large', `A Twilio webhook body is at most ${MAX_BODY} bytes.`);
      chunks.push(chunk);
    }
    text = Buffer.concat(chunks).toString('utf8');
  }
  return Object.fromEntries(new URLSearchParams(text));
}

/** Reads and verifies one webhook. @throws ApiError 500 when unconfigured, 403 when the signature does not match. */
async function verified(deps: TwilioWebhookDependencies, req: Request): Promise<Record<string, string>> {
  if (!deps.authToken || !deps.publicUrl) {
    throw new ApiError(500, 'webhook_not_configured', 'Twilio webhooks need TWILIO_AUTH_TOKEN and SETTLE_PUBLIC_URL to verify signatures.');
  }
  const params = await formOf(req);
  const url = `${deps.publicUrl.replace(/\/+$/, '')}${req.originalUrl}`;
  const signature = req.get('x-twilio-signature');
  if (!signature || !twilio.validateRequest(deps.authToken, signature, url, params)) {
    deps.logger.warn('twilio.webhook.bad_signature', { path: req.path });
    throw new ApiError(403, 'invalid_signature', `X-Twilio-Signature does not match this request to ${url}.`);
  }
  return params;
}

/** Applies one status callback. @returns what changed (ids only). */
export async function handleTwilioStatus(deps: TwilioWebhookDependencies, params: Record<string, string>): Promise<{ outboxId: string | null; outcome: string }> {
  const sid = params.MessageSid ?? params.SmsSid;
  const status = params.MessageStatus ?? params.SmsStatus;
  if (!sid || !status) throw new ApiError(400, 'invalid_request', 'A status callback needs MessageSid and MessageStatus.');
  const store = new OutreachDeliveryStore(deps.db.pool, deps.cipher, deps.clock);
  const row = await store.findByProviderMessageId(sid);
  if (!row) {
    deps.logger.info('twilio.status.unknown_message', { messageSid: sid, status });
    return { outboxId: null, outcome: 'unknown-message' };
  }
  if (status === 'delivered' || status === 'read') {
    if (row.state !== 'sent') return { outboxId: row.id, outcome: 'unchanged' };
    await withTransaction(deps.db, async (tx) => {
      await store.on(tx).markFinal(row.id, 'delivered', null, null);
      await store.on(tx).updateAttempt(row.id, { status: 'delivered', reason: 'delivered (Twilio status callback)' });
    });
    return { outboxId: row.id, outcome: 'delivered' };
  }
  if (status === 'undelivered' || status === 'failed') {
    if (row.state !== 'sent' && row.state !== 'delivered') return { outboxId: row.id, outcome: 'unchanged' };
    const refusal = params.ErrorCode ? twilioFailure(params.ErrorCode, 400) : { status: 'failed' as const, code: status, reason: `Twilio reported the message ${status} without an error code`, transient: false };
    if (refusal.status !== 'failed') return { outboxId: row.id, outcome: 'unchanged' };
    const outcome = await applyRefusal(deps, row, { ...refusal, transient: false });
    if (outcome.fallbackOutboxId) deps.wakeDelivery?.();
    return { outboxId: row.id, outcome: outcome.optedOut ? 'opted-out' : outcome.undeliverable ? 'undeliverable' : 'failed' };
  }
  return { outboxId: row.id, outcome: 'unchanged' };
}

interface Match {
  practice: Practice;
  guarantorIds: string[];
  language: string | undefined;
}

/** The practices (and guarantors) that know a phone number, by blind index. */
async function practicesOf(deps: TwilioWebhookDependencies, phone: string): Promise<Match[]> {
  const ledger = new LedgerRepository(deps.db.pool, deps.cipher, deps.clock);
  const matches: Match[] = [];
  for (const practice of await new PracticeRepository(deps.db.pool).list()) {
    let owners: { ownerType: 'patient' | 'guarantor'; id: string }[];
    try {
      owners = await ledger.findByContact(practice.id, 'phone', phone);
    } catch {
      return [];
    }
    if (owners.length === 0) continue;
    const guarantorIds: string[] = [];
    let language: string | undefined;
    for (const owner of owners) {
      const id = owner.ownerType === 'guarantor' ? owner.id : await ledger.ensureGuarantor(practice.id, { selfPatientId: owner.id });
      if (!guarantorIds.includes(id)) guarantorIds.push(id);
      language ??= (await ledger.getGuarantorContact(id))?.language;
    }
    matches.push({ practice, guarantorIds, language });
  }
  return matches;
}

/** Handles one inbound text. @returns the TwiML reply text (null: no reply) and the intent. */
export async function handleTwilioInbound(deps: TwilioWebhookDependencies, params: Record<string, string>): Promise<{ intent: KeywordIntent | 'duplicate'; reply: string | null }> {
  const sid = params.MessageSid ?? params.SmsMessageSid ?? params.SmsSid;
  const from = params.From;
  if (!sid || !from) throw new ApiError(400, 'invalid_request', 'An inbound message needs MessageSid and From.');
  const store = new OutreachDeliveryStore(deps.db.pool, deps.cipher, deps.clock);
  if (await store.inboundSeen(sid)) return { intent: 'duplicate', reply: null };
  const { intent, keyword } = classifyInbound(params.Body ?? '');
  const matches = await practicesOf(deps, from);
  const targets = matches.length > 0 || (intent !== 'opt-out' && intent !== 'opt-in') ? matches : (await new PracticeRepository(deps.db.pool).list()).map((practice) => ({ practice, guarantorIds: [], language: undefined }));
  const spanishWord = keyword !== undefined && ['ALTO', 'PARAR', 'DETENER', 'CANCELAR', 'BAJA', 'AYUDA', 'PAGAR', 'PAGO', 'INICIAR', 'COMENZAR'].includes(keyword);
  const language: Language = spanishWord ? 'es' : chooseLanguage(matches[0]?.language);
  let payLink: string | null = null;
  let replyPractice = targets[0]?.practice;
  if (intent === 'pay' && deps.payLinkFor) {
    const ledger = new LedgerRepository(deps.db.pool, deps.cipher, deps.clock);
    search: for (const match of matches) {
      for (const guarantorId of match.guarantorIds) {
        const { balances } = await ledger.listBalances(match.practice.id, { guarantorId, limit: 50 });
        if (!balances.some((b) => b.patientAmount.amount > 0 && b.status !== 'paid' && b.status !== 'written_off')) continue;
        payLink = await deps.payLinkFor(match.practice.id, guarantorId);
        replyPractice = match.practice;
        break search;
      }
    }
  }
  const now = deps.clock.now();
  let fresh = targets.length === 0;
  await withTransaction(deps.db, async (tx) => {
    const outreach = new OutreachRepository(tx, deps.cipher, deps.clock);
    for (const { practice, guarantorIds } of targets) {
      if (!(await store.on(tx).recordInbound(practice.id, sid, intent))) continue;
      fresh = true;
      if (intent === 'opt-out') await outreach.recordOptOut(practice.id, { channel: 'sms', address: from, source: `sms-reply:${keyword ?? 'STOP'}`, at: now });
      if (intent === 'opt-in') await outreach.optBackIn(practice.id, 'sms', from, now);
      if (intent === 'other') {
        await new StaffTaskRepository(tx, deps.clock).open({
          practiceId: practice.id, kind: 'other', guarantorId: guarantorIds[0] ?? null,
          note: `Text reply from the guarantor: ${(params.Body ?? '').slice(0, 500)}`, subjectRef: `twilio:${sid}`,
        });
      }
    }
  });
  if (!fresh) return { intent: 'duplicate', reply: null };
  deps.logger.info('twilio.inbound', { messageSid: sid, intent, practiceIds: targets.map((t) => t.practice.id) });
  if (!replyPractice) return { intent, reply: intent === 'opt-out' ? 'You are unsubscribed and will get no more texts from us. Reply START to resubscribe.' : null };
  // Without pay links wired (no payments set up), PAY gets the practice's contact instead of "nothing is due".
  const answered: KeywordIntent = intent === 'pay' && !deps.payLinkFor ? 'help' : intent;
  const reply = keywordReply(answered, language, { practiceName: replyPractice.name, practicePhone: replyPractice.phone, ...(answered === 'pay' ? { payLink } : {}) });
  return { intent, reply };
}

/** The two webhook routes, for the API's routes array. */
export function twilioWebhookRoutes(deps: TwilioWebhookDependencies): AnyRoute[] {
  return [
    {
      method: 'post',
      path: TWILIO_STATUS_PATH,
      summary: "Twilio message status callback (signed): delivered, undelivered and failed reports update the outbox row and its attempt.",
      tag: 'outreach',
      access: 'public',
      responses: {
        200: { description: 'Applied (or not about a Settle message).', schema: { type: 'object', properties: { received: { const: true }, outboxId: { type: ['string', 'null'] }, outcome: { type: 'string' } } } },
        403: { description: 'invalid_signature: X-Twilio-Signature does not match; nothing stored.', contentType: 'application/problem+json' },
      },
      handler: async ({ req }) => ({ received: true, ...(await handleTwilioStatus(deps, await verified(deps, req))) }),
    },
    {
      method: 'post',
      path: TWILIO_INBOUND_PATH,
      summary: 'Twilio incoming message (signed): STOP/START/HELP/PAY keywords, answered with TwiML.',
      tag: 'outreach',
      access: 'public',
      responses: {
        200: { description: 'TwiML: the one automatic reply, or an empty Response.', contentType: 'text/xml', schema: { type: 'string' } },
        403: { description: 'invalid_signature: X-Twilio-Signature does not match; nothing stored.', contentType: 'application/problem+json' },
      },
      handler: async ({ req, res }) => {
        const { reply } = await handleTwilioInbound(deps, await verified(deps, req));
        const twiml = new twilio.twiml.MessagingResponse();
        if (reply) twiml.message(reply);
        res.status(200).type('text/xml').send(twiml.toString());
        return undefined;
      },
    },
  ];
}

/** What the API has for the webhooks: its own dependencies, TWILIO_AUTH_TOKEN and the pay-link keys. */
export interface TwilioApiWiring {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
  logger: Logger;
  publicUrl?: string | undefined;
  authToken?: string | undefined;
  /** The pay-link keys (`PaymentsWiring.keys`); absent: PAY answers that nothing is due. */
  payLinkKeys?: PayLinkKeyRing | undefined;
}

/** The webhook routes as the API mounts them, with PAY answered by {@link payLinkForGuarantor}. */
export function twilioRoutesForApi(wiring: TwilioApiWiring): AnyRoute[] {
  const { db, clock, publicUrl, payLinkKeys } = wiring;
  return twilioWebhookRoutes({
    db, cipher: wiring.cipher, clock, logger: wiring.logger, authToken: wiring.authToken, publicUrl,
    ...(payLinkKeys ? { payLinkFor: (practiceId: string, guarantorId: string) => payLinkForGuarantor({ db, clock, keys: payLinkKeys, publicUrl }, { practiceId, guarantorId }) } : {}),
  });
}
