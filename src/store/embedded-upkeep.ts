/**
 * What autovacuum does on a PostgreSQL server, for the embedded database, which has none: PGlite runs no background
 * workers, so no table is ever analyzed or vacuumed unless someone asks.
 *
 * Why it matters: the planner's statistics of a table stay those of its last ANALYZE (none: an empty table's
 * guesses), and the embedded server keeps every statement prepared (`embedded-server.ts`), so PostgreSQL keeps the
 * plan it made for the table as it was. Measured in the demo: the webhook batch's claim, planned while `payments`
 * held a page, read every payment of the practice for each event once it held 1,800 (84 ms per batch of 25
 * checkouts, 12 ms once analyzed). ANALYZE records the table as it is now and invalidates exactly the cached plans
 * that read it; VACUUM makes the space of dead row versions reusable, so updated tables (source records moving from
 * pending to ingested, the outbox, write-backs) stop growing with their own history.
 *
 * When: a table is analyzed once the rows changed since its last analysis exceed 50 + its rows (it doubled, or
 * turned over), and vacuumed (and analyzed) once its dead rows exceed 50 + its rows. Autovacuum's defaults are 10% and
 * 20%, but autovacuum works beside the queries, on another core and throttled; here the pass runs in the one PGlite
 * session, in the way of everything else, and ANALYZE reads a sample of up to 30,000 rows and VACUUM the whole table.
 * With autovacuum's fractions the demo's daily pass cost 13.5 s of its 81 s of CPU (3.9 s with these); doubling keeps the statistics within a
 * factor of two of the table (what changes a plan: a page or ten thousand rows, not 10% more) for a few
 * passes over each table's life. A PostgreSQL server does this itself: the engine schedules
 * {@link upkeepEmbeddedDatabase} only on the embedded database.
 */
import type { Queryable } from './database.ts';

/** Rows changed since the last analysis (inserted, updated, deleted) beyond which a table is analyzed. */
export const ANALYZE_THRESHOLD = { rows: 50, fraction: 1 } as const;
/** Dead row versions beyond which a table is vacuumed. */
export const VACUUM_THRESHOLD = { rows: 50, fraction: 1 } as const;

/** The tables one upkeep pass vacuumed (and analyzed) or analyzed. */
export interface UpkeepResult {
  readonly vacuumed: readonly string[];
  readonly analyzed: readonly string[];
}

/**
 * Analyzes and vacuums the tables of the current schema that changed enough since their last upkeep
 * ({@link ANALYZE_THRESHOLD}, {@link VACUUM_THRESHOLD}), one statement per table (VACUUM cannot run in a
 * transaction: pass a pool or a connection, never a transaction).
 */
export async function upkeepEmbeddedDatabase(db: Queryable): Promise<UpkeepResult> {
  // The counts are the cumulative statistics the session flushes at most once a second: ask for the pending ones.
  await db.query('SELECT pg_stat_force_next_flush()');
  const { rows } = await db.query<{ name: string; vacuum: boolean }>(
    `SELECT quote_ident(relname) AS name, vacuum_due AS vacuum FROM (
       SELECT s.relname,
              s.n_mod_since_analyze > $1 + $2 * greatest(c.reltuples, 0) AS analyze_due,
              s.n_dead_tup > $3 + $4 * greatest(c.reltuples, 0) AS vacuum_due
       FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
       WHERE s.schemaname = current_schema()) t
     WHERE analyze_due OR vacuum_due
     ORDER BY relname`,
    [ANALYZE_THRESHOLD.rows, ANALYZE_THRESHOLD.fraction, VACUUM_THRESHOLD.rows, VACUUM_THRESHOLD.fraction],
  );
  const vacuumed: string[] = [];
  const analyzed: string[] = [];
  for (const table of rows) {
    if (table.vacuum) {
      await db.query(`VACUUM (ANALYZE) ${table.name}`);
      vacuumed.push(table.name);
    } else {
      await db.query(`ANALYZE ${table.name}`);
      analyzed.push(table.name);
    }
  }
  return { vacuumed, analyzed };
}
