import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { before, it } from 'node:test';
import { ManualClock } from '../../../src/domain/clock.ts';
import { withTransaction } from '../../../src/store/database.ts';
import { PracticeRepository } from '../../../src/store/practices.ts';
import { SourceRecordRepository } from '../../../src/store/source-records.ts';
import { describeOnEachDatabase } from '../../support/databases.ts';

describeOnEachDatabase('Bulk line storage', (db, engine) => {
  const clock = new ManualClock(new Date('2026-03-01T15:00:00Z'));
  let practiceId: string;

  before(async () => {
    practiceId = (await new PracticeRepository(db().pool).ensure({ slug: 'riverside', name: 'Riverside Pediatrics' })).id;
  });

  it('stores a batch mixing connectors and resource types under each record\'s own, in arrival order within each, once per version', async () => {
    const line = (type: string, id: string, version: string) => `{"resourceType":"${type}","id":"${id}","meta":{"versionId":"${version}"}}`;
    const record = (connector: string, type: string, id: string, version = '1') => {
      const text = line(type, id, version);
      return { practiceId, connector, transport: 'fhir-r4' as const, resourceType: type, sourceId: id, versionId: version, lastUpdated: new Date('2026-02-01T10:00:00Z'), contentHash: createHash('sha256').update(text).digest('hex'), bodyText: text };
    };
    const batch = [
      record('mixed-a', 'Invoice', 'i1'),
      record('mixed-b', 'Invoice', 'i1'),
      record('mixed-a', 'Account', 'a1'),
      record('mixed-a', 'Invoice', 'i2'),
      record('mixed-b', 'Invoice', 'i1'), // the same version again: skipped
      record('mixed-a', 'Invoice', 'i1', '2'),
    ];
    assert.equal(await withTransaction(db(), (tx) => new SourceRecordRepository(tx, clock).storeMany(tx, batch)), 5);
    const { rows } = await db().pool.query<{ connector: string; resource_type: string; source_id: string; version_id: string; body: string }>(
      `SELECT connector, resource_type, source_id, version_id, body FROM source_records WHERE practice_id = $1 AND connector LIKE 'mixed-%' ORDER BY id`,
      [practiceId],
    );
    const stored = rows.map((r) => `${r.connector} ${r.resource_type}/${r.source_id}/${r.version_id}`);
    assert.deepEqual(stored.filter((s) => s.startsWith('mixed-a Invoice')), ['mixed-a Invoice/i1/1', 'mixed-a Invoice/i2/1', 'mixed-a Invoice/i1/2'], 'in arrival order');
    assert.deepEqual(stored.filter((s) => !s.startsWith('mixed-a Invoice')).sort(), ['mixed-a Account/a1/1', 'mixed-b Invoice/i1/1']);
    for (const r of rows) assert.equal(r.body, line(r.resource_type, r.source_id, r.version_id), 'each body with its own record');
  });

  it('keeps the practice foreign key\'s guarantees, checked once per statement (0031)', async () => {
    const text = '{"resourceType":"Invoice","id":"fk-1","meta":{"versionId":"1"}}';
    const record = (practice: string) => ({ practiceId: practice, connector: 'fk', transport: 'fhir-r4' as const, resourceType: 'Invoice', sourceId: 'fk-1', versionId: '1', lastUpdated: null, contentHash: createHash('sha256').update(text).digest('hex'), bodyText: text });
    const unknown = '00000000-0000-4000-8000-000000000000';
    const isForeignKeyError = (error: { code?: string; constraint?: string }) => error.code === '23503' && error.constraint === 'source_records_practice_id_fkey';
    await assert.rejects(withTransaction(db(), (tx) => new SourceRecordRepository(tx, clock).storeMany(tx, [record(practiceId), record(unknown)])), isForeignKeyError);
    const count = async () => (await db().pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM source_records WHERE connector = 'fk'`)).rows[0]!.n;
    assert.equal(await count(), 0, 'the whole statement is refused');

    const doomed = (await new PracticeRepository(db().pool).ensure({ slug: 'fk-check', name: 'FK Check Clinic' })).id;
    assert.equal(await withTransaction(db(), (tx) => new SourceRecordRepository(tx, clock).storeMany(tx, [record(doomed)])), 1);
    await assert.rejects(db().pool.query('DELETE FROM practices WHERE id = $1', [doomed]), isForeignKeyError);
    await assert.rejects(db().pool.query(`UPDATE practices SET id = $2 WHERE id = $1`, [doomed, unknown]), isForeignKeyError);
    await assert.rejects(db().pool.query(`UPDATE source_records SET practice_id = $2 WHERE practice_id = $1`, [doomed, practiceId]), isForeignKeyError);
    assert.equal(await db().pool.query(`UPDATE practices SET name = 'FK Check Clinic 2' WHERE id = $1`, [doomed]).then((r) => r.rowCount), 1, 'other changes are allowed');
    assert.equal(await count(), 1);
  });

  it('compresses a long line with lz4 where the server has it (pglz otherwise), and reads it back byte for byte', async () => {
    const items = Array.from({ length: 60 }, (_, i) => ({ sequence: i + 1, chargeItemReference: { reference: `ChargeItem/ci-${i}` }, note: 'Jos\u00e9 \u4e2d\u6587' }));
    // Written by hand (spacing, key order) as a server might: longer than the row size past which bodies are compressed.
    const line = `{"resourceType":"Invoice", "id":"long-1","meta":{"versionId":"1"},"lineItem":${JSON.stringify(items)}}`;
    assert.ok(Buffer.byteLength(line) > 4000);
    const stored = await withTransaction(db(), (tx) =>
      new SourceRecordRepository(tx, clock).storeMany(tx, [
        { practiceId, connector: 'bulk', transport: 'fhir-r4', resourceType: 'Invoice', sourceId: 'long-1', versionId: '1', lastUpdated: null, contentHash: createHash('sha256').update(line).digest('hex'), bodyText: line },
      ]),
    );
    assert.equal(stored, 1);
    const { rows } = await db().pool.query<{ body: string; method: string | null; lz4: boolean }>(
      `SELECT body, pg_column_compression(body) AS method,
              EXISTS (SELECT FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) AS lz4
       FROM source_records WHERE practice_id = $1 AND source_id = 'long-1'`,
      [practiceId],
    );
    const row = rows[0]!;
    assert.equal(row.body, line);
    if (engine === 'postgres') assert.equal(row.lz4, true, 'the PostgreSQL server of the tests is built with lz4');
    assert.equal(row.method, row.lz4 ? 'lz4' : 'pglz');
    const [record] = await new SourceRecordRepository(db().pool, clock).versions(practiceId, 'bulk', 'Invoice', 'long-1');
    assert.deepEqual(record!.body, JSON.parse(line));
  });
});
