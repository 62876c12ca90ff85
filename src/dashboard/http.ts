/**
 * HTTP pieces of the dashboard: cookies, the page sender (with the response's CSP nonce) and query values.
 */
import { timingSafeEqual } from 'node:crypto';
import type { Request, Response } from 'express';
import type { Html } from './html.ts';
import { page, type Shell } from './layout.ts';

/** The session cookie. */
export const SESSION_COOKIE = 'settle_session';
/** The sign-in form's own CSRF cookie (double submit: there is no session yet). */
export const SIGNIN_COOKIE = 'settle_signin';

/** The request's cookies by name. */
export function cookies(req: Request): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (req.get('cookie') ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    try {
      out[part.slice(0, eq).trim()] = decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      // A cookie that is not valid percent-encoding is not one of ours.
    }
  }
  return out;
}

/** Sets an httpOnly, SameSite=Strict cookie, Secure when the request came over https. */
export function setCookie(req: Request, res: Response, name: string, value: string, path: string, maxAgeSeconds: number): void {
  const attributes = [`${name}=${value}`, `Path=${path}`, 'HttpOnly', 'SameSite=Strict', `Max-Age=${maxAgeSeconds}`];
  if (req.secure) attributes.push('Secure');
  res.append('Set-Cookie', attributes.join('; '));
}

/** Constant-time equality of two texts. */
export const sameText = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

/** Query values that are single strings. */
export function singleValues(query: Request['query']): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(query)) if (typeof v === 'string') out[k] = v;
  return out;
}

/** Sends a whole page with the nonce the response's Content-Security-Policy allows. */
export function sendPage(res: Response, status: number, shell: Omit<Shell, 'nonce'>, body: Html): void {
  res.status(status).type('html').send(page({ ...shell, nonce: res.locals.nonce as string }, body));
}
