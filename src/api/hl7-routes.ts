/**
 * The HL7v2 message store over the API: search (staff, integration), view one with its content (staff;
 * audited as `hl7.message.view`), and reprocess a filtered set (integration).
 */
import type { Principal } from '../domain/access.ts';
import type { Clock } from '../domain/clock.ts';
import { EmptyFilterError, reprocessHl7Messages, viewHl7Message } from '../connectors/hl7v2/admin.ts';
import type { Database } from '../store/database.ts';
import { Hl7MessageAdmin, InvalidCursorError, type Hl7MessageFilter, type Hl7MessageStatus } from '../store/hl7-messages.ts';
import { ApiError } from './problem.ts';
import type { AnyRoute, JsonSchema } from './routes.ts';

const STATUSES: Hl7MessageStatus[] = ['received', 'processed', 'failed'];

/** Filter properties shared by the search query and the reprocess body. */
const FILTER_PROPERTIES: Record<string, JsonSchema> = {
  type: { type: 'string', pattern: '^[A-Z][A-Z0-9]{2}(\\^[A-Z0-9]{3})?$', description: 'Message type and trigger (`DFT^P03`) or just the type (`DFT`).' },
  status: { enum: STATUSES },
  sender: { type: 'string', minLength: 1, maxLength: 400, description: 'MSH-3 sending application, or `application|facility` (MSH-3 and MSH-4).' },
  connector: { type: 'string', minLength: 1, maxLength: 64 },
  controlId: { type: 'string', minLength: 1, maxLength: 199, description: 'MSH-10, exactly.' },
  since: { type: 'string', anyOf: [{ format: 'date-time' }, { format: 'date' }], description: 'Received at or after (ISO 8601; a date means its midnight UTC).' },
  until: { type: 'string', anyOf: [{ format: 'date-time' }, { format: 'date' }], description: 'Received before.' },
};

const SUMMARY_PROPERTIES: Record<string, JsonSchema> = {
  id: { type: 'string', format: 'uuid' },
  connector: { type: 'string' },
  controlId: { type: 'string', description: 'MSH-10.' },
  messageType: { type: 'string', description: 'MSH-9 type^trigger.' },
  sendingApplication: { type: 'string' },
  sendingFacility: { type: 'string' },
  receivedAt: { type: 'string', format: 'date-time' },
  status: { enum: STATUSES },
  error: { type: ['string', 'null'] },
  statusChangedAt: { type: ['string', 'null'], format: 'date-time' },
  charset: { enum: ['UTF-8', 'ISO-8859-1'] },
};

const SUMMARY_SCHEMA: JsonSchema = { type: 'object', properties: { ...SUMMARY_PROPERTIES, sizeChars: { type: 'integer' } } };
const MESSAGE_SCHEMA: JsonSchema = {
  type: 'object',
  properties: { ...SUMMARY_PROPERTIES, raw: { type: 'string', description: 'The message text, segments separated by CR.' } },
};

interface FilterInput {
  type?: string;
  status?: Hl7MessageStatus;
  sender?: string;
  connector?: string;
  controlId?: string;
  since?: string;
  until?: string;
}

function toFilter(input: FilterInput & { ids?: string[] }): Hl7MessageFilter {
  return {
    type: input.type,
    status: input.status,
    sender: input.sender,
    connector: input.connector,
    controlId: input.controlId,
    since: input.since === undefined ? undefined : new Date(input.since),
    until: input.until === undefined ? undefined : new Date(input.until),
    ids: input.ids,
  };
}

function actor(principal: Principal | undefined): string {
  return principal ? `apikey:${principal.keyId}` : 'anonymous';
}

function shown<T extends { practiceId: string; rawBytesCharset: string }>(record: T) {
  const { practiceId: _practiceId, rawBytesCharset, ...rest } = record;
  return { ...rest, charset: rawBytesCharset };
}

/** `GET /hl7/messages`, `GET /hl7/messages/{id}`, `POST /hl7/messages/reprocess`. */
export function hl7Routes(db: Database, clock: Clock): AnyRoute[] {
  const admin = new Hl7MessageAdmin(db.pool);
  return [
    {
      method: 'get',
      path: '/hl7/messages',
      summary: 'Searches the HL7v2 message store, newest first (without message content).',
      tag: 'hl7',
      access: ['staff', 'integration'],
      query: {
        type: 'object',
        additionalProperties: false,
        properties: {
          ...FILTER_PROPERTIES,
          limit: { type: 'integer', minimum: 1, maximum: 1000, default: 50 },
          cursor: { type: 'string', maxLength: 200, description: 'The `next` of the previous page.' },
        },
      },
      responses: {
        200: {
          description: 'One page; `next` is absent on the last.',
          schema: { type: 'object', required: ['items'], properties: { items: { type: 'array', items: SUMMARY_SCHEMA }, next: { type: 'string' } } },
        },
      },
      handler: async ({ principal, query }: { principal: Principal | undefined; query: FilterInput & { limit: number; cursor?: string } }) => {
        try {
          const page = await admin.search(principal!.practiceId, toFilter(query), { limit: query.limit, cursor: query.cursor });
          return { items: page.items.map(shown), ...(page.next ? { next: page.next } : {}) };
        } catch (error) {
          if (error instanceof InvalidCursorError) throw new ApiError(400, 'invalid_request', error.message, [{ path: '?cursor', message: 'is not a cursor this API returned' }]);
          throw error;
        }
      },
    },
    {
      method: 'get',
      path: '/hl7/messages/{id}',
      summary: 'One message with its content. Every call is recorded in the audit trail (hl7.message.view).',
      tag: 'hl7',
      access: ['staff'],
      responses: { 200: { description: 'The message.', schema: MESSAGE_SCHEMA }, 404: { description: 'No such message in this practice.' } },
      handler: async ({ principal, params }) => {
        const message = await viewHl7Message(db, clock, { practiceId: principal!.practiceId, id: params.id, actor: actor(principal) });
        if (!message) throw new ApiError(404, 'not_found', `No HL7 message ${params.id} in this practice.`);
        return shown(message);
      },
    },
    {
      method: 'post',
      path: '/hl7/messages/reprocess',
      summary: 'Marks the messages matching a filter for processing again (status back to received), e.g. after a mapping fix.',
      tag: 'hl7',
      access: ['integration'],
      body: {
        type: 'object',
        additionalProperties: false,
        minProperties: 1,
        properties: {
          ...FILTER_PROPERTIES,
          ids: { type: 'array', minItems: 1, maxItems: 1000, uniqueItems: true, items: { type: 'string', format: 'uuid' }, description: 'These messages only.' },
        },
      },
      responses: {
        200: {
          description: 'How many matched, how many went back to received, how many were still received.',
          schema: {
            type: 'object',
            required: ['matched', 'requeued', 'alreadyPending'],
            properties: { matched: { type: 'integer' }, requeued: { type: 'integer' }, alreadyPending: { type: 'integer' } },
          },
        },
      },
      handler: async ({ principal, body }: { principal: Principal | undefined; body: FilterInput & { ids?: string[] } }) => {
        try {
          return await reprocessHl7Messages(db, clock, { practiceId: principal!.practiceId, filter: toFilter(body), actor: actor(principal) });
        } catch (error) {
          if (error instanceof EmptyFilterError) throw new ApiError(400, 'invalid_request', error.message);
          throw error;
        }
      },
    },
  ];
}
