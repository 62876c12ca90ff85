/**
 * Connector checkpoints: where each connector's sync of each resource type got to.
 */
import type { Clock } from '../domain/clock.ts';
import type { Queryable } from './database.ts';

/** Where a connector's sync of one resource type stands. */
export interface Checkpoint {
  practiceId: string;
  connector: string;
  resourceType: string;
  /** Opaque to the store: a `_lastUpdated` instant, a cursor, an HL7 control id. */
  position: string;
  updatedAt: Date;
}

/** Reads and moves connector checkpoints. */
export class CheckpointRepository {
  private readonly db: Queryable;
  private readonly clock: Clock;
  constructor(db: Queryable, clock: Clock) {
    this.db = db;
    this.clock = clock;
  }

  /** The checkpoint, or undefined before the first sync. */
  async get(practiceId: string, connector: string, resourceType: string): Promise<Checkpoint | undefined> {
    const { rows } = await this.db.query<{ position: string; updated_at: Date }>(
      'SELECT position, updated_at FROM connector_checkpoints WHERE practice_id = $1 AND connector = $2 AND resource_type = $3',
      [practiceId, connector, resourceType],
    );
    return rows[0] && { practiceId, connector, resourceType, position: rows[0].position, updatedAt: rows[0].updated_at };
  }

  /** Every checkpoint of a connector. */
  async list(practiceId: string, connector: string): Promise<Checkpoint[]> {
    const { rows } = await this.db.query<{ resource_type: string; position: string; updated_at: Date }>(
      'SELECT resource_type, position, updated_at FROM connector_checkpoints WHERE practice_id = $1 AND connector = $2 ORDER BY resource_type',
      [practiceId, connector],
    );
    return rows.map((r) => ({ practiceId, connector, resourceType: r.resource_type, position: r.position, updatedAt: r.updated_at }));
  }

  /**
   * Moves the checkpoint. Call it with the transaction that committed the page it follows, so a sync
   * killed at any point resumes from what was really stored.
   */
  async set(practiceId: string, connector: string, resourceType: string, position: string): Promise<void> {
    await this.db.query(
      `INSERT INTO connector_checkpoints (practice_id, connector, resource_type, position, updated_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (practice_id, connector, resource_type) DO UPDATE SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at`,
      [practiceId, connector, resourceType, position, this.clock.now()],
    );
  }

  /** Forgets a connector's checkpoints (a full re-sync). */
  async reset(practiceId: string, connector: string, resourceType?: string): Promise<number> {
    const result = await this.db.query(
      'DELETE FROM connector_checkpoints WHERE practice_id = $1 AND connector = $2 AND ($3::text IS NULL OR resource_type = $3)',
      [practiceId, connector, resourceType ?? null],
    );
    return result.rowCount ?? 0;
  }
}
