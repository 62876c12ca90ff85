import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Database } from '../../src/store/database.ts';
import { upkeepEmbeddedDatabase } from '../../src/store/embedded-upkeep.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { createTestDatabase } from '../support/databases.ts';

/**
 * The embedded database's stand-in for autovacuum: PGlite analyzes and vacuums nothing by itself, so tables that
 * grew or churned would keep an empty table's statistics (and the plans made from them) and their dead rows.
 */
describe('embedded database upkeep', () => {
  let handle: { db: Database; drop(): Promise<void> };
  const stats = async (table: string) => {
    // The session flushes its counts at most once a second; ask for them now.
    await handle.db.pool.query('SELECT pg_stat_force_next_flush()');
    return (await handle.db.pool.query<{ analyzed: boolean; dead: number; reltuples: number }>(
      `SELECT s.last_analyze IS NOT NULL AS analyzed, s.n_dead_tup::int AS dead, c.reltuples::float8 AS reltuples
       FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid WHERE s.relname = $1`,
      [table],
    )).rows[0]!;
  };

  before(async () => {
    handle = await createTestDatabase('pglite');
  });
  after(async () => {
    await handle?.drop();
  });

  it('analyzes a table once the rows changed since exceed 50 + its rows, then leaves it alone until it changes that much again', async () => {
    const practices = new PracticeRepository(handle.db.pool);
    for (let n = 0; n < 60; n++) await practices.create({ slug: `upkeep-${n}`, name: `Upkeep ${n}`, timeZone: 'America/Chicago' });
    assert.equal((await stats('practices')).analyzed, false, 'PGlite analyzed nothing by itself');
    const first = await upkeepEmbeddedDatabase(handle.db.pool);
    assert.ok(first.analyzed.includes('practices'), `practices analyzed (${JSON.stringify(first)})`);
    assert.deepEqual(await stats('practices'), { analyzed: true, dead: 0, reltuples: 60 });
    const again = await upkeepEmbeddedDatabase(handle.db.pool);
    assert.ok(!again.analyzed.includes('practices') && !again.vacuumed.includes('practices'), `nothing changed since: ${JSON.stringify(again)}`);
    // 40 more rows of 60 is under the threshold (50 + 60).
    for (let n = 60; n < 100; n++) await practices.create({ slug: `upkeep-${n}`, name: `Upkeep ${n}`, timeZone: 'America/Chicago' });
    assert.ok(!(await upkeepEmbeddedDatabase(handle.db.pool)).analyzed.includes('practices'), 'a small change waits');
  });

  it('vacuums a table whose dead rows exceed 50 + its rows, so their space is reused', async () => {
    await handle.db.pool.query('CREATE TABLE upkeep_probe (id int PRIMARY KEY, note text NOT NULL)');
    await handle.db.pool.query(`INSERT INTO upkeep_probe SELECT n, 'first' FROM generate_series(1, 100) n`);
    assert.ok((await upkeepEmbeddedDatabase(handle.db.pool)).analyzed.includes('upkeep_probe'));
    // The same 100 rows replaced twice: 200 dead row versions of a 100-row table.
    for (let round = 0; round < 2; round++) {
      await handle.db.pool.query('DELETE FROM upkeep_probe');
      await handle.db.pool.query(`INSERT INTO upkeep_probe SELECT n, 'again' FROM generate_series(1, 100) n`);
    }
    assert.equal((await stats('upkeep_probe')).dead, 200);
    const done = await upkeepEmbeddedDatabase(handle.db.pool);
    assert.ok(done.vacuumed.includes('upkeep_probe'), `upkeep_probe vacuumed (${JSON.stringify(done)})`);
    assert.deepEqual(await stats('upkeep_probe'), { analyzed: true, dead: 0, reltuples: 100 });
  });
});
