/**
 * Staff API over outreach: RouteSpecs for the API to mount.
 *   GET  /outbox                   messages written while no channel is configured; newest first, paged; recipients masked
 *   GET  /balances/{id}/timeline   attempts with statuses, suppressions with rule and reason, and each guard's verdict
 *   POST /opt-outs                 manual opt-out of a phone or email (audited, with the calling key)
 *   GET  /opt-outs                 opt-outs, newest first, addresses masked
 *   GET  /templates                every message template (en/es, per channel) and the fields it uses
 *   POST /templates/{name}/preview a template rendered with sample values (or those given), with its SMS segments
 *   GET  /agency/ready             agency-ready balances (ids, amounts, dates)
 *   POST /agency/exports           the agency CSV; marks those balances sent_to_agency (admin; audited PHI export)
 *   POST /agency/recalls           return balances from the agency (audited)
 * Phones, emails and mailing addresses never leave in full: `***-***-0134`, `m***@example.com`, `*** (mailing address)`.
 */
import { ApiError } from '../api/problem.ts';
import type { AnyRoute, JsonSchema } from '../api/routes.ts';
import type { Principal } from '../domain/access.ts';
import type { Clock } from '../domain/clock.ts';
import type { MessageChannel } from '../domain/outreach.ts';
import { AuditLog } from '../store/audit.ts';
import { withTransaction, type Database } from '../store/database.ts';
import { AgencyError, agencyReady, exportToAgency, recallFromAgency } from './agency.ts';
import { defaultTemplates, previewTemplate, TemplateError, TEMPLATE_FIELDS, type MessageValues, type TemplateCatalogue } from './templates.ts';
import { LedgerRepository } from '../store/ledger.ts';
import { OutreachRepository } from '../store/outreach.ts';
import { DELIVERY_STATES, OutreachDeliveryStore, type DeliveryState } from '../store/outreach-delivery.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';

