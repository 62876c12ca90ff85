/**
 * The audit trail: append-only (the database refuses UPDATE, DELETE and TRUNCATE), and each event of a
 * practice carries the SHA-256 of the one before it, so an event altered or removed behind Settle's back
 * breaks the chain.
 *
 * An append of one event or of a segment of several is one statement ({@link auditAppendSql}, calling migration
 * 0033's `audit_append`): the upsert of the practice's head row locks it (so appends of one practice form a line,
 * not a tree), each event takes its id from the sequence under that lock (ids follow the chain) and its hash from
 * the canonical event text (made here) after the previous hash, in SQL, and the head moves to the last one.
 * {@link AuditLog.check} recomputes the same hash in Node.
 */
import { createHash } from 'node:crypto';
import type { Clock } from '../domain/clock.ts';
import { withTransaction, type Database, type Queryable } from './database.ts';
import { SqlParams } from './sql-params.ts';

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
  /** The first broken event (for deleted newest events: the newest one recorded). */
  eventId: string;
  reason: string;
}

/** What {@link AuditLog.check} found. */
export interface AuditChainCheck {
  /** Events that checked out, oldest first, before any break. */
  events: number;
  /** The newest event that checked out. */
  lastEventId: string | null;
  broken?: AuditChainBreak;
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

/** The text an event's hash covers (after its predecessor's hash and a newline). */
function chainBody(event: Omit<AuditEvent, 'id' | 'prevHash' | 'hash'>): string {
  return canonical({
    practiceId: event.practiceId,
    occurredAt: event.occurredAt.toISOString(),
    actor: event.actor,
    action: event.action,
    entityType: event.entityType,
    entityId: event.entityId,
    detail: event.detail,
  });
}

/** SHA-256 of the previous hash, a newline and the event's text, in hex (as {@link auditAppendSql} computes it in SQL). */
function chainHash(prevHash: string, event: Omit<AuditEvent, 'id' | 'prevHash' | 'hash'>): string {
  return createHash('sha256').update(prevHash).update('\n').update(chainBody(event)).digest('hex');
}

/**
 * The CTE `audit_event` that appends these events of one practice, in order, at `occurredAt` (see the module
 * comment), their values added to `params`: `WITH <sql> SELECT * FROM audit_event` appends them on their own, and a
 * caller may add it to the statement that writes what the events record (one round trip for both). It is a SELECT
 * of the migration's `audit_append` function, so it runs only when the statement reads `audit_event`.
 * @throws Error when the events are not all of one practice, or there are none.
 */
export function auditAppendSql(events: NewAuditEvent | readonly NewAuditEvent[], occurredAt: Date, params: SqlParams): string {
  const list: readonly NewAuditEvent[] = Array.isArray(events) ? events : [events as NewAuditEvent];
  const practiceId = list[0]?.practiceId;
  if (!practiceId || list.some((event) => event.practiceId !== practiceId)) throw new Error('auditAppendSql appends one or more events of one practice');
  const segment = list.map((event) => {
    const full = {
      practiceId, occurredAt, actor: event.actor, action: event.action, entityType: event.entityType, entityId: event.entityId ?? null, detail: event.detail ?? {},
    };
    return { actor: full.actor, action: full.action, entityType: full.entityType, entityId: full.entityId, detail: full.detail, body: chainBody(full) };
  });
  const [practice, at, appended] = [practiceId, occurredAt, JSON.stringify(segment)].map((value) => params.add(value));
  return `audit_event AS (SELECT * FROM audit_append(${practice}::uuid, ${at}::timestamptz, ${appended}::jsonb))`;
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
   * Appends an event: one statement. Pass the caller's transaction so the event commits (or not) with what it
   * records.
   */
  async append(event: NewAuditEvent, tx?: Queryable): Promise<AuditEvent> {
    return (await this.appendSegment([event], tx))[0]!;
  }

  /**
   * Appends several events of one practice, in order, as one chain segment: one statement however many (each event
   * exactly as {@link append} would have chained it). Pass the caller's transaction as for {@link append}.
   * @returns the events stored, in order; none when none are given.
   * @throws Error when the events are not all of one practice.
   */
  async appendSegment(events: readonly NewAuditEvent[], tx?: Queryable): Promise<AuditEvent[]> {
    if (events.length === 0) return [];
    const params = new SqlParams();
    const append = auditAppendSql(events, this.clock.now(), params);
    const { rows } = await (tx ?? this.db.pool).query<AuditRow>(`WITH ${append} SELECT * FROM audit_event ORDER BY id`, params.values);
    return rows.map(toEvent);
  }

  /**
   * Records a configuration change: when the data files (connectors, mappings, policies, profiles) differ from
   * the last `config.change` event of the practice (or none was recorded), appends one naming the files added,
   * changed and removed, with each file's SHA-256. Safe when several processes start at once.
   * @returns the event appended, or undefined when nothing changed.
   */
  async recordConfiguration(practiceId: string, files: readonly { file: string; data: unknown }[], actor = 'system'): Promise<AuditEvent | undefined> {
    const fingerprints: Record<string, string> = {};
    for (const f of files) fingerprints[f.file] = createHash('sha256').update(canonical(f.data)).digest('hex');
    return withTransaction(this.db, async (tx) => {
      // Processes starting at once take turns: each reads the last configuration recorded by the one before.
      await tx.query("SELECT pg_advisory_xact_lock(hashtext('settle.audit.config:' || $1))", [practiceId]);
      const { rows } = await tx.query<{ detail: { files?: Record<string, string> } }>(
        "SELECT detail FROM audit_events WHERE practice_id = $1 AND action = 'config.change' ORDER BY id DESC LIMIT 1",
        [practiceId],
      );
      const before = rows[0]?.detail.files ?? {};
      const added = Object.keys(fingerprints).filter((f) => !(f in before)).sort();
      const changed = Object.keys(fingerprints).filter((f) => f in before && before[f] !== fingerprints[f]).sort();
      const removed = Object.keys(before).filter((f) => !(f in fingerprints)).sort();
      if (rows[0] && added.length + changed.length + removed.length === 0) return undefined;
      return this.append({ practiceId, actor, action: 'config.change', entityType: 'configuration', detail: { added, changed, removed, files: fingerprints } }, tx);
    });
  }

  /** Events of a practice, oldest first, optionally within [from, to) and after the event `afterId` (paging). */
  async list(practiceId: string, range: { from?: Date; to?: Date; limit?: number; afterId?: string } = {}): Promise<AuditEvent[]> {
    const { rows } = await this.db.pool.query<AuditRow>(
      `SELECT * FROM audit_events WHERE practice_id = $1
         AND ($2::timestamptz IS NULL OR occurred_at >= $2) AND ($3::timestamptz IS NULL OR occurred_at < $3)
         AND ($5::bigint IS NULL OR id > $5)
       ORDER BY id LIMIT $4`,
      [practiceId, range.from ?? null, range.to ?? null, range.limit ?? 1000, range.afterId ?? null],
    );
    return rows.map(toEvent);
  }

  /**
   * Recomputes a practice's chain from its first event.
   * @returns where it breaks (an altered event, or one whose predecessor was removed), or undefined when intact.
   */
  async verify(practiceId: string): Promise<AuditChainBreak | undefined> {
    return (await this.check(practiceId)).broken;
  }

  /**
   * Recomputes a practice's chain from its first event and compares its end with the recorded head.
   * @returns how many events it has, the newest, and the first break: an event whose content no longer
   *   matches its hash (altered), an event whose predecessor is gone (deleted) or whose link was altered, or
   *   newest events missing (deleted from the end).
   */
  async check(practiceId: string): Promise<AuditChainCheck> {
    let prevHash = GENESIS;
    let prevId: string | null = null;
    let events = 0;
    for (;;) {
      const { rows } = await this.db.pool.query<AuditRow>(
        'SELECT * FROM audit_events WHERE practice_id = $1 AND id > $2 ORDER BY id LIMIT 1000',
        [practiceId, prevId ?? '0'],
      );
      for (const row of rows) {
        const event = toEvent(row);
        if (event.prevHash !== prevHash) {
          const where = prevId === null ? 'it is not the first event any more: events before it' : `events between ${prevId} and it`;
          return { events, lastEventId: prevId, broken: { eventId: event.id, reason: `${where} were deleted, or its link to the previous event was altered` } };
        }
        if (chainHash(prevHash, event) !== event.hash) {
          return { events, lastEventId: prevId, broken: { eventId: event.id, reason: 'its content does not match its hash (altered)' } };
        }
        prevHash = event.hash;
        prevId = event.id;
        events += 1;
      }
      if (rows.length < 1000) break;
    }
    const { rows: heads } = await this.db.pool.query<{ last_event_id: string; last_hash: string; events: string }>(
      'SELECT last_event_id::text, last_hash, events::text FROM audit_heads WHERE practice_id = $1',
      [practiceId],
    );
    const head = heads[0];
    if (head && (head.last_hash !== prevHash || Number(head.events) !== events)) {
      return {
        events,
        lastEventId: prevId,
        broken: {
          eventId: head.last_event_id,
          reason: `the newest event, ${head.last_event_id}, is gone: ${Number(head.events) - events} event(s) after ${prevId ?? 'the start'} were deleted`,
        },
      };
    }
    return { events, lastEventId: prevId };
  }
}
