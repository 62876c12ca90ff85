/**
 * What a dashboard page or action receives, and how it reuses the API: the dashboard calls the same route
 * handlers the REST API mounts (connector status, outbox, quarantine reprocess…), so the logic lives once.
 */
import type { Request, Response } from 'express';
import type { Logger } from 'winston';
import type { AnyRoute } from '../api/routes.ts';
import { ApiError } from '../api/problem.ts';
import { roleAllows, type Principal } from '../domain/access.ts';
import type { Clock } from '../domain/clock.ts';
import type { Practice } from '../domain/practice.ts';
import type { Database } from '../store/database.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import type { Html } from './html.ts';
import type { NavId } from './layout.ts';
import type { DashboardSession } from './sessions.ts';

/** What the dashboard needs from the engine. */
export interface DashboardDependencies {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
  logger: Logger;
  /** Where the data folders are (policies are read from here). */
  configDir: string;
  /** The API's routes: the dashboard calls their handlers instead of repeating their logic. */
  routes: readonly AnyRoute[];
  /** Whether a practice is a demonstration practice (labelled "Demo" on every page). Default: its slug is `demo` or starts with `demo-`. */
  isDemo?: (practice: Practice) => boolean;
  /** A line about the practice shown on every page while it applies (the live demo says it is still loading). */
  status?: (practice: Practice) => string | undefined;
}

/** A signed-in request. */
export interface PageContext {
  req: Request;
  res: Response;
  deps: DashboardDependencies;
  session: DashboardSession;
  /** The session's key as the API handlers see it. */
  principal: Principal;
  /** For the audit trail: `apikey:<id>`, as the API records it. */
  actor: string;
  practice: Practice;
  csrf: string;
  /** Query values that are single strings (repeated or nested ones are ignored). */
  query: Record<string, string | undefined>;
}

/** What a page renders into the shell. */
export interface PageResult {
  title: string;
  active: NavId;
  body: Html;
}

/** The dashboard says "not found" with this. */
export class DashboardNotFound extends Error {}

/**
 * Calls the handler of one of the API's routes as the signed-in staff member, with the same role check the API
 * makes (an ApiError 403 when the key's role may not use it).
 * @returns what the handler returned, or undefined when this deployment does not serve that route.
 */
export async function callRoute<T>(
  ctx: PageContext,
  method: AnyRoute['method'],
  path: string,
  input: { params?: Record<string, string>; query?: Record<string, unknown>; body?: unknown } = {},
): Promise<T | undefined> {
  const route = ctx.deps.routes.find((r) => r.method === method && r.path === path);
  if (!route) return undefined;
  if (route.access !== 'public' && !roleAllows(ctx.principal.role, route.access)) {
    throw new ApiError(403, 'forbidden', `This needs the ${route.access.join(' or ')} role; the key has ${ctx.principal.role}.`);
  }
  return (await route.handler({
    req: ctx.req,
    res: ctx.res,
    principal: ctx.principal,
    params: input.params ?? {},
    query: input.query ?? {},
    body: input.body,
  })) as T;
}

/** Whether this deployment serves an API route that the signed-in key's role may call. */
export function hasRoute(ctx: Pick<PageContext, 'deps' | 'principal'>, method: AnyRoute['method'], path: string): boolean {
  return ctx.deps.routes.some((r) => r.method === method && r.path === path && (r.access === 'public' || roleAllows(ctx.principal.role, r.access)));
}

/** UUIDs (ids in paths are checked before they reach a uuid column). */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A path parameter as one string ('' when absent). */
export function param(ctx: Pick<PageContext, 'req'>, name: string): string {
  const value: unknown = (ctx.req.params as Record<string, unknown>)[name];
  return typeof value === 'string' ? value : '';
}
