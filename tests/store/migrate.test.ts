import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { currentVersion, latestVersion, loadMigrations, migrate } from '../../src/store/migrate.ts';
import { describeOnEachDatabase } from '../support/databases.ts';

describeOnEachDatabase('migrations', (db) => {
  it('are recorded once, and running them again (even twice at once) changes nothing', async () => {
    assert.equal(await currentVersion(db()), latestVersion());
    const again = await Promise.all([migrate(db()), migrate(db())]);
    assert.deepEqual(again.map((r) => r.applied.length), [0, 0]);
    const { rows } = await db().pool.query('SELECT version FROM schema_migrations ORDER BY version');
    assert.deepEqual(rows.map((r) => r.version), loadMigrations().map((m) => m.version));
  });

  it('refuse a database migrated by a newer Settle, touching nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'settle-mig-'));
    cpSync(new URL('../../src/store/migrations/', import.meta.url), dir, { recursive: true });
    writeFileSync(join(dir, '9998_future_feature.sql'), 'CREATE TABLE future_feature (id int);');
    await migrate(db(), loadMigrations(dir));
    await assert.rejects(migrate(db()), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'database_newer');
      assert.match(error.message, /migration 9998 future_feature/);
      return true;
    });
  });

  it('refuse a migration file edited after it was applied, and roll back a failing one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'settle-mig-'));
    cpSync(new URL('../../src/store/migrations/', import.meta.url), dir, { recursive: true });
    writeFileSync(join(dir, '9998_future_feature.sql'), 'CREATE TABLE future_feature (id int); -- edited');
    await assert.rejects(migrate(db(), loadMigrations(dir)), /changed after it was applied/);

    const broken = mkdtempSync(join(tmpdir(), 'settle-mig-'));
    cpSync(new URL('../../src/store/migrations/', import.meta.url), broken, { recursive: true });
    writeFileSync(join(broken, '9998_future_feature.sql'), 'CREATE TABLE future_feature (id int);');
    writeFileSync(join(broken, '9999_broken.sql'), 'CREATE TABLE half_done (id int); SELECT no_such_function();');
    await assert.rejects(migrate(db(), loadMigrations(broken)), /Migration 9999 broken failed: .*no_such_function/);
    const half = await db().pool.query("SELECT to_regclass('half_done') IS NULL AS gone");
    assert.equal(half.rows[0].gone, true);
  });
});
