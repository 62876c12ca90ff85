import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CommitBatcher, type BatchStore } from '../../../src/connectors/hl7v2/commit-batcher.ts';
import type { NewHl7Message, StoreResult } from '../../../src/store/hl7-messages.ts';

const message = (controlId: string): NewHl7Message => ({
  practiceId: '00000000-0000-4000-8000-000000000001',
  connector: 'feed',
  controlId,
  messageType: 'DFT^P03',
  sendingApplication: 'PMS',
  sendingFacility: 'RIVERSIDE',
  receivedAt: new Date('2026-03-01T15:00:00Z'),
  raw: `MSH|^~\\&|PMS|RIVERSIDE|||20260301||DFT^P03|${controlId}|P|2.5.1`,
  rawBytesCharset: 'UTF-8',
});

/** A store whose commits end when the test says so; it records each batch's control ids. */
function heldStore(fail: (controlId: string) => boolean = () => false) {
  const batches: string[][] = [];
  const open: Array<() => void> = [];
  const store: BatchStore = {
    async store(one) {
      return (await store.storeMany([one]))[0];
    },
    storeMany(messages) {
      const ids = messages.map((m) => m.controlId);
      batches.push(ids);
      return new Promise<StoreResult[]>((resolve, reject) => {
        open.push(() => (ids.some(fail) ? reject(new Error(`bad row in ${ids.join(',')}`)) : resolve(ids.map((id) => ({ id, duplicate: false })))));
      });
    },
  };
  /** Ends the oldest open commit and lets its waiters run. */
  const commitNext = async () => {
    const next = open.shift();
    assert.ok(next, 'a commit is in flight');
    next();
    await sleep(0);
  };
  return { store, batches, open, commitNext };
}