/** What the outreach routes need. */
export interface OutreachRoutesDeps {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
  /** The templates previews render (default: Settle's own). */
  templates?: TemplateCatalogue;
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
      summary: 'Every message outreach wrote, newest first, with its delivery state (held while no channel is configured for its kind).',
      tag: 'outreach',
      access: ['staff'],
      query: { ...PAGE_QUERY, properties: { ...(PAGE_QUERY.properties as object), balanceId: { type: 'string', format: 'uuid' }, state: { enum: [...DELIVERY_STATES] } } },
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
                    createdAt: { type: 'string', format: 'date-time' }, state: { enum: [...DELIVERY_STATES] }, deliveryAttempts: { type: 'integer' },
                    nextAttemptAt: { type: ['string', 'null'], format: 'date-time' }, lastErrorCode: { type: ['string', 'null'] },
                  },
                },
              },
              nextOffset: { type: ['integer', 'null'] },
            },
          },
        },
      },
      handler: async ({ principal, query }: { principal: Principal | undefined; query: { limit: number; offset: number; balanceId?: string; state?: DeliveryState } }) => {
        const messages = await new OutreachDeliveryStore(deps.db.pool, deps.cipher, deps.clock).list(principal!.practiceId, {
          limit: query.limit + 1, offset: query.offset, ...(query.balanceId ? { balanceId: query.balanceId } : {}), ...(query.state ? { state: query.state } : {}),
        });
        const page = messages.slice(0, query.limit);
        return {
          messages: page.map((m) => ({
            id: m.id, balanceId: m.balanceId, channel: m.channel, recipient: maskRecipient(m.channel, m.recipient), subject: m.subject, body: m.body,
            language: m.language, template: m.template, createdAt: m.createdAt,
            state: m.state, deliveryAttempts: m.deliveryAttempts, nextAttemptAt: m.nextAttemptAt, lastErrorCode: m.lastErrorCode,
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
    ...templateRoutes(deps.templates ?? defaultTemplates),
    ...agencyRoutes(deps),
  ];
}

const CHANNEL = { enum: ['sms', 'email', 'letter'] };
const LANGUAGE = { enum: ['en', 'es'] };
const VALUES_SCHEMA: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  description: 'Values to render with instead of the samples (only the allow-listed fields).',
  properties: {
    practiceName: { type: 'string', minLength: 1, maxLength: 200 },
    practicePhone: { type: 'string', maxLength: 40 },
    firstName: { type: 'string', maxLength: 100 },
    amountDueCents: { type: 'integer', minimum: -9007199254740991, maximum: 9007199254740991, description: 'Integer minor units.' },
    currency: { type: 'string', pattern: '^[A-Z]{3}$' },
    dueDate: { type: 'string', format: 'date' },
    statementDate: { type: 'string', format: 'date' },
    payLink: { type: 'string', maxLength: 500 },
  },
};

/** GET /templates and POST /templates/{name}/preview. */
function templateRoutes(catalogue: TemplateCatalogue): AnyRoute[] {
  return [
    {
      method: 'get',
      path: '/templates',
      summary: 'Every message template: name, channel, language, subject, text and the (allow-listed) fields it uses.',
      tag: 'outreach',
      access: ['staff'],
      responses: {
        200: {
          description: 'The templates.',
          schema: {
            type: 'object',
            properties: {
              fields: { type: 'array', items: { type: 'string' } },
              templates: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    name: { type: 'string' }, channel: CHANNEL, language: LANGUAGE, subject: { type: ['string', 'null'] }, body: { type: 'string' },
                    fields: { type: 'array', items: { type: 'string' } },
                  },
                },
              },
            },
          },
        },
      },
      handler: () => ({
        fields: [...TEMPLATE_FIELDS],
        templates: catalogue.all()
          .map((t) => ({ name: t.name, channel: t.channel, language: t.language, subject: t.subject ?? null, body: t.body, fields: t.fields }))
          .sort((a, b) => a.name.localeCompare(b.name) || a.channel.localeCompare(b.channel) || a.language.localeCompare(b.language)),
      }),
    },
    {
      method: 'post',
      path: '/templates/{name}/preview',
      summary: "A template rendered for a channel and language with sample values (a realistic practice, first name, amount and pay link), or the values given; texts report their GSM-7 segments.",
      tag: 'outreach',
      access: ['staff'],
      body: {
        type: 'object',
        additionalProperties: false,
        required: ['channel'],
        properties: { channel: CHANNEL, language: { ...LANGUAGE, default: 'en' }, values: VALUES_SCHEMA },
      },
      responses: {
        200: {
          description: 'The rendered message (language: the one used, English when the template has no Spanish version).',
          schema: {
            type: 'object',
            properties: {
              template: { type: 'string' }, channel: CHANNEL, language: LANGUAGE, subject: { type: ['string', 'null'] }, text: { type: 'string' },
              html: { type: ['string', 'null'] },
              sms: { type: ['object', 'null'], properties: { encoding: { enum: ['GSM-7', 'UCS-2'] }, units: { type: 'integer' }, segments: { type: 'integer' } } },
            },
          },
        },
        400: { description: 'A value the template cannot use (the problem names the field).' },
        404: { description: 'No such template for that channel.' },
      },
      handler: ({ params, body }: { params: Record<string, string>; body: { channel: MessageChannel; language: 'en' | 'es'; values?: Partial<MessageValues> } }) => {
        let rendered;
        try {
          rendered = previewTemplate(catalogue, params.name!, body.channel, body.language, body.values ?? {});
        } catch (error) {
          if (error instanceof TemplateError) throw new ApiError(400, 'invalid_request', error.message, [{ path: `/values/${error.field ?? ''}`, message: error.message }]);
          if (error instanceof RangeError) throw new ApiError(400, 'invalid_request', error.message, [{ path: '/values', message: error.message }]);
          throw error;
        }
        if (!rendered) throw new ApiError(404, 'not_found', `No ${body.channel} template "${params.name}".`);
        return {
          template: rendered.template, channel: rendered.channel, language: rendered.language, subject: rendered.subject ?? null, text: rendered.text,
          html: rendered.html ?? null, sms: rendered.sms ?? null,
        };
      },
    },
  ];
}

