/**
 * Pay links and the checkouts started from them.
 *
 * A `pay_links` row is what a token's link id points at: the practice, the guarantor, the signing key, the
 * expiry, whether it was revoked, the identity-check attempt state and how often it was opened. Every open is
 * also written to the audit trail (in the same transaction). A `pay_checkouts` row keeps the Checkout request a
 * pay page sent (amounts, URLs, opaque ids), so the sandbox checkout page and the success page find it again.
 */
import type { Clock } from '../domain/clock.ts';
import { AuditLog } from './audit.ts';
import { withTransaction, type Database } from './database.ts';

/** The identity-check limiter's state as stored (the shape of `AttemptState` in payments/identity-check.ts). */
export interface StoredAttemptState {
  readonly failures: readonly number[];
  readonly lockedUntil: number | null;
}

/** One issued pay link. */
export interface PayLinkRow {
  linkId: string;
  practiceId: string;
  guarantorId: string;
  keyId: number;
  expiresAt: Date;
  revokedAt: Date | null;
  /** The identity-check limiter's state (epoch milliseconds). */
  attempts: StoredAttemptState;
  verifiedAt: Date | null;
  openCount: number;
  lastOpenedAt: Date | null;
  createdAt: Date;
}

/** What is stored when a link is issued. */
export interface NewPayLink {
  linkId: string;
  practiceId: string;
  guarantorId: string;
  keyId: number;
  expiresAt: Date;
}

/** A checkout started from a pay page. */
export interface PayCheckoutRow {
  paymentId: string;
  practiceId: string;
  linkId: string;
  sessionId: string;
  sandbox: boolean;
  /** `{ params, idempotencyKey }` exactly as sent to the gateway. */
  request: { params: Record<string, unknown>; idempotencyKey: string };
  locale: 'en' | 'es';
  createdAt: Date;
}

interface LinkRow {
  link_id: string; practice_id: string; guarantor_id: string; key_id: number; expires_at: Date; revoked_at: Date | null;
  identity_failures: number[]; locked_until: Date | null; verified_at: Date | null; open_count: number; last_opened_at: Date | null; created_at: Date;
}

const LINK_COLUMNS = 'link_id, practice_id, guarantor_id, key_id, expires_at, revoked_at, identity_failures, locked_until, verified_at, open_count, last_opened_at, created_at';

const toLink = (r: LinkRow): PayLinkRow => ({
  linkId: r.link_id,
  practiceId: r.practice_id,
  guarantorId: r.guarantor_id,
  keyId: r.key_id,
  expiresAt: r.expires_at,
  revokedAt: r.revoked_at,
  attempts: { failures: r.identity_failures, lockedUntil: r.locked_until ? r.locked_until.getTime() : null },
  verifiedAt: r.verified_at,
  openCount: r.open_count,
  lastOpenedAt: r.last_opened_at,
  createdAt: r.created_at,
});

interface CheckoutRow {
  payment_id: string; practice_id: string; link_id: string; session_id: string; sandbox: boolean;
  request: PayCheckoutRow['request']; locale: 'en' | 'es'; created_at: Date;
}

const toCheckout = (r: CheckoutRow): PayCheckoutRow => ({
  paymentId: r.payment_id, practiceId: r.practice_id, linkId: r.link_id, sessionId: r.session_id, sandbox: r.sandbox,
  request: r.request, locale: r.locale, createdAt: r.created_at,
});

const LINK_ID = /^[0-9a-f]{18}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Reads and writes pay links, their identity-check state, their opens (audited) and their checkouts. */
export class PayLinkRepository {
  readonly #db: Database;
  readonly #clock: Clock;

  constructor(db: Database, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
  }

  /**
   * Stores an issued link.
   * @throws RangeError when the guarantor is not one of the practice's.
   */
  async create(link: NewPayLink): Promise<PayLinkRow> {
    if (!UUID.test(link.guarantorId) || !UUID.test(link.practiceId)) throw new RangeError('a pay link needs a practice id and a guarantor id (uuids)');
    const { rows } = await this.#db.pool.query<LinkRow>(
      `INSERT INTO pay_links (link_id, practice_id, guarantor_id, key_id, expires_at, created_at)
       SELECT $1, practice_id, id, $4, $5, $6 FROM guarantors WHERE practice_id = $2 AND id = $3 RETURNING ${LINK_COLUMNS}`,
      [link.linkId, link.practiceId, link.guarantorId, link.keyId, link.expiresAt, this.#clock.now()],
    );
    if (!rows[0]) throw new RangeError(`guarantor ${link.guarantorId} is not a guarantor of practice ${link.practiceId}`);
    return toLink(rows[0]);
  }

  /** The link with this id (from a token), or undefined. */
  async get(linkId: string): Promise<PayLinkRow | undefined> {
    if (!LINK_ID.test(linkId)) return undefined;
    const { rows } = await this.#db.pool.query<LinkRow>(`SELECT ${LINK_COLUMNS} FROM pay_links WHERE link_id = $1`, [linkId]);
    return rows[0] && toLink(rows[0]);
  }

