/**
 * The pay page's session after a passed identity check: a signed, short-lived cookie naming one pay link
 * (`<link id>.<expiry seconds>.<MAC>`, httpOnly, SameSite=Lax), and the CSRF token every form of the page
 * carries, derived from the cookie, so a form posted from another site (which cannot read the cookie) fails.
 *
 * Keys are derived from the pay-link key ring's current key with a domain label; rotating that key ends the
 * open sessions (they last minutes), never the links.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { PayLinkKeyRing } from '../domain/pay-link.ts';

/** The cookie's name. */
export const PAY_SESSION_COOKIE = 'settle_pay';
/** How long a verified visitor may use the page without typing the check again: 20 minutes. */
export const PAY_SESSION_TTL_SECONDS = 20 * 60;

function sessionKey(ring: PayLinkKeyRing): Buffer {
  return createHmac('sha256', ring.keys.get(ring.current)!).update('settle/pay-session/v1').digest();
}

function mac(ring: PayLinkKeyRing, label: string, value: string): string {
  return createHmac('sha256', sessionKey(ring)).update(label).update('\0').update(value).digest('base64url').slice(0, 32);
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a), y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** A new session cookie value for a link, valid for {@link PAY_SESSION_TTL_SECONDS} from `now`. */
export function issuePaySession(linkId: string, now: Date, ring: PayLinkKeyRing): string {
  const body = `${linkId}.${Math.floor(now.getTime() / 1000) + PAY_SESSION_TTL_SECONDS}`;
  return `${body}.${mac(ring, 'session', body)}`;
}

/** The link a session cookie is for, or undefined when it is missing, forged or expired. */
export function readPaySession(cookie: string | undefined, now: Date, ring: PayLinkKeyRing): { linkId: string } | undefined {
  if (!cookie) return undefined;
  const m = /^([0-9a-f]{18})\.(\d{1,12})\.([A-Za-z0-9_-]{32})$/.exec(cookie);
  if (!m) return undefined;
  if (!same(mac(ring, 'session', `${m[1]}.${m[2]}`), m[3]!)) return undefined;
  if (Number(m[2]) * 1000 <= now.getTime()) return undefined;
  return { linkId: m[1]! };
}

/** The CSRF token of a session (or, before the identity check, of a link: `verify:<link id>`). */
export function csrfToken(scope: string, ring: PayLinkKeyRing): string {
  return mac(ring, 'csrf', scope);
}

/** Whether a posted CSRF token belongs to the scope. */
export function csrfValid(scope: string, posted: unknown, ring: PayLinkKeyRing): boolean {
  return typeof posted === 'string' && same(csrfToken(scope, ring), posted);
}

/** Reads one cookie from a `Cookie` header. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
