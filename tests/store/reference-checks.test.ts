import assert from 'node:assert/strict';
import { it } from 'node:test';
import { systemClock } from '../../src/domain/clock.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { SourceRecordRepository } from '../../src/store/source-records.ts';
import { describeOnEachDatabase } from '../support/databases.ts';

/**
 * Every row belongs to a practice, and a practice that still has rows cannot be deleted or renumbered: by a foreign
 * key, or, for the tables written many rows at a time, by the shared per-statement checks (0037: `rows_check_references`
 * on insert, `practices_keep_rows` on the practice's side). A table added later without either fails here.
 */
describeOnEachDatabase('references to practices', (db) => {
  const catalog = async () => {
    const { rows: tables } = await db().pool.query<{ table: string }>(
      `SELECT c.relname AS table FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE a.attname = 'practice_id' AND NOT a.attisdropped AND c.relkind = 'r' AND n.nspname = current_schema() ORDER BY 1`,
    );
    const { rows: keyed } = await db().pool.query<{ table: string }>(
      // A foreign key holding the practice: to practices, or one of several columns with practice_id to a table held so (plan_installments to its plan).
      `SELECT DISTINCT c.conrelid::regclass::text AS table FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
       WHERE c.contype = 'f' AND a.attname = 'practice_id'`,
    );
    const { rows: guards } = await db().pool.query<{ name: string; args: string[] }>(
      `SELECT t.tgname AS name, string_to_array(rtrim(encode(t.tgargs, 'escape'), '\\000'), '\\000') AS args
       FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid WHERE t.tgrelid = 'practices'::regclass AND p.proname = 'practices_keep_rows' ORDER BY 1`,
    );
    const { rows: checked } = await db().pool.query<{ table: string }>(
      `SELECT t.tgrelid::regclass::text AS table FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
       WHERE p.proname = 'rows_check_references' AND t.tgtype & 4 = 4 /* INSERT */ AND t.tgtype & 1 = 0 /* per statement */`,
    );
    return { tables: tables.map((r) => r.table), keyed: new Set(keyed.map((r) => r.table)), guards, checked: new Set(checked.map((r) => r.table)) };
  };

  it('holds every table with a practice_id by a foreign key or by the shared checks on both sides', async () => {
    const { tables, keyed, guards, checked } = await catalog();
    assert.deepEqual(guards.map((g) => g.name), ['practices_keep_rows_delete', 'practices_keep_rows_update']);
    assert.deepEqual(guards[0]!.args, guards[1]!.args, 'delete and renumbering guard the same tables');
    const guarded = new Set(guards[0]!.args);
    // Exempt: ledger_entries (0027 checks each entry's balance with its practice, and balances are held) and the
    // analytics rollups (derived from the ledger, rebuilt by src/analytics/backfill.ts: nothing to hold).
    const exempt = (t: string) => t === 'ledger_entries' || t.startsWith('analytics_');
    const unheld = tables.filter((t) => !keyed.has(t) && !(guarded.has(t) && checked.has(t)) && !exempt(t));
    assert.deepEqual(unheld, [], 'tables whose practice nothing checks');
    for (const t of guarded) assert.ok(!keyed.has(t), `${t} is guarded twice: by a foreign key and by practices_keep_rows`);
    // balance_status_history has no practice of its own: its insert check is of its balance.
    for (const t of checked) if (tables.includes(t)) assert.ok(guarded.has(t), `${t} is checked on insert but its practice could be deleted`);
  });

  it('refuses to delete a practice that has rows in a guarded table, naming that table as a foreign key would', async () => {
    const { guards } = await catalog();
    const tables = guards[0]!.args;
    const practiceId = (await new PracticeRepository(db().pool).create({ slug: 'guarded', name: 'Guarded', timeZone: 'America/Chicago' })).id;
    // Rows in the last table the guard looks at, source_records (the others are written by their own tests).
    assert.equal(tables.at(-1), 'source_records');
    const body = { resourceType: 'Invoice', id: 'i1' };
    const record = { practiceId, connector: 'c', transport: 'fhir-r4' as const, resourceType: 'Invoice', sourceId: 'i1', versionId: '1', lastUpdated: null, contentHash: 'a'.repeat(64), body };
    assert.equal(await new SourceRecordRepository(db().pool, systemClock).storeMany(db().pool, [record]), 1);
    await assert.rejects(db().pool.query('DELETE FROM practices WHERE id = $1', [practiceId]), (error: { code?: string; constraint?: string; message: string }) =>
      error.code === '23503' && error.constraint === 'source_records_practice_id_fkey' && /DELETE on practices .* still has source_records rows/.test(error.message));
    await assert.rejects(db().pool.query(`UPDATE practices SET id = gen_random_uuid() WHERE id = $1`, [practiceId]), /UPDATE on practices .* still has source_records rows/);
    await db().pool.query('DELETE FROM source_records WHERE practice_id = $1', [practiceId]);
    assert.equal((await db().pool.query('DELETE FROM practices WHERE id = $1', [practiceId])).rowCount, 1, 'without rows it goes');
  });
});
