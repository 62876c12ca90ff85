/**
 * The real API (with the dashboard) on a loopback port over a test database, with a clock the test moves, a
 * practice with a guarantor owing two balances, and a key of each role. Plus a small cookie-keeping HTTP client
 * that signs in the way a browser does (form, CSRF cookie, redirect).
 */
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApi } from '../../src/api/app.ts';
import { EngineMetrics } from '../../src/api/metrics.ts';
import { silentLogger } from '../../src/config/logger.ts';
import type { Role } from '../../src/domain/access.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { loadMappings } from '../../src/mapping/load.ts';
import { ApiKeyRepository } from '../../src/store/api-keys.ts';
import type { Database } from '../../src/store/database.ts';
import { ROOT } from '../support/cli.ts';
import { cipher, seedHousehold, type Household } from '../payments/webhook-fixtures.ts';

/** A running engine API with the dashboard. */
export interface DashboardFixture {
  url: string;
  clock: ManualClock;
  household: Household;
  keys: Record<Role, { secret: string; id: string }>;
  close(): Promise<void>;
}

/** Serves the API and dashboard over `db` for a new practice `slug`. */
export async function startDashboard(db: Database, slug: string): Promise<DashboardFixture> {
  const clock = new ManualClock(new Date('2026-06-01T14:00:00Z'));
  const household = await seedHousehold(db, clock, slug);
  const repository = new ApiKeyRepository(db.pool, clock);
  const keys = {} as DashboardFixture['keys'];
  for (const role of ['admin', 'staff', 'integration'] as const) {
    const created = await repository.create(household.practiceId, `Front desk ${role}`, role);
    keys[role] = { secret: created.secret, id: created.key.id };
  }
  const api = createApi({
    configDir: ROOT,
    cipher,
    mappings: loadMappings(ROOT),
    db,
    clock,
    logger: silentLogger(),
    metrics: new EngineMetrics(),
    version: 'test',
    readiness: {
      database: async () => ({ ok: true, detail: 'reachable' }),
      migrations: async () => ({ ok: true, detail: 'current' }),
      scheduler: () => ({ ok: true, detail: 'running' }),
    },
  });
  const server: Server = api.app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    clock,
    household,
    keys,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

/** Cookies by name from a response's Set-Cookie headers (whole header kept, to check attributes). */
export function setCookies(response: Response): Map<string, string> {
  const out = new Map<string, string>();
  for (const header of response.headers.getSetCookie()) out.set(header.slice(0, header.indexOf('=')), header);
  return out;
}

/** A browser-like client: keeps cookies, never follows redirects by itself. */
export class Visitor {
  readonly base: string;
  readonly headers: Record<string, string>;
  readonly jar = new Map<string, string>();
  constructor(base: string, headers: Record<string, string> = {}) {
    this.base = base;
    this.headers = headers;
  }

  async request(path: string, init: { method?: string; form?: Record<string, string> } = {}): Promise<Response> {
    const cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const response = await fetch(this.base + path, {
      method: init.method ?? (init.form ? 'POST' : 'GET'),
      redirect: 'manual',
      headers: {
        ...this.headers,
        ...(cookie ? { cookie } : {}),
        ...(init.form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      ...(init.form ? { body: new URLSearchParams(init.form).toString() } : {}),
    });
    for (const [name, header] of setCookies(response)) {
      const value = header.slice(name.length + 1).split(';')[0]!;
      if (value === '' || /max-age=0/i.test(header)) this.jar.delete(name);
      else this.jar.set(name, value);
    }
    return response;
  }

  /** The value of the hidden `csrf` field of the page at `path`. */
  async csrf(path: string): Promise<string> {
    const page = await (await this.request(path)).text();
    const token = /name="csrf" value="([^"]+)"/.exec(page)?.[1];
    assert.ok(token, `${path} has a form with a CSRF token`);
    return token;
  }

  /** Signs in with `key` through the form. */
  async signIn(key: string): Promise<Response> {
    const csrf = await this.csrf('/dashboard/login');
    return this.request('/dashboard/login', { form: { csrf, key } });
  }
}
