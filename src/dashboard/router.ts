/**
 * The staff dashboard under `/dashboard`: sign-in with a staff API key, a server-side session in an httpOnly,
 * SameSite=Strict cookie (Secure over https), CSRF tokens on every form, and the pages. Every response carries
 * its own Content-Security-Policy: no scripts at all, and the one inline stylesheet allowed by a fresh nonce.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import express, { type Request, type Response, type Router } from 'express';
import { ApiError } from '../api/problem.ts';
import type { Practice } from '../domain/practice.ts';
import { AuditLog } from '../store/audit.ts';
import { PracticeRepository } from '../store/practices.ts';
import { DashboardNotFound, type DashboardDependencies, type PageContext, type PageResult } from './context.ts';
import { html, type Html } from './html.ts';
import { cookies, sendPage, SESSION_COOKIE, setCookie, singleValues } from './http.ts';
import { ACTIONS, NOTICES, PAGES } from './pages.ts';
import { csrfMatches, csrfTokenFor, DashboardSessionStore, SignInLimiter } from './sessions.ts';
import { signInForm, signInRouter } from './signin.ts';

/** Options beyond the engine's dependencies. */
export interface DashboardOptions {
  /** Failed sign-in limiting; one per process by default (5 failures per client in 15 minutes). */
  limiter?: SignInLimiter;
}

/** The dashboard router, to mount at `/dashboard`. */
export function dashboardRouter(deps: DashboardDependencies, options: DashboardOptions = {}): Router {
  // The outer router holds only middleware (headers, form bodies); sign-in and the pages are routers inside it.
  const outer = express.Router();
  const router = express.Router();
  const sessions = new DashboardSessionStore(deps.db.pool, deps.clock);
  const audit = new AuditLog(deps.db, deps.clock);
  const practices = new PracticeRepository(deps.db.pool);
  const limiter = options.limiter ?? new SignInLimiter(deps.clock);
  const isDemo = deps.isDemo ?? ((p: Practice) => p.slug === 'demo' || p.slug.startsWith('demo-'));

  outer.use((_req, res, next) => {
    const nonce = randomBytes(16).toString('base64');
    res.locals.nonce = nonce;
    res.set({
      'Content-Security-Policy': `default-src 'none'; style-src 'nonce-${nonce}'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
      'Cache-Control': 'no-store',
    });
    next();
  });
  outer.use(express.urlencoded({ extended: false, limit: '64kb', parameterLimit: 50 }));
  outer.use(signInRouter(deps, limiter), router);

  // ---- everything else needs a session --------------------------------------------------------------------

  router.use(async (req, res, next) => {
    const secret = cookies(req)[SESSION_COOKIE];
    const session = await sessions.find(secret);
    if (!session || !secret) {
      if (req.method === 'GET' || req.method === 'HEAD') res.redirect(303, '/dashboard/login');
      else signInForm(req, res, 401, 'Your session has ended. Please sign in again.');
      return;
    }
    const practice = await practices.findById(session.practiceId);
    if (!practice) {
      signInForm(req, res, 401, 'The practice of this key no longer exists.');
      return;
    }
    const ctx: PageContext = {
      req, res, deps, session, practice,
      principal: { keyId: session.keyId, practiceId: session.practiceId, name: session.name, role: session.role },
      actor: `apikey:${session.keyId}`,
      csrf: csrfTokenFor(secret),
      query: singleValues(req.query),
    };
    res.locals.ctx = ctx;
    if (req.method === 'POST' && !csrfMatches(secret, req.body?.csrf)) {
      shell(res, ctx, 403, 'Refused', html`<h1>Refused</h1><p>This form did not come from your dashboard session (its security token is missing or wrong). Go back, reload the page and try again.</p>`);
      return;
    }
    next();
  });

  const shell = (res: Response, ctx: PageContext, status: number, title: string, body: Html, result?: PageResult) => {
    const notice = NOTICES[ctx.query.notice ?? ''];
    const practiceStatus = deps.status?.(ctx.practice);
    sendPage(res, status, {
      title, practiceName: ctx.practice.name, demo: isDemo(ctx.practice), staff: { name: ctx.session.name, csrf: ctx.csrf },
      ...(result ? { active: result.active } : {}), ...(notice ? { notice } : {}), ...(practiceStatus ? { status: practiceStatus } : {}),
    }, body);
  };

  router.post('/logout', async (req, res) => {
    const ctx = res.locals.ctx as PageContext;
    await sessions.end(cookies(req)[SESSION_COOKIE]!);
    await audit.append({ practiceId: ctx.practice.id, actor: ctx.actor, action: 'dashboard.signout', entityType: 'dashboard_session', entityId: ctx.session.id });
    setCookie(req, res, SESSION_COOKIE, '', '/dashboard', 0);
    res.redirect(303, '/dashboard/login');
  });

  /** A page or action that cannot be done: not found, or the API refused it (4xx); anything else is unexpected. */
  const refuse = (res: Response, ctx: PageContext, error: unknown) => {
    if (error instanceof DashboardNotFound) {
      shell(res, ctx, 404, 'Not found', html`<h1>Not found</h1><p>${error.message}</p>`);
      return;
    }
    if (error instanceof ApiError && error.status < 500) {
      shell(res, ctx, error.status, 'Not done', html`<h1>Not done</h1><p>${error.message}</p><p><a href="/dashboard">Back to the overview</a></p>`);
      return;
    }
    throw error;
  };

  for (const [path, render] of Object.entries(PAGES)) {
    router.get(path, async (_req, res) => {
      const ctx = res.locals.ctx as PageContext;
      try {
        const result = await render(ctx);
        shell(res, ctx, 200, result.title, result.body, result);
      } catch (error) {
        refuse(res, ctx, error);
      }
    });
  }
  for (const [path, act] of Object.entries(ACTIONS)) {
    router.post(path, async (_req, res) => {
      const ctx = res.locals.ctx as PageContext;
      try {
        res.redirect(303, await act(ctx));
      } catch (error) {
        refuse(res, ctx, error);
      }
    });
  }
  router.use((_req, res) => {
    const ctx = res.locals.ctx as PageContext;
    shell(res, ctx, 404, 'Not found', html`<h1>Not found</h1><p>There is no such dashboard page. <a href="/dashboard">Back to the overview</a>.</p>`);
  });
  // An unexpected error: an HTML page with an id to quote, and the log entry the API's problem handler would write
  // (the error's kind, code and frames, never its message, which may quote patient data).
  outer.use((error: unknown, req: Request, res: Response, next: (error?: unknown) => void) => {
    if (res.headersSent) return next(error);
    const errorId = randomUUID();
    const failure = error as Error & { code?: string };
    deps.logger.error('dashboard request failed', {
      errorId, method: req.method, route: req.route?.path, type: failure?.constructor?.name, code: failure?.code,
      frames: failure?.stack?.split('\n').slice(1, 8).map((frame) => frame.trim()),
    });
    sendPage(res, 500, { title: 'Something went wrong', practiceName: 'Staff dashboard', demo: false }, html`<h1>Something went wrong</h1>
<p>Something went wrong on our side. It has been logged as <code>${errorId}</code>; quote it when you report the problem.</p><p><a href="/dashboard">Back to the overview</a></p>`);
  });
  return outer;
}
