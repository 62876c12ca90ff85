/**
 * Staff dashboard sessions and sign-in protection.
 *
 * A session secret is 256 random bits, handed to the browser once in an httpOnly cookie and stored only as its
 * SHA-256. A session ends at its absolute expiry, after {@link SESSION_IDLE_MS} without a request, when it is
 * signed out, or as soon as the API key it was opened with is revoked. The CSRF token of every form is derived
 * from the session secret (an HMAC), so it is tied to the session and cannot be computed by a page that cannot
 * read the cookie.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Principal, Role } from '../domain/access.ts';
import type { Clock } from '../domain/clock.ts';
import type { Queryable } from '../store/database.ts';

/** A session ends after this long without a request. */
export const SESSION_IDLE_MS = 30 * 60_000;
/** A session ends this long after sign-in, however busy. */
export const SESSION_MAX_MS = 10 * 60 * 60_000;
/** Last-seen is written at most this often (each page view would otherwise be a write). */
const TOUCH_RESOLUTION_MS = 60_000;

/** A signed-in staff member. */
export interface DashboardSession {
  id: string;
  practiceId: string;
  keyId: string;
  /** The key's name (`Dana (office manager)`): staff, not patients. */
  name: string;
  role: Role;
  expiresAt: Date;
}

interface SessionRow {
  id: string;
  practice_id: string;
  api_key_id: string;
  name: string;
  role: Role;
  last_seen_at: Date;
  idle_expires_at: Date;
  expires_at: Date;
}

const sha256 = (text: string): Buffer => createHash('sha256').update(text).digest();

/** The CSRF token of the forms of a session (derived from its secret). */
export function csrfTokenFor(secret: string): string {
  return createHmac('sha256', secret).update('settle.dashboard.csrf').digest('base64url');
}

/** Whether a submitted CSRF token belongs to the session with this secret. */
export function csrfMatches(secret: string, token: unknown): boolean {
  if (typeof token !== 'string') return false;
  const expected = Buffer.from(csrfTokenFor(secret));
  const given = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Opens, finds and ends dashboard sessions. */
export class DashboardSessionStore {
  readonly #db: Queryable;
  readonly #clock: Clock;
  constructor(db: Queryable, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
  }

  /**
   * Opens a session for a signed-in key.
   * @returns the secret for the cookie (shown only here) and the session.
   */
  async start(principal: Principal): Promise<{ secret: string; session: DashboardSession }> {
    const secret = randomBytes(32).toString('base64url');
    const now = this.#clock.now();
    const expiresAt = new Date(now.getTime() + SESSION_MAX_MS);
    const { rows } = await this.#db.query<{ id: string }>(
      `INSERT INTO dashboard_sessions (practice_id, api_key_id, secret_hash, created_at, last_seen_at, idle_expires_at, expires_at)
       VALUES ($1, $2, $3, $4, $4, $5, $6) RETURNING id`,
      [principal.practiceId, principal.keyId, sha256(secret), now, new Date(now.getTime() + SESSION_IDLE_MS), expiresAt],
    );
    return { secret, session: { id: rows[0]!.id, practiceId: principal.practiceId, keyId: principal.keyId, name: principal.name, role: principal.role, expiresAt } };
  }

  /**
   * The live session of a cookie secret, its idle timer restarted; undefined when unknown, expired, signed out
   * or its key revoked.
   */
  async find(secret: string | undefined): Promise<DashboardSession | undefined> {
    if (!secret || !/^[A-Za-z0-9_-]{43}$/.test(secret)) return undefined;
    const now = this.#clock.now();
    const { rows } = await this.#db.query<SessionRow>(
      `SELECT s.id, s.practice_id, s.api_key_id, k.name, k.role, s.last_seen_at, s.idle_expires_at, s.expires_at
       FROM dashboard_sessions s JOIN api_keys k ON k.id = s.api_key_id
       WHERE s.secret_hash = $1 AND s.revoked_at IS NULL AND k.revoked_at IS NULL AND s.expires_at > $2 AND s.idle_expires_at > $2`,
      [sha256(secret), now],
    );
    const row = rows[0];
    if (!row) return undefined;
    if (now.getTime() - row.last_seen_at.getTime() >= TOUCH_RESOLUTION_MS) {
      await this.#db.query('UPDATE dashboard_sessions SET last_seen_at = $2, idle_expires_at = least(expires_at, $3) WHERE id = $1', [
        row.id, now, new Date(now.getTime() + SESSION_IDLE_MS),
      ]);
    }
    return { id: row.id, practiceId: row.practice_id, keyId: row.api_key_id, name: row.name, role: row.role, expiresAt: row.expires_at };
  }

  /** Ends the session of a cookie secret (signing out twice is harmless). @returns whether a live one ended. */
  async end(secret: string): Promise<boolean> {
    const { rowCount } = await this.#db.query('UPDATE dashboard_sessions SET revoked_at = $2 WHERE secret_hash = $1 AND revoked_at IS NULL', [
      sha256(secret), this.#clock.now(),
    ]);
    return rowCount === 1;
  }

  /**
   * The practice a presented (but refused) key names, for the audit trail of a failed sign-in: the practice of
   * the key whose non-secret lookup part matches, else the oldest practice (the installation's own).
   */
  async practiceForFailedSignIn(presented: string): Promise<{ practiceId: string; keyPrefix: string | null } | undefined> {
    const lookup = /^settle_([A-Za-z0-9_-]{12})_/.exec(presented)?.[1];
    if (lookup) {
      const { rows } = await this.#db.query<{ practice_id: string }>('SELECT practice_id FROM api_keys WHERE lookup = $1', [lookup]);
      if (rows[0]) return { practiceId: rows[0].practice_id, keyPrefix: `settle_${lookup}` };
    }
    const { rows } = await this.#db.query<{ id: string }>('SELECT id FROM practices ORDER BY created_at, slug LIMIT 1');
    return rows[0] ? { practiceId: rows[0].id, keyPrefix: null } : undefined;
  }
}

/**
 * Limits failed sign-ins per client address: after {@link SignInLimiter.maxFailures} failures within the window,
 * further attempts are refused without checking the key until the oldest failure leaves the window.
 */
export class SignInLimiter {
  readonly maxFailures: number;
  readonly windowMs: number;
  readonly #clock: Clock;
  readonly #failures = new Map<string, number[]>();
  constructor(clock: Clock, options: { maxFailures?: number; windowMs?: number } = {}) {
    this.#clock = clock;
    this.maxFailures = options.maxFailures ?? 5;
    this.windowMs = options.windowMs ?? 15 * 60_000;
  }

  #recent(client: string): number[] {
    const since = this.#clock.now().getTime() - this.windowMs;
    const kept = (this.#failures.get(client) ?? []).filter((at) => at > since);
    if (kept.length) this.#failures.set(client, kept);
    else this.#failures.delete(client);
    return kept;
  }

  /** Milliseconds until this client may try again; 0 when it may now. */
  retryAfterMs(client: string): number {
    const recent = this.#recent(client);
    if (recent.length < this.maxFailures) return 0;
    return Math.max(1, recent[recent.length - this.maxFailures]! + this.windowMs - this.#clock.now().getTime());
  }

  /** Records a failed attempt. */
  fail(client: string): void {
    this.#failures.set(client, [...this.#recent(client), this.#clock.now().getTime()]);
  }

  /** Forgets a client's failures (after a successful sign-in). */
  succeed(client: string): void {
    this.#failures.delete(client);
  }
}
