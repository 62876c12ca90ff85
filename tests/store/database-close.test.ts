/**
 * Closing the database: once `close()` resolves, no connection of its pool is still saying goodbye, so a
 * dropped database or a stopped server cannot reach one of them with an error after the fact.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type pg from 'pg';
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
