/**
 * Signing in to the dashboard: the form (with its own double-submit CSRF token, as there is no session yet) and its
 * POST: a staff or admin API key opens a session; a failure is limited per client address and audited (never with
 * the presented secret).
 */
import { randomBytes } from 'node:crypto';
import express, { type Request, type Response, type Router } from 'express';
import { roleAllows } from '../domain/access.ts';
import { ApiKeyRepository } from '../store/api-keys.ts';
import { AuditLog } from '../store/audit.ts';
import type { DashboardDependencies } from './context.ts';
import { html } from './html.ts';
import { cookies, sameText, sendPage, SESSION_COOKIE, setCookie, SIGNIN_COOKIE } from './http.ts';
import { csrfField } from './layout.ts';
import { DashboardSessionStore, SESSION_MAX_MS, type SignInLimiter } from './sessions.ts';

/** The form, with a fresh token in its cookie; `message` explains why it is shown again. */
export function signInForm(req: Request, res: Response, status: number, message?: string): void {
  const token = randomBytes(24).toString('base64url');
  setCookie(req, res, SIGNIN_COOKIE, token, '/dashboard/login', 3600);
  sendPage(res, status, { title: 'Sign in', practiceName: 'Staff dashboard', demo: false, ...(message ? { notice: { kind: 'error', text: message } } : {}) }, html`
<div class="signin">
<h1>Sign in</h1>
<p>Use your staff API key (<code>settle apikey create --role staff</code>).</p>
<form method="post" action="/dashboard/login">
${csrfField(token)}
<label for="key">Staff API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required autofocus aria-describedby="key-help">
<p id="key-help" class="muted">Starts with <code>settle_</code>. It is never shown again after you sign in.</p>
<button type="submit">Sign in</button>
</form>
</div>`);
}

/** `GET /login` and `POST /login`. */
export function signInRouter(deps: DashboardDependencies, limiter: SignInLimiter): Router {
  const signIn = express.Router();
  const sessions = new DashboardSessionStore(deps.db.pool, deps.clock);
  const keys = new ApiKeyRepository(deps.db.pool, deps.clock);
  const audit = new AuditLog(deps.db, deps.clock);

  signIn.get('/login', (req, res) => signInForm(req, res, 200));

  signIn.post('/login', async (req, res) => {
    const formToken = typeof req.body?.csrf === 'string' ? req.body.csrf : '';
    const cookieToken = cookies(req)[SIGNIN_COOKIE] ?? '';
    if (!formToken || !cookieToken || !sameText(formToken, cookieToken)) {
      signInForm(req, res, 403, 'The sign-in form expired or did not come from this dashboard. Please try again.');
      return;
    }
    const client = req.ip ?? 'unknown';
    const wait = limiter.retryAfterMs(client);
    if (wait > 0) {
      res.set('Retry-After', String(Math.ceil(wait / 1000)));
      signInForm(req, res, 429, `Too many failed sign-ins from this address. Try again in ${Math.ceil(wait / 60_000)} minute(s).`);
      return;
    }
    const presented = typeof req.body?.key === 'string' ? req.body.key.trim() : '';
    const principal = presented ? await keys.authenticate(presented) : undefined;
    if (!principal || !roleAllows(principal.role, ['staff'])) {
      limiter.fail(client);
      const target = await sessions.practiceForFailedSignIn(presented);
      if (target) {
        await audit.append({
          practiceId: target.practiceId, actor: 'anonymous', action: 'dashboard.signin.failed', entityType: 'api_key', entityId: principal?.keyId ?? null,
          detail: { reason: principal ? 'role' : 'key-not-accepted', client, ...(target.keyPrefix ? { keyPrefix: target.keyPrefix } : {}) },
        });
      }
      deps.logger.warn('dashboard sign-in refused', { reason: principal ? 'role' : 'key-not-accepted' });
      signInForm(req, res, principal ? 403 : 401, principal
        ? `A ${principal.role} key cannot sign in to the dashboard: use a staff or admin key.`
        : 'That key was not accepted: it is unknown, revoked or mistyped.');
      return;
    }
    limiter.succeed(client);
    const previous = cookies(req)[SESSION_COOKIE];
    if (previous) await sessions.end(previous); // signing in again never keeps the old session alive beside the new one
    const { secret, session } = await sessions.start(principal);
    await audit.append({ practiceId: principal.practiceId, actor: `apikey:${principal.keyId}`, action: 'dashboard.signin', entityType: 'dashboard_session', entityId: session.id, detail: { client } });
    setCookie(req, res, SESSION_COOKIE, secret, '/dashboard', Math.floor(SESSION_MAX_MS / 1000));
    setCookie(req, res, SIGNIN_COOKIE, '', '/dashboard/login', 0);
    res.redirect(303, '/dashboard');
  });
  return signIn;
}
