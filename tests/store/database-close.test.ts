/**
 * Closing the database: once `close()` resolves, no connection of its pool is still saying goodbye, so a
 * dropped database or a stopped server cannot reach one of them with an error after the fact. Idle connections stay
 * open between the engine's per-minute jobs.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type pg from 'pg';
import { IDLE_CONNECTION_MS } from '../../src/store/database.ts';
import { createTestDatabase, testEngines } from '../support/databases.ts';

for (const engine of testEngines()) {
  it(`close() resolves only after every connection of the pool is closed [${engine.name}]`, { skip: engine.skip }, async () => {
    const handle = await createTestDatabase(engine.name, 4);
    const clients: pg.Client[] = [];
    handle.db.pool.on('connect', (client) => clients.push(client as pg.Client));
    await Promise.all([1, 2, 3, 4].map(() => handle.db.pool.query('SELECT pg_sleep(0.05)')));
    assert.ok(clients.length >= 2, 'several connections were opened');
    await handle.drop();
    const stillOpen = clients.filter((client) => !(client as unknown as { connection: { stream: { destroyed: boolean } } }).connection.stream.destroyed);
    assert.equal(stillOpen.length, 0, 'every socket is closed');
  });
}

for (const engine of testEngines()) {
  it(`the pool keeps an idle connection for ${IDLE_CONNECTION_MS / 60_000} minutes, past the minute between two ingest runs [${engine.name}]`, { skip: engine.skip }, async () => {
    const handle = await createTestDatabase(engine.name, 2);
    try {
      const pool = handle.db.pool as pg.Pool & { options: pg.PoolConfig };
      assert.equal(pool.options.idleTimeoutMillis, IDLE_CONNECTION_MS);
      assert.ok(IDLE_CONNECTION_MS > 60_000, 'longer than the ingest job\'s interval');
      assert.equal(handle.db.connection.idleTimeoutMillis, IDLE_CONNECTION_MS, 'and so do the pools opened from its connection parameters');
      await handle.db.pool.query('SELECT 1');
      assert.equal(handle.db.pool.idleCount, 1, 'the released connection waits in the pool');
    } finally {
      await handle.drop();
    }
  });
}
