import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { startEmbeddedServer, type EmbeddedServer } from '../../src/store/embedded-server.ts';

describe('the embedded database server', () => {
  let server: EmbeddedServer;
  let pool: pg.Pool;
  before(async () => {
    server = await startEmbeddedServer('memory://', 30);
    pool = new pg.Pool({ host: server.host, port: server.port, user: 'postgres', database: 'postgres', max: 12 });
    await pool.query('CREATE TABLE visits (id serial PRIMARY KEY, clinic int NOT NULL, note text)');
  });
  after(async () => {
    await pool.end();
    await server.stop();
  });

  it('keeps parameterised queries of many connections apart (no lost unnamed portals)', async () => {
    // pglite-socket's own queue let another connection run between a Parse and its Sync:
    // "portal \"\" does not exist" under exactly this load.
    const errors: string[] = [];
    await Promise.all(
      Array.from({ length: 10 }, async (_, clinic) => {
        for (let i = 0; i < 60; i++) {
          const client = await pool.connect();
          try {
            await client.query('BEGIN');
            await client.query('INSERT INTO visits (clinic, note) VALUES ($1, $2)', [clinic, `visit ${i}`]);
            const { rows } = await client.query('SELECT count(*)::int AS n FROM visits WHERE clinic = $1', [clinic]);
            if (rows[0].n !== i + 1) errors.push(`clinic ${clinic} saw ${rows[0].n} visits, expected ${i + 1}`);
            await client.query('COMMIT');
            // Outside a transaction too: each of these is Parse, Bind, Describe, Execute, Sync.
            const echoed = await pool.query('SELECT $1::int AS clinic, $2::text AS visit', [clinic, `visit ${i}`]);
            if (echoed.rows[0].clinic !== clinic || echoed.rows[0].visit !== `visit ${i}`) errors.push(`clinic ${clinic} got another query's row`);
          } catch (error) {
            errors.push((error as Error).message);
          } finally {
            client.release();
          }
        }
      }),
    );
    assert.deepEqual(errors, []);
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM visits');
    assert.equal(rows[0].n, 600);
  });

  it('never shows one connection the uncommitted work of another', async () => {
    const writer = await pool.connect();
    await writer.query('BEGIN');
    await writer.query('INSERT INTO visits (clinic, note) VALUES (99, $1)', ['uncommitted']);
    let seen: number | undefined;
    const reader = pool.query('SELECT count(*)::int AS n FROM visits WHERE clinic = 99').then((r) => (seen = r.rows[0].n));
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(seen, undefined, 'the reader waits while the transaction is open');
    await writer.query('ROLLBACK');
    writer.release();
    await reader;
    assert.equal(seen, 0);
  });

  it('rolls back the transaction of a connection that drops mid-way, and serves the others', async () => {
    const doomed = new pg.Client({ host: server.host, port: server.port, user: 'postgres', database: 'postgres' });
    doomed.on('error', () => {});
    await doomed.connect();
    await doomed.query('BEGIN');
    await doomed.query("INSERT INTO visits (clinic, note) VALUES (77, 'lost')");
    (doomed as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM visits WHERE clinic = 77');
    assert.equal(rows[0].n, 0);
  });
});

describe('the embedded database server shares each statement\'s parse and plan across connections', () => {
  let server: EmbeddedServer;
  let pool: pg.Pool;
  const prepared = async () => (await pool.query("SELECT name, statement FROM pg_prepared_statements WHERE name LIKE 'settle\\_%' ORDER BY name")).rows as { name: string; statement: string }[];
  before(async () => {
    server = await startEmbeddedServer('memory://', 30, 3);
    pool = new pg.Pool({ host: server.host, port: server.port, user: 'postgres', database: 'postgres', max: 6 });
    await pool.query('CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)');
  });
  after(async () => {
    await pool.end();
    await server.stop();
  });

  it('prepares a parameterised text once, whichever connection sends it, and answers each with its own values', async () => {
    await Promise.all(Array.from({ length: 6 }, async (_, c) => {
      for (let i = 0; i < 20; i++) {
        const id = c * 100 + i;
        await pool.query('INSERT INTO notes (id, body) VALUES ($1, $2)', [id, `note ${id}`]);
        const { rows } = await pool.query('SELECT body FROM notes WHERE id = $1', [id]);
        assert.equal(rows[0].body, `note ${id}`);
      }
    }));
    const statements = (await prepared()).map((s) => s.statement);
    assert.deepEqual(statements.sort(), ['INSERT INTO notes (id, body) VALUES ($1, $2)', 'SELECT body FROM notes WHERE id = $1']);
  });

  it('keeps at most the configured number, closing the least recently used, and still runs every text', async () => {
    for (let round = 0; round < 2; round++) {
      for (let n = 0; n < 5; n++) {
        const { rows } = await pool.query(`SELECT $1::int + ${n} AS v`, [round]);
        assert.equal(rows[0].v, round + n);
      }
    }
    const statements = (await prepared()).map((s) => s.statement);
    assert.deepEqual(statements, ['SELECT $1::int + 2 AS v', 'SELECT $1::int + 3 AS v', 'SELECT $1::int + 4 AS v']);
  });

  it('closes every cached statement before a schema change, so that a changed result type is planned afresh', async () => {
    await pool.query('CREATE TABLE shapes (id int PRIMARY KEY)');
    await pool.query('INSERT INTO shapes VALUES (1)');
    assert.deepEqual((await pool.query('SELECT * FROM shapes WHERE id = $1', [1])).rows, [{ id: 1 }]);
    await pool.query("ALTER TABLE shapes ADD COLUMN sides int NOT NULL DEFAULT 4");
    // Without the close: "cached plan must not change result type".
    assert.deepEqual((await pool.query('SELECT * FROM shapes WHERE id = $1', [1])).rows, [{ id: 1, sides: 4 }]);
  });

  it('caches no statement that failed to parse, and a bad value fails only its own query', async () => {
    for (let i = 0; i < 2; i++) await assert.rejects(pool.query('SELEC $1::int', [1]), /syntax error/);
    assert.ok(!(await prepared()).some((s) => s.statement.startsWith('SELEC ')));
    await pool.query('SELECT body FROM notes WHERE id = $1', [1]);
    await assert.rejects(pool.query('SELECT body FROM notes WHERE id = $1', ['not a number']), /invalid input syntax/);
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await assert.rejects(client.query('SELECT body FROM notes WHERE id = $1', ['nope']), /invalid input syntax/);
      await assert.rejects(client.query('SELECT body FROM notes WHERE id = $1', [1]), /current transaction is aborted/);
      await client.query('ROLLBACK');
      assert.equal((await client.query('SELECT body FROM notes WHERE id = $1', [1])).rows[0].body, 'note 1');
    } finally {
      client.release();
    }
  });
});
