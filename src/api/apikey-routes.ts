/**
 * Managing API keys over the API (admins), and who the caller is.
 */
import { ROLES, type Principal, type Role } from '../domain/access.ts';
import type { Clock } from '../domain/clock.ts';
import { ApiKeyRepository, issueApiKey, revokeApiKey, type ApiKeyInfo } from '../store/api-keys.ts';
import type { Database } from '../store/database.ts';
import { PracticeRepository } from '../store/practices.ts';
import { ApiError } from './problem.ts';
import type { AnyRoute, JsonSchema } from './routes.ts';

const API_KEY_SCHEMA: JsonSchema = {
  type: 'object',
  required: ['id', 'name', 'role', 'prefix', 'createdAt'],
  properties: {
    id: { type: 'string', format: 'uuid' },
    name: { type: 'string' },
    role: { enum: [...ROLES] },
    prefix: { type: 'string', description: 'The non-secret start of the key.' },
    createdAt: { type: 'string', format: 'date-time' },
    lastUsedAt: { type: ['string', 'null'], format: 'date-time' },
    revokedAt: { type: ['string', 'null'], format: 'date-time' },
  },
};

function shown(key: ApiKeyInfo) {
  return { id: key.id, name: key.name, role: key.role, prefix: key.prefix, createdAt: key.createdAt, lastUsedAt: key.lastUsedAt, revokedAt: key.revokedAt };
}

function actor(principal: Principal | undefined): string {
  return principal ? `apikey:${principal.keyId}` : 'anonymous';
}

/** `/me`, `/practice` and `/apikeys`. */
export function apiKeyRoutes(db: Database, clock: Clock): AnyRoute[] {
  const keys = new ApiKeyRepository(db.pool, clock);
  return [
    {
      method: 'get',
      path: '/me',
      summary: 'The caller: key name, role and practice.',
      tag: 'access',
      access: ['staff', 'integration'],
      responses: {
        200: {
          description: 'The key the request was made with.',
          schema: { type: 'object', properties: { keyId: { type: 'string' }, name: { type: 'string' }, role: { enum: [...ROLES] }, practiceId: { type: 'string' } } },
        },
      },
      handler: ({ principal }) => principal,
    },
    {
      method: 'get',
      path: '/practice',
      summary: "The caller's practice.",
      tag: 'access',
      access: ['staff', 'integration'],
      responses: {
        200: {
          description: 'The practice.',
          schema: { type: 'object', properties: { id: { type: 'string' }, slug: { type: 'string' }, name: { type: 'string' }, timeZone: { type: 'string' }, phone: { type: ['string', 'null'] } } },
        },
      },
      handler: async ({ principal }) => {
        const practice = await new PracticeRepository(db.pool).findById(principal!.practiceId);
        if (!practice) throw new ApiError(404, 'not_found', 'The practice of this key no longer exists.');
        return { id: practice.id, slug: practice.slug, name: practice.name, timeZone: practice.timeZone, phone: practice.phone };
      },
    },
    {
      method: 'get',
      path: '/apikeys',
      summary: "The practice's API keys (never their secrets).",
      tag: 'access',
      access: ['admin'],
      responses: { 200: { description: 'Keys, newest first.', schema: { type: 'array', items: API_KEY_SCHEMA } } },
      handler: async ({ principal }) => (await keys.list(principal!.practiceId)).map(shown),
    },
    {
      method: 'post',
      path: '/apikeys',
      summary: 'Creates a key. The secret is in this response only.',
      tag: 'access',
      access: ['admin'],
      body: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'role'],
        properties: {
          name: { type: 'string', minLength: 1, maxLength: 200, description: 'Who or what uses the key.' },
          role: { enum: [...ROLES] },
        },
      },
      responses: {
        201: {
          description: 'The key, with its secret.',
          schema: { type: 'object', required: ['key', 'secret'], properties: { key: API_KEY_SCHEMA, secret: { type: 'string' } } },
        },
      },
      handler: async ({ principal, body }: { principal: Principal | undefined; body: { name: string; role: Role } }) => {
        const created = await issueApiKey(db, clock, { practiceId: principal!.practiceId, name: body.name, role: body.role, actor: actor(principal) });
        return { key: shown(created.key), secret: created.secret };
      },
    },
    {
      method: 'delete',
      path: '/apikeys/{id}',
      summary: 'Revokes a key at once.',
      tag: 'access',
      access: ['admin'],
      responses: { 200: { description: 'The revoked key.', schema: API_KEY_SCHEMA }, 404: { description: 'No such key in this practice.' } },
      handler: async ({ principal, params }) => {
        const revoked = await revokeApiKey(db, clock, { idOrPrefix: params.id, practiceId: principal!.practiceId, actor: actor(principal) });
        if (!revoked) throw new ApiError(404, 'not_found', `No API key ${params.id} in this practice.`);
        return shown(revoked);
      },
    },
  ];
}
