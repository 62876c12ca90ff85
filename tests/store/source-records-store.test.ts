import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { before, it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { withTransaction } from '../../src/store/database.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { SourceRecordRepository, type NewSourceRecord } from '../../src/store/source-records.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { waitUntilBlockedBy } from '../support/lock-waits.ts';

/** How `storeMany` sends a batch (one text parameter per column) and skips the versions already stored. */
describeOnEachDatabase('storing source records', (db, engine) => {
  const clock = new ManualClock(new Date('2026-03-01T15:00:00Z'));
  let practiceId: string;
  let repo: SourceRecordRepository;

  before(async () => {
    practiceId = (await new PracticeRepository(db().pool).ensure({ slug: 'riverside', name: 'Riverside Pediatrics' })).id;
    repo = new SourceRecordRepository(db().pool, clock);
  });

  const record = (connector: string, id: string, version: string, over: Partial<NewSourceRecord> & { note?: string } = {}): NewSourceRecord => {
    const text = JSON.stringify({ resourceType: 'Invoice', id, meta: { versionId: version }, note: over.note ?? '' });
    const { note: _, ...rest } = over;
    return { practiceId, connector, transport: 'fhir-r4', resourceType: 'Invoice', sourceId: id, versionId: version, lastUpdated: null, contentHash: createHash('sha256').update(text).digest('hex'), bodyText: text, ...rest } as NewSourceRecord;
  };
  const rows = async (connector: string) =>
    (
      await db().pool.query<{ source_id: string; version_id: string; last_updated: Date | null; body: string }>(
        'SELECT source_id, version_id, last_updated, body FROM source_records WHERE practice_id = $1 AND connector = $2 ORDER BY id',
        [practiceId, connector],
      )
    ).rows;

  /** `n` new versions of their own (`fill-…`), which make a batch large enough for the savepoint path. */
  const filler = (connector: string, tag: string, n: number) => Array.from({ length: n }, (_, i) => record(connector, `fill-${tag}-${i}`, '1'));
  const named = async (connector: string) => (await rows(connector)).filter((r) => !r.source_id.startsWith('fill-'));

  for (const [size, padding] of [['a small batch (ON CONFLICT alone)', 0], ['a large batch (plain insert, then NOT EXISTS, under a savepoint)', 250]] as const) {
    it(`keeps the first of a version repeated in the batch and skips versions stored earlier, in the transaction or the pool: ${size}`, async () => {
      const connector = `repeat-${padding}`;
      const batch = [record(connector, 'a', '1', { note: 'first' }), record(connector, 'b', '1'), record(connector, 'a', '1', { note: 'second' }), record(connector, 'a', '2'), ...filler(connector, '1', padding)];
      assert.equal(await withTransaction(db(), (tx) => repo.storeMany(tx, batch)), 3 + padding);
      assert.deepEqual((await named(connector)).map((r) => `${r.source_id}/${r.version_id} ${JSON.parse(r.body).note}`), ['a/1 first', 'b/1 ', 'a/2 ']);
      const again = [record(connector, 'b', '1', { note: 'again' }), record(connector, 'c', '1'), ...filler(connector, '2', padding)];
      assert.equal(await withTransaction(db(), (tx) => repo.storeMany(tx, again)), 1 + padding);
      assert.equal(await repo.storeMany(db().pool, [record(connector, 'c', '1'), record(connector, 'd', '1'), ...filler(connector, '3', padding)]), 1 + padding, 'on the pool, a statement of its own');
      assert.deepEqual((await named(connector)).map((r) => `${r.source_id}/${r.version_id}`), ['a/1', 'b/1', 'a/2', 'c/1', 'd/1']);
      assert.equal((await rows(connector)).length, 5 + 3 * padding);
    });
  }

  it('on a connection between transactions (a Bulk writer\'s), retries a refused plain insert without a savepoint, each statement committed alone', async () => {
    const client = await db().pool.connect();
    try {
      const connector = 'autocommit';
      assert.equal(await repo.storeMany(client, [record(connector, 'a', '1'), ...filler(connector, '1', 250)]), 251);
      // The plain insert is refused at a/1 (stored above); outside a transaction block a SAVEPOINT would fail.
      assert.equal(await repo.storeMany(client, [record(connector, 'a', '1', { note: 'again' }), record(connector, 'b', '1'), ...filler(connector, '2', 250)]), 251);
      assert.equal(client.getTransactionStatus(), 'I', 'no transaction left open');
      assert.deepEqual((await named(connector)).map((r) => `${r.source_id}/${r.version_id} ${JSON.parse(r.body).note}`), ['a/1 ', 'b/1 ']);
    } finally {
      client.release();
    }
  });

  it('stores each lastUpdated as the same instant, from 2 BC to the year 275000, to the millisecond, absent ones as null', async () => {
    const inYear = (year: number) => new Date(new Date('2026-06-15T12:30:00.456Z').setUTCFullYear(year));
    const instants = [new Date('2026-02-01T10:00:00.123Z'), null, new Date('2026-07-04T12:00:00.001Z'), new Date('1969-12-31T23:59:59.999Z'), inYear(1), inYear(9999), inYear(10000), inYear(275000), inYear(0), inYear(-1), null];
    const batch = instants.map((at, i) => record('instants', `t${i}`, '1', { lastUpdated: at }));
    const stored = await withTransaction(db(), async (tx) => {
      await tx.query(`SET LOCAL TimeZone = 'America/New_York'`); // whatever the session's time zone, daylight saving time included
      return await repo.storeMany(tx, batch);
    });
    assert.equal(stored, instants.length);
    assert.deepEqual((await rows('instants')).map((r) => r.last_updated?.getTime() ?? null), instants.map((at) => at?.getTime() ?? null));
  });

  it('refuses a value holding U+001E, which separates the values it travels with, or an invalid date, naming the record', async () => {
    await assert.rejects(withTransaction(db(), (tx) => repo.storeMany(tx, [record('separator', 'ok', '1'), record('separator', 'bad', '1\u001e2')])), /version id of Invoice\/bad holds U\+001E/);
    await assert.rejects(withTransaction(db(), (tx) => repo.storeMany(tx, [record('separator', 'when', '1', { lastUpdated: new Date(Number.NaN) })])), /lastUpdated of Invoice\/when is not a valid date/);
    assert.deepEqual(await rows('separator'), []);
  });

  /** The records with their bodies as UTF-8 bytes: laid out one after another in one buffer, each followed by U+001E (as a Bulk writer lays a batch out), or each in a buffer of its own. */
  const asBytes = (records: NewSourceRecord[], layout: 'laid out' | 'apart'): NewSourceRecord[] => {
    const texts = records.map((r) => r.bodyText!);
    const joined = Buffer.from(texts.map((t) => `${t}\u001e`).join(''));
    let at = 0;
    return records.map((r, i) => {
      const bytes = Buffer.byteLength(texts[i]!);
      const view = layout === 'laid out' ? joined.subarray(at, at + bytes) : Buffer.from(texts[i]!);
      at += bytes + 1;
      return { ...r, body: undefined, bodyText: undefined, bodyBytes: view };
    });
  };

  for (const layout of ['laid out', 'apart'] as const) {
    it(`stores bodies given as UTF-8 bytes (${layout}) byte for byte, and refuses one holding U+001E, naming the record`, async () => {
      const connector = `bytes-${layout.replace(' ', '-')}`;
      const batch = [record(connector, 'a', '1', { note: 'Jos\u00e9 \u4e2d\u6587 \ud83d\ude00' }), record(connector, 'b', '1'), record(connector, 'c', '1', { note: 'last' }), ...filler(connector, '1', 250)];
      assert.equal(await repo.storeMany(db().pool, asBytes(batch, layout)), batch.length);
      assert.deepEqual((await rows(connector)).map((r) => r.body), batch.map((r) => r.bodyText));
      const bad = asBytes([record(connector, 'd', '1'), record(connector, 'e', '1', { note: 'x' })], layout);
      const e = bad[1]!.bodyBytes!;
      e[e.indexOf(0x78)] = 0x1e; // the "x" of its note
      await assert.rejects(repo.storeMany(db().pool, bad), /the body of Invoice\/e is not JSON text/);
      assert.equal((await rows(connector)).length, batch.length);
    });
  }

  it('skips the versions other transactions commit while it stores them, and goes on (concurrent writers)', { skip: engine === 'pglite' ? 'the embedded database runs one transaction at a time' : undefined }, async () => {
    const [one, two] = [await db().pool.connect(), await db().pool.connect()];
    try {
      // Two other writers each hold an uncommitted version of the batch below.
      for (const [client, id] of [[one, 'r1'], [two, 'r2']] as const) {
        await client.query('BEGIN');
        assert.equal(await repo.storeMany(client, [record('race', id, '1', { note: 'committed first' })]), 1);
      }
      const stored = withTransaction(db(), async (tx) => {
        const batch = [record('race', 'r0', '1'), record('race', 'r1', '1', { note: 'too late' }), record('race', 'r2', '1', { note: 'too late' }), record('race', 'r3', '1')];
        const n = await repo.storeMany(tx, [...batch, ...filler('race', 'x', 250)]);
        await tx.query('SELECT 1'); // the transaction is still usable
        return n;
      });
      // The plain insert waits for r1's writer, then is refused; the insert of what is not stored yet (r1 now is)
      // waits for r2's, then is refused; ON CONFLICT DO NOTHING stores the rest.
      await waitUntilBlockedBy(db().pool, one);
      await one.query('COMMIT');
      await waitUntilBlockedBy(db().pool, two);
      await two.query('COMMIT');
      assert.equal(await stored, 2 + 250, 'r0, r3 and the filler are new; r1/1 and r2/1 were committed first');
    } finally {
      one.release();
      two.release();
    }
    assert.deepEqual((await named('race')).map((r) => `${r.source_id} ${JSON.parse(r.body).note}`), ['r1 committed first', 'r2 committed first', 'r0 ', 'r3 ']);
  });
});
