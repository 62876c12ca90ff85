/**
 * The repository contract-test harness: a suite written once runs against the embedded PGlite database
 * and, when `TEST_DATABASE_URL` is set, against a PostgreSQL server (a fresh database per suite,
 * dropped afterwards).
 */
import { randomBytes } from 'node:crypto';
import { after, before, describe } from 'node:test';
import pg from 'pg';
import { openDatabase, type Database } from '../../src/store/database.ts';
import { migrate, type Migration } from '../../src/store/migrate.ts';

/** An engine a contract suite runs on. */
export interface TestEngine {
  name: 'pglite' | 'postgres';
  /** Why the engine is skipped, when it is. */
  skip?: string;
}

/** The engines available in this run. */
export function testEngines(): TestEngine[] {
  return [
    { name: 'pglite' },
    {
      name: 'postgres',
      skip: process.env.TEST_DATABASE_URL
        ? undefined
        : 'TEST_DATABASE_URL is not set: PostgreSQL server contract tests skipped (.ci/run sets it)',
    },
  ];
}

/**
 * A fresh, migrated, empty database on one engine, with a way to drop it.
 * @param migrations - the migrations to apply (all of them unless given: a test of a migration stops before it).
 */
export async function createTestDatabase(
  engine: TestEngine['name'],
  poolSize = 5,
  migrations?: Migration[],
): Promise<{ db: Database; url?: string; drop(): Promise<void> }> {
  if (engine === 'pglite') {
    const db = await openDatabase({ dataDir: 'memory://', poolSize });
    await migrate(db, migrations);
    return { db, drop: () => db.close() };
  }
  const adminUrl = process.env.TEST_DATABASE_URL;
  if (!adminUrl) throw new Error('TEST_DATABASE_URL is not set');
  const name = `settle_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const db = await openDatabase({ databaseUrl: url.toString(), dataDir: 'unused', poolSize });
  await migrate(db, migrations);
  return {
    db,
    url: url.toString(),
    async drop() {
      await db.close();
      const dropper = new pg.Client({ connectionString: adminUrl });
      await dropper.connect();
      await dropper.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await dropper.end();
    },
  };
}

/**
 * Declares `body` once per engine, each inside its own `describe` with a fresh migrated database.
 * @param body - receives a getter for the database (valid inside tests and hooks).
 */
export function describeOnEachDatabase(title: string, body: (db: () => Database, engine: TestEngine['name']) => void, options: { skip?: string } = {}): void {
  for (const engine of testEngines()) {
    describe(`${title} [${engine.name}]`, { skip: options.skip ?? engine.skip }, () => {
      let handle: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
      before(async () => {
        handle = await createTestDatabase(engine.name);
      });
      after(async () => {
        await handle?.drop();
      });
      body(() => {
        if (!handle) throw new Error('database not ready yet: use it inside a test or hook');
        return handle.db;
      }, engine.name);
    });
  }
}
