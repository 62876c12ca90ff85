/**
 * The ingest quarantine: source records that could not be mapped or posted, with the OperationOutcome
 * saying why. One entry per source record (its latest failing version); resolved when a version posts.
 */
import type { OperationOutcome } from '@medplum/fhirtypes';
import type { Clock } from '../domain/clock.ts';
import type { Queryable } from './database.ts';

/** A quarantined source record. */
export interface QuarantineEntry {
  id: string;
  practiceId: string;
  connector: string;
  resourceType: string;
  sourceId: string;
  versionId: string;
  mapping: string;
  outcome: OperationOutcome;
  attempts: number;
  firstFailedAt: Date;
  lastFailedAt: Date;
  resolvedAt: Date | null;
}

/** The identity of a source record version. */
export interface QuarantineKey {
  practiceId: string;
  connector: string;
  resourceType: string;
  sourceId: string;
}

interface Row {
  id: string;
  practice_id: string;
  connector: string;
  resource_type: string;
  source_id: string;
  version_id: string;
  mapping: string;
  outcome: OperationOutcome;
  attempts: number;
  first_failed_at: Date;
  last_failed_at: Date;
  resolved_at: Date | null;
}

const toEntry = (r: Row): QuarantineEntry => ({
  id: r.id, practiceId: r.practice_id, connector: r.connector, resourceType: r.resource_type, sourceId: r.source_id, versionId: r.version_id,
  mapping: r.mapping, outcome: r.outcome, attempts: r.attempts, firstFailedAt: r.first_failed_at, lastFailedAt: r.last_failed_at, resolvedAt: r.resolved_at,
});

/** Reads and writes the quarantine. */
export class QuarantineRepository {
  readonly #db: Queryable;
  readonly #clock: Clock;
  constructor(db: Queryable, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
  }

  on(db: Queryable): QuarantineRepository {
    return new QuarantineRepository(db, this.#clock);
  }

  /** Quarantines a version of a source record (replacing an earlier entry for the same record). @returns the entry id. */
  async put(key: QuarantineKey & { versionId: string; mapping: string }, outcome: OperationOutcome): Promise<string> {
    const now = this.#clock.now();
    const { rows } = await this.#db.query<{ id: string }>(
      `INSERT INTO ingest_quarantine (practice_id, connector, resource_type, source_id, version_id, mapping, outcome, first_failed_at, last_failed_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
       ON CONFLICT (practice_id, connector, resource_type, source_id) DO UPDATE SET
         version_id = excluded.version_id, mapping = excluded.mapping, outcome = excluded.outcome,
         attempts = CASE WHEN ingest_quarantine.resolved_at IS NULL THEN ingest_quarantine.attempts + 1 ELSE 1 END,
         first_failed_at = CASE WHEN ingest_quarantine.resolved_at IS NULL THEN ingest_quarantine.first_failed_at ELSE excluded.first_failed_at END,
         last_failed_at = excluded.last_failed_at, resolved_at = NULL
       RETURNING id`,
      [key.practiceId, key.connector, key.resourceType, key.sourceId, key.versionId, key.mapping, JSON.stringify(outcome), now],
    );
    return rows[0].id;
  }

  /** Marks these source records' open quarantine entries resolved (a version of each posted), in one statement. */
  async resolveMany(keys: readonly QuarantineKey[]): Promise<void> {
    if (keys.length === 0) return;
    await this.#db.query(
      `UPDATE ingest_quarantine q SET resolved_at = $5
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS k (practice_id, connector, resource_type, source_id)
       WHERE q.practice_id = k.practice_id AND q.connector = k.connector AND q.resource_type = k.resource_type AND q.source_id = k.source_id
         AND q.resolved_at IS NULL`,
      [keys.map((k) => k.practiceId), keys.map((k) => k.connector), keys.map((k) => k.resourceType), keys.map((k) => k.sourceId), this.#clock.now()],
    );
  }

  /** One entry. */
  async get(id: string): Promise<QuarantineEntry | undefined> {
    const { rows } = await this.#db.query<Row>('SELECT * FROM ingest_quarantine WHERE id = $1', [id]);
    return rows[0] && toEntry(rows[0]);
  }

  /** A practice's unresolved entries, most recent failure first, paged by offset. */
  async list(practiceId: string, options: { limit?: number; offset?: number; includeResolved?: boolean } = {}): Promise<QuarantineEntry[]> {
    const limit = Math.min(Math.max(options.limit ?? 50, 1), 500);
    const { rows } = await this.#db.query<Row>(
      `SELECT * FROM ingest_quarantine WHERE practice_id = $1 ${options.includeResolved ? '' : 'AND resolved_at IS NULL'}
       ORDER BY last_failed_at DESC, id LIMIT $2 OFFSET $3`,
      [practiceId, limit, options.offset ?? 0],
    );
    return rows.map(toEntry);
  }
}
