import assert from 'node:assert/strict';
import { it } from 'node:test';
import { Hl7MessageRepository, type NewHl7Message } from '../../../src/store/hl7-messages.ts';
import { PracticeRepository } from '../../../src/store/practices.ts';
import { describeOnEachDatabase } from '../../support/databases.ts';

describeOnEachDatabase('hl7 message store', (db) => {
  const receivedAt = new Date('2026-03-01T15:00:00.123Z');
  const message = (practiceId: string, overrides: Partial<NewHl7Message> = {}): NewHl7Message => ({
    practiceId,
    connector: 'pm-hl7v2',
    controlId: 'C1',
    messageType: 'DFT^P03',
    sendingApplication: 'PMS',
    sendingFacility: 'RIVERSIDE',
    receivedAt,
    raw: 'MSH|^~\\&|PMS|RIVERSIDE|||20260301||DFT^P03|C1|P|2.5.1',
    rawBytesCharset: 'UTF-8',
    ...overrides,
  });

  it('stores a control id once per sender, however often (and however concurrently) it arrives', async () => {
    const practice = await new PracticeRepository(db().pool).ensure({ slug: 'store-a', name: 'A' });
    const repo = new Hl7MessageRepository(db().pool);
    const results = await Promise.all(Array.from({ length: 5 }, () => repo.store(message(practice.id))));
    assert.equal(results.filter((r) => !r.duplicate).length, 1);
    assert.equal(new Set(results.map((r) => r.id)).size, 1);
    const [stored] = await repo.findByControlId(practice.id, 'pm-hl7v2', 'C1');
    assert.equal(stored.status, 'received');
    assert.deepEqual(stored.receivedAt, receivedAt);
    assert.equal(stored.raw, message(practice.id).raw);
    // Another sender, another connector or another practice is another message.
    assert.equal((await repo.store(message(practice.id, { sendingFacility: 'NORTH' }))).duplicate, false);
    assert.equal((await repo.store(message(practice.id, { connector: 'other' }))).duplicate, false);
    const other = await new PracticeRepository(db().pool).ensure({ slug: 'store-b', name: 'B' });
    assert.equal((await repo.store(message(other.id))).duplicate, false);
    assert.equal((await repo.findByControlId(practice.id, 'pm-hl7v2', 'C1')).length, 2);
    assert.equal(await repo.findById(other.id, results[0].id), undefined, 'practices see only their own messages');
  });

  it('stores a batch in one statement: new rows, in-batch copies and earlier rows each recognised', async () => {
    const practice = await new PracticeRepository(db().pool).ensure({ slug: 'store-batch', name: 'Batch' });
    const repo = new Hl7MessageRepository(db().pool);
    const earlier = await repo.store(message(practice.id, { controlId: 'OLD' }));
    const results = await repo.storeMany([
      message(practice.id, { controlId: 'N1' }),
      message(practice.id, { controlId: 'OLD' }),
      message(practice.id, { controlId: 'N2' }),
      message(practice.id, { controlId: 'N1' }),
    ]);
    assert.deepEqual(results.map((r) => r.duplicate), [false, true, false, true]);
    assert.equal(results[1].id, earlier.id);
    assert.equal(results[3].id, results[0].id);
    assert.deepEqual(await repo.countByStatus(practice.id), { received: 3, processed: 0, failed: 0 });
    assert.deepEqual(await repo.storeMany([]), []);
  });

  it('gives new rows time-ordered ids (UUID version 7, receive time first) that find them', async () => {
    const practice = await new PracticeRepository(db().pool).ensure({ slug: 'store-ids', name: 'Ids' });
    const repo = new Hl7MessageRepository(db().pool);
    const later = new Date(receivedAt.getTime() + 1);
    const results = await repo.storeMany([message(practice.id, { controlId: 'T2', receivedAt: later }), message(practice.id, { controlId: 'T1' })]);
    for (const [i, at] of [later, receivedAt].entries()) {
      const id = results[i].id;
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.equal(parseInt(id.slice(0, 8) + id.slice(9, 13), 16), at.getTime());
      assert.equal((await repo.findById(practice.id, id))?.controlId, `T${2 - i}`);
    }
    assert.ok(results[1].id < results[0].id, 'ordered by receive time');
  });

  it('keeps every message tied to an existing practice, checked once per insert', async () => {
    const practices = new PracticeRepository(db().pool);
    const practice = await practices.ensure({ slug: 'store-fk', name: 'Fk' });
    const repo = new Hl7MessageRepository(db().pool);
    const unknown = '00000000-0000-4000-8000-00000000abcd';
    await assert.rejects(repo.storeMany([message(practice.id, { controlId: 'K1' }), message(unknown, { controlId: 'K2' })]), (error: { code?: string; constraint?: string }) => {
      assert.deepEqual([error.code, error.constraint], ['23503', 'hl7_messages_practice_id_fkey']);
      return true;
    });
    assert.equal((await repo.findByControlId(practice.id, 'pm-hl7v2', 'K1')).length, 0, 'the whole batch is refused');
    const stored = await repo.store(message(practice.id, { controlId: 'K1' }));
    await assert.rejects(db().pool.query('UPDATE hl7_messages SET practice_id = $1 WHERE id = $2', [unknown, stored.id]), /keeps its practice/);
    await assert.rejects(db().pool.query('DELETE FROM practices WHERE id = $1', [practice.id]), /still has hl7_messages rows/);
    await assert.rejects(db().pool.query('UPDATE practices SET id = $1 WHERE id = $2', [unknown, practice.id]), /still has hl7_messages rows/);
    await db().pool.query("UPDATE practices SET name = 'Fk renamed' WHERE id = $1", [practice.id]);
    const empty = await practices.ensure({ slug: 'store-fk-empty', name: 'Empty' });
    assert.equal((await db().pool.query('DELETE FROM practices WHERE id = $1', [empty.id])).rowCount, 1, 'a practice without messages is not held');
  });

  it('records processing outcomes and counts by status', async () => {
    const practice = await new PracticeRepository(db().pool).ensure({ slug: 'store-c', name: 'C' });
    const repo = new Hl7MessageRepository(db().pool);
    const a = await repo.store(message(practice.id, { controlId: 'A' }));
    const b = await repo.store(message(practice.id, { controlId: 'B' }));
    await repo.store(message(practice.id, { controlId: 'C' }));
    const at = new Date('2026-03-01T16:00:00Z');
    await repo.markFailed(practice.id, a.id, 'FT1-11 is not an amount', at);
    await repo.markProcessed(practice.id, b.id, at);
    assert.deepEqual(await repo.countByStatus(practice.id), { received: 1, processed: 1, failed: 1 });
    const failed = await repo.findById(practice.id, a.id);
    assert.equal(failed?.error, 'FT1-11 is not an amount');
    assert.deepEqual(failed?.statusChangedAt, at);
    await repo.markProcessed(practice.id, a.id, at);
    assert.equal((await repo.findById(practice.id, a.id))?.error, null);
  });

  it('refuses rows without a control id or with an unknown charset', async () => {
    const practice = await new PracticeRepository(db().pool).ensure({ slug: 'store-d', name: 'D' });
    const repo = new Hl7MessageRepository(db().pool);
    await assert.rejects(repo.store(message(practice.id, { controlId: '' })), /check constraint/);
    await assert.rejects(repo.store(message(practice.id, { rawBytesCharset: 'UTF-16' as 'UTF-8' })), /check constraint/);
  });
});