describe('commit batcher', () => {
  it('starts a lone message at once, and batches what arrives while a commit is in flight', async () => {
    const { store, batches, commitNext } = heldStore();
    const batcher = new CommitBatcher(store, { maxBatch: 100, maxInFlight: 1, gatherMs: 50 });
    const [a, b, c] = [{}, {}, {}];
    const first = batcher.store(message('A1'), a);
    assert.deepEqual(batches, [['A1']], 'nothing expected yet: no wait');
    const rest = [batcher.store(message('B1'), b), batcher.store(message('C1'), c)];
    assert.equal(batches.length, 1, 'one commit in flight at most');
    await commitNext();
    assert.deepEqual(await first, { id: 'A1', duplicate: false });
    // A was in the batch just committed and has not sent again: the next batch waits for it.
    assert.equal(batches.length, 1);
    const again = batcher.store(message('A2'), a);
    assert.deepEqual(batches[1], ['B1', 'C1', 'A2'], 'the waiting senders and the returning one share a commit');
    await commitNext();
    assert.deepEqual((await Promise.all([...rest, again])).map((r) => r.id), ['B1', 'C1', 'A2']);
    const { committingMs: _ms, ...counts } = batcher.stats();
    assert.deepEqual(counts, { batches: 2, messages: 4, peakInFlight: 1, gatherTimeouts: 0 });
  });

  it('waits at most gatherMs for a sender that does not send again, and not at all once it is gone', async () => {
    const { store, batches, commitNext } = heldStore();
    const batcher = new CommitBatcher(store, { maxBatch: 100, maxInFlight: 1, gatherMs: 20 });
    const [a, b, c] = [{}, {}, {}];
    const first = batcher.store(message('A1'), a);
    const waiting = batcher.store(message('B1'), b);
    await commitNext();
    await first;
    assert.equal(batches.length, 1, 'B1 waits for A');
    await sleep(60);
    assert.deepEqual(batches[1], ['B1'], 'started when gatherMs ran out');
    assert.equal(batcher.stats().gatherTimeouts, 1);
    const third = batcher.store(message('C1'), c);
    await commitNext();
    await waiting;
    assert.equal(batches.length, 2, 'C1 waits for B');
    batcher.forget(b);
    assert.deepEqual(batches[2], ['C1'], 'B closed its connection: nobody to wait for');
    await commitNext();
    await third;
    assert.equal(batcher.stats().gatherTimeouts, 1);
  });

  it('commits a sender’s messages in order: a later one never commits beside or before an uncommitted earlier one', async () => {
    const { store, batches, open, commitNext } = heldStore();
    const batcher = new CommitBatcher(store, { maxBatch: 2, maxInFlight: 3, gatherMs: 0 });
    const [a, b, c] = [{}, {}, {}];
    const results = [batcher.store(message('A1'), a), batcher.store(message('A2'), a), batcher.store(message('B1'), b)];
    assert.deepEqual(batches, [['A1']], 'A2 waits for A1; B1 alone is not a full batch, so it waits for the commit in flight');
    results.push(batcher.store(message('C1'), c), batcher.store(message('A3'), a));
    assert.deepEqual(batches, [['A1'], ['B1', 'C1']], 'a full batch commits beside the one in flight, without A2');
    await commitNext();
    assert.deepEqual(batches[2], ['A2', 'A3'], 'both follow A1, in order, in one batch');
    assert.equal(open.length, 2);
    await commitNext();
    await commitNext();
    assert.deepEqual((await Promise.all(results)).map((r) => r.id), ['A1', 'A2', 'B1', 'C1', 'A3']);
    assert.equal(batcher.stats().peakInFlight, 2);
  });

  it('commits more than one batch at once only when full batches are waiting, up to maxInFlight', async () => {
    const { store, batches, open, commitNext } = heldStore();
    const batcher = new CommitBatcher(store, { maxBatch: 2, maxInFlight: 2, gatherMs: 0 });
    const senders = Array.from({ length: 7 }, () => ({}));
    const results = senders.map((s, i) => batcher.store(message(`S${i}`), s));
    assert.deepEqual(batches, [['S0'], ['S1', 'S2']], 'S0 at once; then a full batch beside it; the rest wait for a slot');
    await commitNext();
    assert.deepEqual(batches.slice(2), [['S3', 'S4']]);
    await commitNext();
    assert.deepEqual(batches.slice(3), [['S5', 'S6']]);
    assert.equal(open.length, 2);
    while (open.length > 0) await commitNext();
    assert.equal((await Promise.all(results)).length, 7);
    const { committingMs: _ms, ...counts } = batcher.stats();
    assert.deepEqual(counts, { batches: 4, messages: 7, peakInFlight: 2, gatherTimeouts: 0 });
  });

  it('counts the time during which batches commit: overlapping batches once, idle time not at all', async () => {
    const { store, commitNext } = heldStore();
    const batcher = new CommitBatcher(store, { maxBatch: 1, maxInFlight: 2, gatherMs: 0 });
    const started = performance.now();
    const first = batcher.store(message('A1'), {});
    await sleep(30);
    const second = batcher.store(message('B1'), {}); // a full batch (maxBatch 1): commits beside A1
    await sleep(30);
    assert.ok(batcher.stats().committingMs >= 55, `${batcher.stats().committingMs} ms while A1 is still committing`);
    await commitNext();
    await sleep(30);
    await commitNext();
    await Promise.all([first, second]);
    const span = performance.now() - started;
    const { committingMs } = batcher.stats();
    assert.ok(committingMs >= 85 && committingMs <= span, `${committingMs} ms committing in a ${span} ms span (A1 and B1 overlapped for 30 ms)`);
    await sleep(30);
    assert.equal(batcher.stats().committingMs, committingMs, 'nothing committing: the count stands still');
  });

  it('retries a failed batch one message at a time, so one bad row fails only its own message', async () => {
    const { store, batches, commitNext } = heldStore((id) => id === 'BAD');
    const batcher = new CommitBatcher(store, { maxBatch: 100, maxInFlight: 1, gatherMs: 0 });
    const [a, b, c, d] = [{}, {}, {}, {}];
    const first = batcher.store(message('A1'), a);
    const settled = Promise.allSettled([batcher.store(message('B1'), b), batcher.store(message('BAD'), c), batcher.store(message('D1'), d)]);
    await commitNext();
    await first;
    assert.deepEqual(batches[1], ['B1', 'BAD', 'D1']);
    await commitNext(); // the batch fails
    for (let i = 0; i < 3; i++) await commitNext(); // each message alone
    assert.deepEqual((await settled).map((s) => s.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.deepEqual(batches.slice(2), [['B1'], ['BAD'], ['D1']]);
  });
});
