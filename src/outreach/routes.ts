/**
 * Staff API over outreach: RouteSpecs for the API to mount.
 *   GET  /outbox                   messages written while no channel is configured; newest first, paged; recipients masked
 *   GET  /balances/{id}/timeline   attempts with statuses, suppressions with rule and reason, and each guard's verdict
 *   POST /opt-outs                 manual opt-out of a phone or email (audited, with the calling key)
 *   GET  /opt-outs                 opt-outs, newest first, addresses masked
 * Phones, emails and mailing addresses never leave in full: `***-***-0134`, `m***@example.com`, `*** (mailing address)`.
 */
import { ApiError } from '../api/problem.ts';
import type { AnyRoute, JsonSchema } from '../api/routes.ts';
import type { Principal } from '../domain/access.ts';
import type { Clock } from '../domain/clock.ts';
import type { MessageChannel } from '../domain/outreach.ts';
import { AuditLog } from '../store/audit.ts';
import { withTransaction, type Database } from '../store/database.ts';
import { LedgerRepository } from '../store/ledger.ts';
import { OutreachRepository } from '../store/outreach.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';

/** What the outreach routes need. */
export interface OutreachRoutesDeps {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
}

/** A recipient as staff may see it: never in full. */
export function maskRecipient(channel: MessageChannel, value: string | null): string | null {
  if (value === null) return null;
  if (channel === 'sms') {
    const digits = value.replace(/\D/g, '');
    return `***-***-${digits.slice(-4).padStart(4, '*')}`;
  }
  if (channel === 'email') {
    const at = value.lastIndexOf('@');
    if (at <= 0) return '***';
    return `${value[0]}***@${value.slice(at + 1).trim().toLowerCase()}`;
  }
  return '*** (mailing address)';
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const PAGE_QUERY: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
    offset: { type: 'integer', minimum: 0, default: 0 },
  },
};
const actorOf = (principal: Principal | undefined) => (principal ? `apikey:${principal.keyId}` : 'anonymous');

