/**
 * The analytics rollup: per-practice tables (migration 0018) that the measures read instead of the ledger,
 * outreach and payment tables. A refresh recomputes one practice's rows whole, in one snapshot
 * (REPEATABLE READ), so every measure answers "as of" that snapshot; the answer says when (`asOf`). The
 * `analytics.refresh` job refreshes every practice every few minutes, `POST /analytics/refresh` and
 * `settle analytics refresh` on demand, and a measure asked before any refresh (or after the practice's time zone
 * changed) refreshes first.
 */
import pg from 'pg';
import type { Queryable } from '../store/database.ts';
import { ROLLUP_STATEMENTS, ROLLUP_TABLES } from './rollup-sql.ts';

/** Memory each sort or hash of a refresh may use before spilling to disk. */
const REFRESH_WORK_MEM = '64MB';

/** What a refresh did. */
export interface RollupRefresh {
  practiceId: string;
  /** The snapshot the rollup now reflects (database time). */
  asOf: Date;
  durationMs: number;
}

/** Writes one practice's rollup on `q` (inside the caller's transaction and snapshot). */
async function writeRollup(q: Queryable, practiceId: string): Promise<RollupRefresh> {
  const started = performance.now();
  const { rows } = await q.query<{ tz: string; now: Date }>('SELECT time_zone AS tz, now() AS now FROM practices WHERE id = $1', [practiceId]);
  const practice = rows[0];
  if (!practice) throw new Error(`analytics: no practice ${practiceId}`);
  // The refresh sorts and hashes a practice's whole ledger: room to do it in memory (this transaction only).
  await q.query(`SET LOCAL work_mem = '${REFRESH_WORK_MEM}'`);
  for (const table of ROLLUP_TABLES) await q.query(`DELETE FROM ${table} WHERE practice_id = $1`, [practiceId]);
  for (const statement of ROLLUP_STATEMENTS) {
    await q.query(statement.sql, statement.noParameters ? [] : statement.withTimeZone ? [practiceId, practice.tz] : [practiceId]);
  }
  const durationMs = Math.round(performance.now() - started);
  await q.query(
    `INSERT INTO analytics_refreshes (practice_id, as_of, time_zone, duration_ms) VALUES ($1, $2, $3, $4)
     ON CONFLICT (practice_id) DO UPDATE SET as_of = excluded.as_of, time_zone = excluded.time_zone, duration_ms = excluded.duration_ms`,
    [practiceId, practice.now, practice.tz, durationMs],
  );
  return { practiceId, asOf: practice.now, durationMs };
}

const CURRENT = `SELECT r.as_of FROM analytics_refreshes r JOIN practices p ON p.id = r.practice_id AND p.time_zone = r.time_zone WHERE r.practice_id = $1`;

/**
 * Recomputes one practice's rollup from the tables as they are now, in one REPEATABLE READ transaction; refreshes
 * of the same practice wait for each other (a session advisory lock), so they never interleave. With
 * `onlyIfMissing`, a rollup another caller computed while this one waited is kept.
 */
export async function refreshRollup(pool: pg.Pool, practiceId: string, options: { onlyIfMissing?: boolean } = {}): Promise<RollupRefresh> {
  const client = await pool.connect();
  const key = `settle.analytics:${practiceId}`;
  let failure: Error | undefined;
  try {
    await client.query('SELECT pg_advisory_lock(hashtext($1))', [key]);
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      const current = options.onlyIfMissing ? (await client.query<{ as_of: Date }>(CURRENT, [practiceId])).rows[0] : undefined;
      const refresh = current ? { practiceId, asOf: current.as_of, durationMs: 0 } : await writeRollup(client, practiceId);
      await client.query('COMMIT');
      return refresh;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', [key]);
    }
  } catch (error) {
    failure = error instanceof Error ? error : new Error(String(error));
    throw error;
  } finally {
    // A connection that failed is closed rather than given back (it may still hold the lock).
    client.release(failure);
  }
}

/** Refreshes every practice's rollup, one after the other. */
export async function refreshAllRollups(pool: pg.Pool): Promise<RollupRefresh[]> {
  const { rows } = await pool.query<{ id: string }>('SELECT id FROM practices ORDER BY created_at, id');
  const done: RollupRefresh[] = [];
  for (const { id } of rows) done.push(await refreshRollup(pool, id));
  return done;
}

/**
 * When the practice's rollup was computed, refreshing it first when it never was or was computed in another time
 * zone than the practice's (its local dates would be wrong). On a client that is not the pool (a transaction),
 * the refresh runs in that transaction.
 * @returns the `asOf` instant the measures' answers reflect.
 */
export async function rollupAsOf(db: Queryable, practiceId: string): Promise<Date> {
  const { rows } = await db.query<{ as_of: Date }>(CURRENT, [practiceId]);
  if (rows[0]) return rows[0].as_of;
  const refresh = db instanceof pg.Pool ? await refreshRollup(db, practiceId, { onlyIfMissing: true }) : await writeRollup(db, practiceId);
  return refresh.asOf;
}
