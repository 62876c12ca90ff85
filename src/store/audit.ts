/**
 * The audit trail: append-only (the database refuses UPDATE, DELETE and TRUNCATE), and each event of a
 * practice carries the SHA-256 of the one before it, so an event altered or removed behind Settle's back
 * breaks the chain.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Clock } from '../domain/clock.ts';
import { withTransaction, type Database } from './database.ts';

/** Something that happened, by whom, to what. Details carry ids, never PHI. */
export interface NewAuditEvent {
  practiceId: string;
  /** `apikey:<id>`, `cli`, `system`, `patient:<paylink id>`. */
  actor: string;
  /** Dotted verb: `apikey.create`, `balance.view`, `payment.refund`. */
  action: string;
  entityType: string;
  entityId?: string | null;
  detail?: Record<string, unknown>;
}

/** A stored audit event. */
export interface AuditEvent extends Required<NewAuditEvent> {
  id: string;
  occurredAt: Date;
  prevHash: string;
  hash: string;
}

/** Where a chain stopped checking out. */
export interface AuditChainBreak {
  eventId: string;
  reason: string;
}

const GENESIS = '0'.repeat(64);

/** Canonical JSON: object keys sorted at every depth, so jsonb's reordering does not change a hash. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function chainHash(prevHash: string, event: Omit<AuditEvent, 'id' | 'prevHash' | 'hash'>): string {
  const body = canonical({
    practiceId: event.practiceId,
    occurredAt: event.occurredAt.toISOString(),
    actor: event.actor,
    action: event.action,
    entityType: event.entityType,
    entityId: event.entityId,
    detail: event.detail,
  });
  return createHash('sha256').update(prevHash).update('\n').update(body).digest('hex');
}

interface AuditRow {
  id: string;
  practice_id: string;
  occurred_at: Date;
  actor: string;
  action: string;
  entity_type: string;
  entity_id: string | null;
  detail: Record<string, unknown>;
  prev_hash: string;
  hash: string;
}

function toEvent(row: AuditRow): AuditEvent {
  return {
    id: row.id,
    practiceId: row.practice_id,
    occurredAt: row.occurred_at,
    actor: row.actor,
    action: row.action,
    entityType: row.entity_type,
    entityId: row.entity_id,
    detail: row.detail,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

/** Appends to and reads the audit trail. */
export class AuditLog {
  private readonly db: Database;
  private readonly clock: Clock;
  constructor(db: Database, clock: Clock) {
    this.db = db;
    this.clock = clock;
  }

  /**
   * Appends an event. Pass the caller's transaction so the event commits (or not) with what it records.
   */
  async append(event: NewAuditEvent, tx?: pg.PoolClient): Promise<AuditEvent> {
    if (!tx) return withTransaction(this.db, (own) => this.append(event, own));
    // One writer per practice at a time keeps the chain a line, not a tree.
    await tx.query("SELECT pg_advisory_xact_lock(hashtext('settle.audit:' || $1))", [event.practiceId]);
    const last = await tx.query<{ hash: string }>(
      'SELECT hash FROM audit_events WHERE practice_id = $1 ORDER BY id DESC LIMIT 1',
      [event.practiceId],
    );
    const prevHash = last.rows[0]?.hash ?? GENESIS;
    const full = {
      practiceId: event.practiceId,
      occurredAt: this.clock.now(),
      actor: event.actor,
      action: event.action,
      entityType: event.entityType,
      entityId: event.entityId ?? null,
      detail: event.detail ?? {},
    };
    const hash = chainHash(prevHash, full);
    const { rows } = await tx.query<AuditRow>(
      `INSERT INTO audit_events (practice_id, occurred_at, actor, action, entity_type, entity_id, detail, prev_hash, hash)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *`,
      [full.practiceId, full.occurredAt, full.actor, full.action, full.entityType, full.entityId, JSON.stringify(full.detail), prevHash, hash],
    );
    return toEvent(rows[0]);
  }

  /** Events of a practice, oldest first, optionally within [from, to). */
  async list(practiceId: string, range: { from?: Date; to?: Date; limit?: number } = {}): Promise<AuditEvent[]> {
    const { rows } = await this.db.pool.query<AuditRow>(
      `SELECT * FROM audit_events WHERE practice_id = $1
         AND ($2::timestamptz IS NULL OR occurred_at >= $2) AND ($3::timestamptz IS NULL OR occurred_at < $3)
       ORDER BY id LIMIT $4`,
      [practiceId, range.from ?? null, range.to ?? null, range.limit ?? 1000],
    );
    return rows.map(toEvent);
  }

  /**
   * Recomputes a practice's chain from its first event.
   * @returns where it breaks (an altered event, or one whose predecessor was removed), or undefined when intact.
   */
  async verify(practiceId: string): Promise<AuditChainBreak | undefined> {
    let prevHash = GENESIS;
    let afterId = '0';
    for (;;) {
      const { rows } = await this.db.pool.query<AuditRow>(
        'SELECT * FROM audit_events WHERE practice_id = $1 AND id > $2 ORDER BY id LIMIT 1000',
        [practiceId, afterId],
      );
      if (rows.length === 0) return undefined;
      for (const row of rows) {
        const event = toEvent(row);
        if (event.prevHash !== prevHash) {
          return { eventId: event.id, reason: 'the event before it was removed or altered' };
        }
        if (chainHash(prevHash, event) !== event.hash) {
          return { eventId: event.id, reason: 'its content does not match its hash (altered)' };
        }
        prevHash = event.hash;
        afterId = event.id;
      }
    }
  }
}
