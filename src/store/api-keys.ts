/**
 * API keys: random, shown once, stored as a SHA-256 hash.
 *
 * A key reads `settle_<lookup>_<secret>`: the lookup finds the row without scanning, the secret is
 * 256 random bits, so a plain SHA-256 is enough (no password-style stretching needed).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../domain/clock.ts';
import type { Principal, Role } from '../domain/access.ts';
import { AuditLog } from './audit.ts';
import { withTransaction, type Database, type Queryable } from './database.ts';

/** A key as listed: never its secret. */
export interface ApiKeyInfo {
  id: string;
  practiceId: string;
  name: string;
  role: Role;
  /** The non-secret start of the key, to recognise it (`settle_AbC123xyZ789`). */
  prefix: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

/** A newly created key, the only time its secret exists outside the caller's hands. */
export interface CreatedApiKey {
  key: ApiKeyInfo;
  /** The full key to give to its user. Not stored; cannot be shown again. */
  secret: string;
}

interface ApiKeyRow {
  id: string;
  practice_id: string;
  name: string;
  role: Role;
  lookup: string;
  secret_hash: Buffer;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

const KEY_PATTERN = /^settle_([A-Za-z0-9_-]{12})_([A-Za-z0-9_-]{43})$/;
const COLUMNS = 'id, practice_id, name, role, lookup, secret_hash, created_at, last_used_at, revoked_at';
/** Recording every use would turn each read into a write; once a minute is enough to see a key is alive. */
const LAST_USED_RESOLUTION_MS = 60_000;

function toInfo(row: ApiKeyRow): ApiKeyInfo {
  return {
    id: row.id,
    practiceId: row.practice_id,
    name: row.name,
    role: row.role,
    prefix: `settle_${row.lookup}`,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
  };
}

function hash(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

/** Creates, lists, revokes and checks API keys. */
export class ApiKeyRepository {
  private readonly db: Queryable;
  private readonly clock: Clock;
  constructor(db: Queryable, clock: Clock) {
    this.db = db;
    this.clock = clock;
  }

  /** Creates a key for a practice. The returned secret is shown once. */
  async create(practiceId: string, name: string, role: Role): Promise<CreatedApiKey> {
    const lookup = randomBytes(9).toString('base64url');
    const secret = `settle_${lookup}_${randomBytes(32).toString('base64url')}`;
    const { rows } = await this.db.query<ApiKeyRow>(
      `INSERT INTO api_keys (practice_id, name, role, lookup, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
      [practiceId, name, role, lookup, hash(secret), this.clock.now()],
    );
    return { key: toInfo(rows[0]), secret };
  }

  /** Keys of a practice (or of every practice), newest first, revoked ones included. */
  async list(practiceId?: string): Promise<ApiKeyInfo[]> {
    const { rows } = await this.db.query<ApiKeyRow>(
      `SELECT ${COLUMNS} FROM api_keys WHERE $1::uuid IS NULL OR practice_id = $1 ORDER BY created_at DESC, id`,
      [practiceId ?? null],
    );
    return rows.map(toInfo);
  }

  /**
   * Revokes a key, found by id or by its prefix (within one practice when given). Revoking twice is harmless.
   * @returns the key, or undefined when none matches.
   */
  async revoke(idOrPrefix: string, practiceId?: string): Promise<ApiKeyInfo | undefined> {
    const lookup = idOrPrefix.startsWith('settle_') ? idOrPrefix.slice('settle_'.length, 'settle_'.length + 12) : null;
    const isUuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(idOrPrefix);
    if (!lookup && !isUuid) return undefined;
    const { rows } = await this.db.query<ApiKeyRow>(
      `UPDATE api_keys SET revoked_at = coalesce(revoked_at, $3)
        WHERE (($1::uuid IS NOT NULL AND id = $1) OR ($2::text IS NOT NULL AND lookup = $2))
          AND ($4::uuid IS NULL OR practice_id = $4) RETURNING ${COLUMNS}`,
      [isUuid ? idOrPrefix : null, lookup, this.clock.now(), practiceId ?? null],
    );
    return rows[0] && toInfo(rows[0]);
  }

  /**
   * The caller a presented key identifies, or undefined when the key is malformed, unknown or revoked.
   */
  async authenticate(presented: string): Promise<Principal | undefined> {
    const match = KEY_PATTERN.exec(presented);
    if (!match) return undefined;
    const { rows } = await this.db.query<ApiKeyRow>(`SELECT ${COLUMNS} FROM api_keys WHERE lookup = $1`, [match[1]]);
    const row = rows[0];
    if (!row || row.revoked_at || !timingSafeEqual(row.secret_hash, hash(presented))) return undefined;
    const now = this.clock.now();
    if (!row.last_used_at || now.getTime() - row.last_used_at.getTime() > LAST_USED_RESOLUTION_MS) {
      await this.db.query('UPDATE api_keys SET last_used_at = $2 WHERE id = $1', [row.id, now]);
    }
    return { keyId: row.id, practiceId: row.practice_id, name: row.name, role: row.role };
  }
}

/** Who asks for a key change, for the audit trail: `cli`, `apikey:<id>`. */
export type KeyChangeActor = string;

/** Creates a key and records it in the audit trail, in one transaction. The secret is shown once. */
export function issueApiKey(
  db: Database,
  clock: Clock,
  request: { practiceId: string; name: string; role: Role; actor: KeyChangeActor },
): Promise<CreatedApiKey> {
  return withTransaction(db, async (tx) => {
    const created = await new ApiKeyRepository(tx, clock).create(request.practiceId, request.name, request.role);
    await new AuditLog(db, clock).append(
      { practiceId: request.practiceId, actor: request.actor, action: 'apikey.create', entityType: 'api_key', entityId: created.key.id, detail: { role: request.role } },
      tx,
    );
    return created;
  });
}

/**
 * Revokes a key and records it in the audit trail, in one transaction.
 * @returns the key, or undefined when none matches (within `practiceId` when given).
 */
export function revokeApiKey(
  db: Database,
  clock: Clock,
  request: { idOrPrefix: string; practiceId?: string; actor: KeyChangeActor },
): Promise<ApiKeyInfo | undefined> {
  return withTransaction(db, async (tx) => {
    const key = await new ApiKeyRepository(tx, clock).revoke(request.idOrPrefix, request.practiceId);
    if (key) {
      await new AuditLog(db, clock).append(
        { practiceId: key.practiceId, actor: request.actor, action: 'apikey.revoke', entityType: 'api_key', entityId: key.id },
        tx,
      );
    }
    return key;
  });
}