  /**
   * The guarantor's newest link signed with `keyId`, not revoked, valid until at least `validUntil`: the one to
   * send again instead of issuing another.
   */
  async findReusable(practiceId: string, guarantorId: string, keyId: number, validUntil: Date): Promise<PayLinkRow | undefined> {
    const { rows } = await this.#db.pool.query<LinkRow>(
      `SELECT ${LINK_COLUMNS} FROM pay_links WHERE practice_id = $1 AND guarantor_id = $2 AND key_id = $3 AND revoked_at IS NULL AND expires_at >= $4
       ORDER BY expires_at DESC LIMIT 1`,
      [practiceId, guarantorId, keyId, validUntil],
    );
    return rows[0] && toLink(rows[0]);
  }

  /** Revokes a link: it stops working at once. @returns false when the practice has no such link. */
  async revoke(practiceId: string, linkId: string): Promise<boolean> {
    const { rowCount } = await this.#db.pool.query('UPDATE pay_links SET revoked_at = coalesce(revoked_at, $3) WHERE practice_id = $1 AND link_id = $2', [
      practiceId, linkId, this.#clock.now(),
    ]);
    return rowCount === 1;
  }

  /**
   * Counts an open of a verified-signature link and appends `paylink.open` to the audit trail, in one transaction.
   * The audit event carries the link id only (actor `patient:<link id>`), never who the guarantor is.
   */
  async recordOpen(link: Pick<PayLinkRow, 'linkId' | 'practiceId'>, detail: Record<string, unknown> = {}): Promise<void> {
    await withTransaction(this.#db, async (tx) => {
      await tx.query('UPDATE pay_links SET open_count = open_count + 1, last_opened_at = $2 WHERE link_id = $1', [link.linkId, this.#clock.now()]);
      await new AuditLog(this.#db, this.#clock).append(
        { practiceId: link.practiceId, actor: `patient:${link.linkId}`, action: 'paylink.open', entityType: 'pay_link', entityId: link.linkId, detail },
        tx,
      );
    });
  }

  /**
   * One identity-check attempt, serialised per link: the stored state is read under a row lock, `decide` (a pure
   * transition such as `attemptIdentity`) gives the new state and its result, which is saved and audited
   * (`paylink.verify` with the result: `verified`, `mismatch`, `locked`, …; never what was typed) in the same
   * transaction, so concurrent wrong answers cannot slip past the limit.
   * @returns what `decide` returned, or undefined when the link is gone.
   */
  async attempt<T extends { state: StoredAttemptState; result: string }>(link: Pick<PayLinkRow, 'linkId' | 'practiceId'>, decide: (state: StoredAttemptState) => T): Promise<T | undefined> {
    return withTransaction(this.#db, async (tx) => {
      const { rows } = await tx.query<Pick<LinkRow, 'identity_failures' | 'locked_until'>>(
        'SELECT identity_failures, locked_until FROM pay_links WHERE link_id = $1 AND practice_id = $2 FOR UPDATE',
        [link.linkId, link.practiceId],
      );
      if (!rows[0]) return undefined;
      const decided = decide({ failures: rows[0].identity_failures, lockedUntil: rows[0].locked_until ? rows[0].locked_until.getTime() : null });
      const { state, result } = decided;
      await tx.query(
        `UPDATE pay_links SET identity_failures = $2::jsonb, locked_until = $3, verified_at = CASE WHEN $4 THEN $5 ELSE verified_at END WHERE link_id = $1`,
        [link.linkId, JSON.stringify(state.failures), state.lockedUntil === null ? null : new Date(state.lockedUntil), result === 'verified', this.#clock.now()],
      );
      await new AuditLog(this.#db, this.#clock).append(
        { practiceId: link.practiceId, actor: `patient:${link.linkId}`, action: 'paylink.verify', entityType: 'pay_link', entityId: link.linkId, detail: { result } },
        tx,
      );
      return decided;
    });
  }

  /** Sets the identity-check state (staff unlocking a link, tests), audited like an attempt. */
  async saveAttempt(link: Pick<PayLinkRow, 'linkId' | 'practiceId'>, state: StoredAttemptState, result: string): Promise<void> {
    await this.attempt(link, () => ({ state, result }));
  }

  /** Records a checkout started from a link (idempotent on the payment id). */
  async recordCheckout(row: Omit<PayCheckoutRow, 'createdAt'>): Promise<void> {
    await this.#db.pool.query(
      `INSERT INTO pay_checkouts (payment_id, practice_id, link_id, session_id, sandbox, request, locale, created_at)
       VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8) ON CONFLICT (payment_id) DO NOTHING`,
      [row.paymentId, row.practiceId, row.linkId, row.sessionId, row.sandbox, JSON.stringify(row.request), row.locale, this.#clock.now()],
    );
  }

  /** The checkout of a Checkout Session id, or undefined. */
  async checkoutBySession(sessionId: string): Promise<PayCheckoutRow | undefined> {
    const { rows } = await this.#db.pool.query<CheckoutRow>('SELECT * FROM pay_checkouts WHERE session_id = $1', [sessionId]);
    return rows[0] && toCheckout(rows[0]);
  }

  /** The checkout of a payment, or undefined. */
  async checkoutByPayment(paymentId: string): Promise<PayCheckoutRow | undefined> {
    if (!UUID.test(paymentId)) return undefined;
    const { rows } = await this.#db.pool.query<CheckoutRow>('SELECT * FROM pay_checkouts WHERE payment_id = $1', [paymentId]);
    return rows[0] && toCheckout(rows[0]);
  }
}