/** GET /agency/ready, POST /agency/exports, POST /agency/recalls. */
function agencyRoutes(deps: OutreachRoutesDeps): AnyRoute[] {
  return [
    {
      method: 'get',
      path: '/agency/ready',
      summary: 'Agency-ready balances (their cadence reached its agency step; still open), longest-waiting first: ids, amounts and dates only.',
      tag: 'agency',
      access: ['staff'],
      query: PAGE_QUERY,
      responses: {
        200: {
          description: 'A page of agency-ready balances.',
          schema: {
            type: 'object',
            properties: {
              balances: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    balanceId: { type: 'string' }, accountRef: { type: 'string' }, amountMinor: { type: 'integer' }, currency: { type: 'string' },
                    readySince: { type: 'string', format: 'date-time' }, firstStatementDate: { type: ['string', 'null'], format: 'date' },
                  },
                },
              },
              nextOffset: { type: ['integer', 'null'] },
            },
          },
        },
      },
      handler: async ({ principal, query }: { principal: Principal | undefined; query: { limit: number; offset: number } }) => {
        const rows = await agencyReady(deps, principal!.practiceId, { limit: query.limit + 1, offset: query.offset });
        return { balances: rows.slice(0, query.limit), nextOffset: rows.length > query.limit ? query.offset + query.limit : null };
      },
    },
    {
      method: 'post',
      path: '/agency/exports',
      summary: 'Hands every agency-ready balance to the agency: answers the CSV it needs (account ref, guarantor name, mailing address, phone, amount, first statement and last payment dates; nothing clinical) and marks those balances sent_to_agency, which stops all outreach. Audited as a PHI export.',
      tag: 'agency',
      access: ['admin'],
      responses: {
        200: { description: 'The CSV (header only when nothing was ready); headers X-Settle-Export-Id and X-Settle-Balance-Count.', contentType: 'text/csv', schema: { type: 'string' } },
      },
      handler: async ({ principal, res }) => {
        const done = await exportToAgency(deps, { practiceId: principal!.practiceId, actor: actorOf(principal) });
        const day = deps.clock.now().toISOString().slice(0, 10);
        res.status(200)
          .set('content-type', 'text/csv; charset=utf-8')
          .set('content-disposition', `attachment; filename="agency-${day}.csv"`)
          .set('cache-control', 'no-store')
          .set('x-settle-balance-count', String(done.balanceCount))
          .set('x-settle-export-id', done.exportId ?? '')
          .send(done.csv);
        return undefined;
      },
    },
    {
      method: 'post',
      path: '/agency/recalls',
      summary: 'Returns balances from the agency: status back to open (recorded with the calling key, audited). All or nothing: any id at fault changes nothing.',
      tag: 'agency',
      access: ['staff'],
      body: {
        type: 'object',
        additionalProperties: false,
        required: ['balanceIds'],
        properties: {
          balanceIds: { type: 'array', minItems: 1, maxItems: 1000, items: { type: 'string', format: 'uuid' } },
          note: { type: 'string', maxLength: 500, description: 'Why (kept in the status history; no PHI please).' },
        },
      },
      responses: {
        200: { description: 'The recalled balances.', schema: { type: 'object', properties: { recalled: { type: 'array', items: { type: 'string' } } } } },
        400: { description: 'A balance is not this practice\'s or not sent_to_agency; the problem lists each.' },
      },
      handler: async ({ principal, body }: { principal: Principal | undefined; body: { balanceIds: string[]; note?: string } }) => {
        try {
          const recalled = await recallFromAgency(deps, { practiceId: principal!.practiceId, actor: actorOf(principal), balanceIds: body.balanceIds, ...(body.note ? { note: body.note } : {}) });
          return { recalled };
        } catch (error) {
          if (error instanceof AgencyError) {
            throw new ApiError(400, 'invalid_request', error.message, error.problems.map((p) => ({ path: `/balanceIds/${body.balanceIds.findIndex((id) => id.trim().toLowerCase() === p.balanceId)}`, message: p.reason })));
          }
          throw error;
        }
      },
    },
  ];
}
