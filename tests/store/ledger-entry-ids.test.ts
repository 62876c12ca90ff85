import assert from 'node:assert/strict';
import { it } from 'node:test';
import { timeOrderedId, timeOrderedIds } from '../../src/store/time-ordered-id.ts';

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

it('makes a batch of ledger entry ids: UUIDs version 7 of the given millisecond, distinct and ascending', () => {
  const at = new Date('2026-02-01T00:00:00.123Z');
  const ids = timeOrderedIds(at, 5000);
  assert.equal(ids.length, 5000);
  for (const id of ids) {
    assert.match(id, V7);
    assert.equal(Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16), at.getTime());
  }
  assert.equal(new Set(ids).size, ids.length);
  assert.deepEqual(ids, [...ids].sort());
  assert.deepEqual(timeOrderedIds(at, 0), []);
});

it('draws each batch at random: two batches of the same millisecond share no id', () => {
  const at = new Date();
  const [a, b] = [timeOrderedIds(at, 1000), timeOrderedIds(at, 1000)];
  assert.notEqual(a[0]!.slice(0, 28), b[0]!.slice(0, 28), 'different random bits');
  assert.equal(new Set([...a, ...b]).size, 2000);
});

it('a single id is a UUID version 7 of its time, later times sorting after earlier ones', () => {
  const early = timeOrderedId(new Date('2026-01-01T00:00:00Z'));
  const late = timeOrderedId(new Date('2026-01-01T00:00:00.001Z'));
  assert.match(early, V7);
  assert.ok(early < late);
});
