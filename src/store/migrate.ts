/**
 * SQL migrations: `src/store/migrations/NNNN_name.sql`, applied in order, each in its own transaction,
 * recorded in `schema_migrations`. An advisory lock makes concurrent starts safe; a database already
 * migrated by a newer Settle is refused rather than touched.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Database } from './database.ts';

/** One migration file. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

/** What {@link migrate} did. */
export interface MigrationResult {
  applied: Migration[];
  /** The version the database is at afterwards. */
  version: number;
}

/** Thrown when the database cannot be migrated safely; nothing was changed. */
export class MigrationError extends Error {
  readonly code: string;
  constructor(code: 'database_newer' | 'checksum_mismatch' | 'migration_failed', message: string) {
    super(message);
    this.name = 'MigrationError';
    this.code = code;
  }
}

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
/** Advisory lock key shared by every Settle process ("settle" in ASCII). */
const LOCK_KEY = 0x736574746c65;

/** Reads the migration files shipped with this version of Settle. */
export function loadMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((file) => /^\d{4}_[a-z0-9_]+\.sql$/.test(file))
    .sort()
    .map((file) => {
      const sql = readFileSync(`${dir}/${file}`, 'utf8');
      return {
        version: Number(file.slice(0, 4)),
        name: file.slice(5, -4),
        sql,
        checksum: createHash('sha256').update(sql).digest('hex'),
      };
    });
}

/** The newest migration this version of Settle knows. */
export function latestVersion(migrations: Migration[] = loadMigrations()): number {
  return migrations.at(-1)?.version ?? 0;
}

/**
 * Brings the database up to date.
 * @throws MigrationError when the database is newer than this engine, a recorded migration's file
 *   changed, or a migration fails (that migration is rolled back; earlier ones stay).
 */
export function migrate(db: Database, migrations: Migration[] = loadMigrations()): Promise<MigrationResult> {
  // PGlite is a single session, where advisory locks are re-entrant: serialise in the process too.
  const run = inProcess.then(() => migrateLocked(db, migrations));
  inProcess = run.catch(() => {});
  return run;
}

let inProcess: Promise<unknown> = Promise.resolve();

async function migrateLocked(db: Database, migrations: Migration[]): Promise<MigrationResult> {
  const client = await db.pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      checksum text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const { rows } = await client.query<{ version: number; name: string; checksum: string }>(
      'SELECT version, name, checksum FROM schema_migrations ORDER BY version',
    );
    const known = new Map(migrations.map((m) => [m.version, m]));
    const newest = latestVersion(migrations);
    for (const row of rows) {
      const mine = known.get(row.version);
      if (row.version > newest || !mine) {
        throw new MigrationError(
          'database_newer',
          `The database was migrated by a newer Settle (migration ${row.version} ${row.name}); this version knows up to ${newest}. Upgrade Settle instead of running an older one against this database.`,
        );
      }
      if (mine.checksum !== row.checksum) {
        throw new MigrationError(
          'checksum_mismatch',
          `Migration ${row.version} ${row.name} was changed after it was applied; add a new migration instead of editing an applied one.`,
        );
      }
    }
    const done = new Set(rows.map((r) => r.version));
    const applied: Migration[] = [];
    for (const migration of migrations) {
      if (done.has(migration.version)) continue;
      try {
        await client.query('BEGIN');
        await client.query(migration.sql);
        await client.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
          migration.version,
          migration.name,
          migration.checksum,
        ]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw new MigrationError(
          'migration_failed',
          `Migration ${migration.version} ${migration.name} failed: ${(error as Error).message}`,
        );
      }
      applied.push(migration);
    }
    return { applied, version: newest };
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => {});
    client.release();
  }
}

/** The version the database is at (0 when never migrated). */
export async function currentVersion(db: Database): Promise<number> {
  const exists = await db.pool.query<{ present: boolean }>("SELECT to_regclass('schema_migrations') IS NOT NULL AS present");
  if (!exists.rows[0]?.present) return 0;
  const { rows } = await db.pool.query<{ version: number }>('SELECT coalesce(max(version), 0)::int AS version FROM schema_migrations');
  return rows[0].version;
}
