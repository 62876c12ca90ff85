/**
 * `POST /webhooks/email/bounces`: the practice's mail relay hands Settle the bounce mail it receives (the raw
 * message, `message/rfc822` or `text/plain`, at most 5 MB), authenticated with the shared secret
 * SETTLE_EMAIL_BOUNCE_SECRET sent as the `X-Settle-Bounce-Secret` header or the `token` query parameter
 * (compared in constant time). Without the setting the route answers 500 `webhook_not_configured`; without the
 * secret 401 `missing_secret`, with a wrong one 403 `invalid_secret`, and nothing is read or stored. A body that
 * is not a DSN is a 400 `not_a_dsn` naming what is missing, and nothing is stored.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request } from 'express';
import { ApiError } from '../api/problem.ts';
import type { AnyRoute, RouteContext } from '../api/routes.ts';
import { NotADsnError } from './dsn.ts';
import { applyEmailBounce, type EmailBounceDependencies } from './email-bounces.ts';

/** The bounce webhook's path. */
export const EMAIL_BOUNCE_PATH = '/webhooks/email/bounces';

/** The largest bounce accepted (a DSN may carry the whole original message). */
export const MAX_BOUNCE_BYTES = 5 * 1024 * 1024;

/** What the route needs: the bounce dependencies and SETTLE_EMAIL_BOUNCE_SECRET. */
export interface EmailBounceRouteDependencies extends EmailBounceDependencies {
  /** SETTLE_EMAIL_BOUNCE_SECRET; unset: the route answers webhook_not_configured. */
  secret: string | undefined;
}

/** Whether a presented secret is the configured one, in constant time (digests of equal length compared). */
export function secretMatches(presented: string, secret: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(presented), digest(secret));
}

async function rawBody(req: Request): Promise<string> {
  if (!req.is(['message/rfc822', 'text/plain'])) {
    throw new ApiError(415, 'unsupported_media_type', 'Post the bounce message as it arrived, as message/rfc822 or text/plain.');
  }
  if (Buffer.isBuffer(req.body)) return req.body.toString('utf8');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BOUNCE_BYTES) throw new ApiError(413, 'payload_too_large', `A bounce message is at most ${MAX_BOUNCE_BYTES} bytes.`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const RECIPIENT_SCHEMA = {
  type: 'object',
  required: ['action', 'status', 'outcome', 'outboxId'],
  properties: {
    action: { type: 'string' },
    status: { type: 'string', description: 'Enhanced status code (5.1.1).' },
    outcome: { type: 'string', enum: ['undeliverable', 'address-recorded', 'unchanged', 'unknown-recipient', 'ignored'] },
    outboxId: { type: ['string', 'null'] },
    fallbackOutboxId: { type: 'string' },
    staffTaskId: { type: 'string' },
  },
};

/** The bounce webhook route, for the API's routes array. */
export function emailBounceRoutes(deps: EmailBounceRouteDependencies): AnyRoute[] {
  return [
    {
      method: 'post',
      path: EMAIL_BOUNCE_PATH,
      summary: 'A bounce (RFC 3464 delivery status notification) from the mail relay, as the raw message; authenticated with SETTLE_EMAIL_BOUNCE_SECRET.',
      tag: 'outreach',
      access: 'public',
      query: { type: 'object', properties: { token: { type: 'string', minLength: 1, maxLength: 512, description: 'The shared secret, for relays that cannot set a header.' } } },
      responses: {
        200: {
          description: 'Applied: per recipient (never the address), what changed.',
          schema: { type: 'object', properties: { received: { const: true }, matchedMessage: { type: 'boolean' }, recipients: { type: 'array', items: RECIPIENT_SCHEMA } } },
        },
        400: { description: 'not_a_dsn: the message is not a delivery status notification; `errors` names what is missing. Nothing stored.', contentType: 'application/problem+json' },
        401: { description: 'missing_secret: no X-Settle-Bounce-Secret header nor token; nothing stored.', contentType: 'application/problem+json' },
        403: { description: 'invalid_secret: the secret does not match; nothing stored.', contentType: 'application/problem+json' },
        413: { description: 'payload_too_large: more than 5 MB.', contentType: 'application/problem+json' },
        415: { description: 'unsupported_media_type: not message/rfc822 or text/plain.', contentType: 'application/problem+json' },
      },
      handler: async ({ req, query }: RouteContext<unknown, { token?: string }>) => {
        if (!deps.secret) throw new ApiError(500, 'webhook_not_configured', 'The bounce webhook needs SETTLE_EMAIL_BOUNCE_SECRET.');
        const presented = req.get('x-settle-bounce-secret') ?? query.token;
        if (!presented) throw new ApiError(401, 'missing_secret', 'Send the shared secret as the X-Settle-Bounce-Secret header or the token query parameter.');
        if (!secretMatches(presented, deps.secret)) {
          deps.logger.warn('email.bounce.bad_secret', { path: req.path });
          throw new ApiError(403, 'invalid_secret', 'The bounce webhook secret does not match SETTLE_EMAIL_BOUNCE_SECRET.');
        }
        const raw = await rawBody(req);
        try {
          return { received: true, ...(await applyEmailBounce(deps, raw)) };
        } catch (error) {
          if (error instanceof NotADsnError) throw new ApiError(400, 'not_a_dsn', error.message, [{ path: error.missing, message: 'is missing' }]);
          throw error;
        }
      },
    },
  ];
}
