/**
 * New embedded databases start from a kept empty cluster (src/store/pglite-template.ts): what a user would
 * notice if it went wrong is an existing database replaced, a new one not empty, or a damaged cache stopping
 * the engine.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { openPglite } from '../../src/store/pglite-template.ts';

const dir = mkdtempSync(join(tmpdir(), 'settle-pglite-template-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const tables = async (db: Awaited<ReturnType<typeof openPglite>>) =>
  (await db.query<{ name: string }>(`SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`)).rows.map((r) => r.name);

describe('embedded databases from a kept empty cluster', () => {
  const template = join(dir, 'cache', 'empty-cluster.tar');

  it('keeps the empty cluster on first use and starts every new database from it, empty', async () => {
    const first = await openPglite('memory://', template);
    await first.exec('CREATE TABLE visits (id int)');
    await first.close();
    assert.ok(existsSync(template), 'the empty cluster is kept');
    const data = join(dir, 'clinic');
    const second = await openPglite(data, template);
    assert.deepEqual(await tables(second), [], 'a new database holds nothing of another');
    await second.exec(`CREATE TABLE balances (id int); INSERT INTO balances VALUES (1)`);
    await second.close();
    assert.ok(existsSync(join(data, 'PG_VERSION')), 'a real cluster in the data directory');
  });

  it('opens an existing database as it is, never from the template', async () => {
    const data = join(dir, 'clinic');
    const db = await openPglite(data, template);
    assert.deepEqual((await db.query<{ id: number }>('SELECT id FROM balances')).rows, [{ id: 1 }]);
    await db.close();
  });

  it('a damaged kept cluster does not stop a new database: it is made again', async () => {
    const damaged = join(dir, 'damaged.tar');
    writeFileSync(damaged, 'not an archive');
    const db = await openPglite(join(dir, 'other'), damaged);
    assert.deepEqual((await db.query<{ n: number }>('SELECT 1 AS n')).rows, [{ n: 1 }]);
    await db.close();
    assert.ok(!existsSync(damaged), 'the damaged file is dropped');
  });

  it('where the cluster cannot be kept, a new database is still made (by initdb)', async () => {
    const blocker = join(dir, 'not-a-directory');
    writeFileSync(blocker, 'a file where the cache directory would go');
    const unwritable = join(blocker, 'empty-cluster.tar');
    for (const data of ['memory://', join(dir, 'plain')]) {
      const db = await openPglite(data, unwritable);
      assert.deepEqual(await tables(db), []);
      await db.close();
    }
    assert.ok(!existsSync(unwritable));
  });
});