/** The outbox, timeline and opt-out routes. */
export function outreachRoutes(deps: OutreachRoutesDeps): AnyRoute[] {
  const store = new OutreachRepository(deps.db.pool, deps.cipher, deps.clock);
  const ledger = new LedgerRepository(deps.db.pool, deps.cipher, deps.clock);
  const audit = new AuditLog(deps.db, deps.clock);
  return [
    {
      method: 'get',
      path: '/outbox',
      summary: 'Messages written to the outbox (every send, while no Twilio/SMTP/print channel is configured), newest first.',
      tag: 'outreach',
      access: ['staff'],
      query: { ...PAGE_QUERY, properties: { ...(PAGE_QUERY.properties as object), balanceId: { type: 'string', format: 'uuid' } } },
      responses: {
        200: {
          description: 'A page of messages; recipients masked.',
          schema: {
            type: 'object',
            properties: {
              messages: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    id: { type: 'string' }, balanceId: { type: 'string' }, channel: { enum: ['sms', 'email', 'letter'] }, recipient: { type: 'string' },
                    subject: { type: ['string', 'null'] }, body: { type: 'string' }, language: { enum: ['en', 'es'] }, template: { type: 'string' },
                    createdAt: { type: 'string', format: 'date-time' },
                  },
                },
              },
              nextOffset: { type: ['integer', 'null'] },
            },
          },
        },
      },
      handler: async ({ principal, query }: { principal: Principal | undefined; query: { limit: number; offset: number; balanceId?: string } }) => {
        const messages = await store.listOutbox(principal!.practiceId, { limit: query.limit + 1, offset: query.offset, ...(query.balanceId ? { balanceId: query.balanceId } : {}) });
        const page = messages.slice(0, query.limit);
        return {
          messages: page.map((m) => ({
            id: m.id, balanceId: m.balanceId, channel: m.channel, recipient: maskRecipient(m.channel, m.recipient), subject: m.subject, body: m.body,
            language: m.language, template: m.template, createdAt: m.createdAt,
          })),
          nextOffset: messages.length > query.limit ? query.offset + query.limit : null,
        };
      },
    },
    {
      method: 'get',
      path: '/balances/{id}/timeline',
      summary: "A balance's outreach: every attempt with its status, suppressions with the rule and reason, and each guard's verdict.",
      tag: 'outreach',
      access: ['staff'],
      responses: {
        200: {
          description: 'The timeline, oldest first.',
          schema: {
            type: 'object',
            properties: {
              balanceId: { type: 'string' },
              events: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    attemptId: { type: 'string' }, stepId: { type: 'string' }, channel: { type: 'string' }, at: { type: 'string', format: 'date-time' },
                    status: { type: 'string' }, rule: { type: ['string', 'null'] }, reason: { type: ['string', 'null'] }, outboxId: { type: ['string', 'null'] },
                    finalNotice: { type: 'boolean' }, verdicts: { type: 'array' },
                  },
                },
              },
            },
          },
        },
        404: { description: 'No such balance in this practice.' },
      },
      handler: async ({ principal, params }) => {
        const id = params.id!;
        const balance = UUID.test(id) ? await ledger.getBalance(id) : undefined;
        if (!balance || balance.practiceId !== principal!.practiceId) throw new ApiError(404, 'not_found', `No balance ${id} in this practice.`);
        const attempts = await store.attempts(balance.id);
        return {
          balanceId: balance.id,
          events: attempts.map((a) => ({
            attemptId: a.id, stepId: a.stepId, channel: a.channel, at: a.plannedAt, status: a.status, rule: a.rule, reason: a.reason,
            outboxId: a.outboxId, finalNotice: a.finalNotice, verdicts: a.verdicts,
          })),
        };
      },
    },
    {
      method: 'post',
      path: '/opt-outs',
      summary: 'Opts a phone number (texts) or email address out at once, on behalf of the person; audited.',
      tag: 'outreach',
      access: ['staff'],
      body: {
        type: 'object',
        additionalProperties: false,
        required: ['channel', 'address'],
        properties: {
          channel: { enum: ['sms', 'email'] },
          address: { type: 'string', minLength: 3, maxLength: 320, description: 'The phone number (any format) or email address.' },
          note: { type: 'string', maxLength: 500, description: 'Why (kept in the audit trail; no PHI please).' },
        },
      },
      responses: {
        201: {
          description: 'The opt-out, address masked.',
          schema: { type: 'object', properties: { id: { type: 'string' }, channel: { type: 'string' }, address: { type: 'string' }, source: { type: 'string' }, at: { type: 'string', format: 'date-time' } } },
        },
      },
      handler: async ({ principal, body }: { principal: Principal | undefined; body: { channel: 'sms' | 'email'; address: string; note?: string } }) => {
        const address = body.address.trim();
        if (body.channel === 'sms' ? !/\d{4}/.test(address.replace(/\D/g, '')) : !/^[^\s@]+@[^\s@]+$/.test(address)) {
          throw new ApiError(400, 'invalid_request', `That is not a ${body.channel === 'sms' ? 'phone number' : 'email address'}.`, [{ path: '/address', message: 'is not valid' }]);
        }
        const source = `staff:${actorOf(principal)}`;
        const at = deps.clock.now();
        const id = await withTransaction(deps.db, async (tx) => {
          const optOutId = await store.on(tx).recordOptOut(principal!.practiceId, { channel: body.channel, address, source, at });
          await audit.append({
            practiceId: principal!.practiceId, actor: actorOf(principal), action: 'optout.create', entityType: 'opt_out', entityId: optOutId,
            detail: { channel: body.channel, ...(body.note ? { note: body.note } : {}) },
          }, tx);
          return optOutId;
        });
        return { id, channel: body.channel, address: maskRecipient(body.channel, address), source, at };
      },
    },
    {
      method: 'get',
      path: '/opt-outs',
      summary: 'Opt-outs (STOP, unsubscribes, carrier and staff opt-outs), newest first, addresses masked.',
      tag: 'outreach',
      access: ['staff'],
      query: PAGE_QUERY,
      responses: {
        200: {
          description: 'A page of opt-outs.',
          schema: {
            type: 'object',
            properties: {
              optOuts: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    id: { type: 'string' }, channel: { type: 'string' }, address: { type: ['string', 'null'] }, source: { type: 'string' },
                    at: { type: 'string', format: 'date-time' }, optedBackInAt: { type: ['string', 'null'], format: 'date-time' },
                  },
                },
              },
              nextOffset: { type: ['integer', 'null'] },
            },
          },
        },
      },
      handler: async ({ principal, query }: { principal: Principal | undefined; query: { limit: number; offset: number } }) => {
        const rows = await store.listOptOuts(principal!.practiceId, { limit: query.limit + 1, offset: query.offset });
        return {
          optOuts: rows.slice(0, query.limit).map((o) => ({ ...o, address: maskRecipient(o.channel, o.address) })),
          nextOffset: rows.length > query.limit ? query.offset + query.limit : null,
        };
      },
    },
  ];
}
