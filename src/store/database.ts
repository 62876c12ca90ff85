/**
 * The one connection layer: a `pg` pool on a PostgreSQL server, or on the embedded PGlite database
 * served over loopback when no `DATABASE_URL` is set.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { startEmbeddedServer, type EmbeddedServer } from './embedded-server.ts';

/** Anything that runs a query: the pool, or a client inside a transaction. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/** An open database. */
export interface Database {
  /** `embedded` (PGlite in the data directory) or `server` (PostgreSQL). */
  readonly kind: 'embedded' | 'server';
  readonly pool: pg.Pool;
  /** Connection parameters other clients (Agenda, a second pool) use to reach the same database. */
  readonly connection: pg.PoolConfig;
  /** Closes the pool and, when embedded, the database itself. */
  close(): Promise<void>;
}

/** Options for {@link openDatabase}. */
export interface OpenDatabaseOptions {
  /** PostgreSQL server URL; unset for the embedded database. */
  databaseUrl?: string;
  /** Embedded database directory (`memory://` for a throwaway in-memory database). */
  dataDir: string;
  /** Connections in this process's pool. */
  poolSize: number;
}

/** Connections the embedded server accepts beyond the main pool: Agenda's pool, the migrator, a CLI. */
const EMBEDDED_SPARE_CONNECTIONS = 20;

/**
 * Opens the database. A server pool connects lazily (see {@link waitForDatabase}); the embedded database
 * is opened at once and locked to this process, since PGlite files must not be opened twice.
 */
export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  if (options.databaseUrl) {
    const connection: pg.PoolConfig = { connectionString: options.databaseUrl, max: options.poolSize };
    return makeDatabase('server', connection, async () => {});
  }
  const inMemory = options.dataDir.startsWith('memory://');
  const release = inMemory ? () => {} : lockDataDir(options.dataDir);
  let server: EmbeddedServer;
  try {
    server = await startEmbeddedServer(
      inMemory ? options.dataDir : join(options.dataDir, 'pgdata'),
      options.poolSize + EMBEDDED_SPARE_CONNECTIONS,
    );
  } catch (error) {
    release();
    throw error;
  }
  const connection: pg.PoolConfig = {
    host: server.host,
    port: server.port,
    user: 'postgres',
    database: 'postgres',
    max: options.poolSize,
  };
  return makeDatabase('embedded', connection, async () => {
    await server.stop();
    release();
  });
}

function makeDatabase(kind: Database['kind'], connection: pg.PoolConfig, closeServer: () => Promise<void>): Database {
  const pool = new pg.Pool(connection);
  // An idle client losing its connection must not crash the process; the pool replaces it.
  pool.on('error', () => {});
  let closed = false;
  return {
    kind,
    pool,
    connection,
    async close() {
      if (closed) return;
      closed = true;
      await pool.end();
      await closeServer();
    },
  };
}

/** Thrown when the embedded data directory is in use by another live process. */
export class DataDirLockedError extends Error {
  constructor(dataDir: string, pid: number) {
    super(`The embedded database in ${dataDir} is in use by process ${pid}. Stop it, or set SETTLE_DATA_DIR to another directory.`);
    this.name = 'DataDirLockedError';
  }
}

function lockDataDir(dataDir: string): () => void {
  mkdirSync(dataDir, { recursive: true });
  const lockFile = join(dataDir, 'settle.lock');
  try {
    const holder = Number(readFileSync(lockFile, 'utf8').trim());
    if (holder && holder !== process.pid && isAlive(holder)) throw new DataDirLockedError(dataDir, holder);
  } catch (error) {
    if (error instanceof DataDirLockedError) throw error;
  }
  writeFileSync(lockFile, String(process.pid));
  return () => rmSync(lockFile, { force: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Waits until the database answers, retrying with exponential backoff (capped at 30 s), so that an
 * engine started before its database waits for it instead of crash-looping.
 * @param onRetry - told about each failed attempt and the delay before the next.
 */
export async function waitForDatabase(
  db: Database,
  signal: AbortSignal,
  onRetry: (error: Error, attempt: number, delayMs: number) => void,
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await db.pool.query('SELECT 1');
      return;
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      const delayMs = Math.min(30_000, 250 * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
      onRetry(error as Error, attempt, Math.round(delayMs));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delayMs);
        signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
      });
      if (signal.aborted) throw signal.reason;
    }
  }
}

/**
 * Runs `work` in one transaction: committed when it returns, rolled back when it throws.
 * @returns what `work` returned.
 */
export async function withTransaction<T>(db: Database | pg.Pool, work: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
  const pool = db instanceof pg.Pool ? db : db.pool;
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
