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
