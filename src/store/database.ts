/**
 * The one connection layer: a `pg` pool on a PostgreSQL server, or on the embedded PGlite database
 * served over loopback when no `DATABASE_URL` is set.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import pg from 'pg';
import { startEmbeddedServer } from './embedded-server.ts';

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
 * How long a pooled connection may sit idle before the pool closes it: longer than the gap between the engine's
 * per-minute jobs (`ingest.pending` runs every minute), so each run finds the sessions the last one warmed. pg's
 * default (10 s) closed them in between, and a fresh server session spends about 50 ms of the server's CPU on its first
 * batch of ingest before it runs at speed (catalog and plan caches, memory touched afresh: measured with one
 * connection, 106 ms for its first batch of 250 Invoices against 57 ms for the next ones).
 */
export const IDLE_CONNECTION_MS = 5 * 60_000;

/**
 * Opens the database. A server pool connects lazily (see {@link waitForDatabase}). The embedded database
 * is opened at once and its files belong to one process (PGlite files must never be opened twice): a
 * second process (the CLI beside a running engine) connects to the first one's loopback server instead.
 */
export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  if (options.databaseUrl) {
    const connection: pg.PoolConfig = { connectionString: options.databaseUrl, max: options.poolSize, connectionTimeoutMillis: 5000 };
    return makeDatabase('server', connection, async () => {});
  }
  const inMemory = options.dataDir.startsWith('memory://');
  let release = () => {};
  if (!inMemory) {
    const claim = await claimDataDir(options.dataDir);
    if ('port' in claim) {
      // Another Settle process (the engine) holds the embedded database: share it through its server.
      const connection = { host: '127.0.0.1', port: claim.port, user: 'postgres', database: 'postgres', max: Math.min(options.poolSize, 5) };
      return makeDatabase('embedded', connection, async () => {});
    }
    release = claim.release;
  }
  let server;
  try {
    server = await startEmbeddedServer(
      inMemory ? options.dataDir : join(options.dataDir, 'pgdata'),
      options.poolSize + EMBEDDED_SPARE_CONNECTIONS,
    );
  } catch (error) {
    release();
    throw error;
  }
  if (!inMemory) writeLock(options.dataDir, server.port);
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

function makeDatabase(kind: Database['kind'], config: pg.PoolConfig, closeServer: () => Promise<void>): Database {
  const connection: pg.PoolConfig = { ...config, idleTimeoutMillis: IDLE_CONNECTION_MS };
  const pool = new pg.Pool(connection);
  // An idle client losing its connection must not crash the process; the pool replaces it.
  pool.on('error', () => {});
  // pg-pool's end() resolves once it has asked each client to end, not once the sockets are closed; close()
  // waits for them, so that nothing (a dropped database, a stopped server) catches a connection mid-goodbye.
  const open = new Set<Promise<void>>();
  pool.on('connect', (client) => {
    const ended: Promise<void> = new Promise((resolve) => client.once('end', () => (open.delete(ended), resolve())));
    open.add(ended);
  });
  let closed = false;
  return {
    kind,
    pool,
    connection,
    async close() {
      if (closed) return;
      closed = true;
      await pool.end();
      await Promise.all(open);
      await closeServer();
    },
  };
}

interface DataDirLock {
  pid: number;
  port: number;
}

/**
 * Claims the data directory for this process, or finds the live process that holds it and the port of
 * its database server (waiting while that process is still starting).
 */
async function claimDataDir(dataDir: string): Promise<{ release: () => void } | { port: number }> {
  mkdirSync(dataDir, { recursive: true });
  const lockFile = join(dataDir, LOCK_FILE);
  for (let attempt = 0; attempt < 600; attempt++) {
    try {
      writeFileSync(lockFile, JSON.stringify({ pid: process.pid, port: 0 } satisfies DataDirLock), { flag: 'wx' });
      return { release: () => rmSync(lockFile, { force: true }) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    let holder: DataDirLock | undefined;
    try {
      holder = JSON.parse(readFileSync(lockFile, 'utf8')) as DataDirLock;
    } catch {
      holder = undefined; // being written right now
    }
    if (holder && !isAlive(holder.pid)) {
      rmSync(lockFile, { force: true }); // left behind by a process that died
      continue;
    }
    if (holder && holder.port > 0) return { port: holder.port };
    await sleep(100);
  }
  throw new Error(`The embedded database in ${dataDir} is held by another process that never finished starting (see ${lockFile}).`);
}

function writeLock(dataDir: string, port: number): void {
  writeFileSync(join(dataDir, LOCK_FILE), JSON.stringify({ pid: process.pid, port } satisfies DataDirLock));
}

const LOCK_FILE = 'settle.lock';

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
