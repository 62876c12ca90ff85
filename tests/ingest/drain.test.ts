/**
 * The batch loop both ingest jobs run (`drain`): batches until the work is done, within the run's batch budget, and
 * with several drainers at once (pending source records on a server), each taking the next batch when its own is done.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { drain, ingestDrainers, SERVER_INGEST_DRAINERS } from '../../src/ingest/drain.ts';

/** A queue of `rows` rows taken `limit` at a time, a batch lasting a few turns of the event loop; records what ran at once. */
function queue(rows: number, options: { failAtBatch?: number } = {}) {
  const state = { left: rows, batches: 0, running: 0, mostAtOnce: 0, settled: 0 };
  const batch = async (limit: number) => {
    const n = ++state.batches;
    state.running++;
    state.mostAtOnce = Math.max(state.mostAtOnce, state.running);
    const taken = Math.min(limit, state.left);
    state.left -= taken;
    for (let turn = 0; turn < 3 + (n % 3); turn++) await nextTurn();
    state.running--;
    state.settled++;
    if (n === options.failAtBatch) throw new Error(`batch ${n} failed`);
    return { records: taken };
  };
  return { state, batch };
}

const count = (c: { records: number }) => c.records;

describe('drain', () => {
  it('with one drainer, runs one batch at a time until a batch comes back short', async () => {
    const { state, batch } = queue(25);
    const total = await drain({ limit: 10 }, batch, count, count, { records: 0 });
    assert.deepEqual(total, { records: 25 });
    assert.equal(state.batches, 3);
    assert.equal(state.mostAtOnce, 1);
  });

  it('with two drainers, runs two batches at once and takes every row exactly once', async () => {
    const { state, batch } = queue(95);
    const total = await drain({ limit: 10, drainers: 2 }, batch, count, count, { records: 0 });
    assert.deepEqual(total, { records: 95 });
    assert.equal(state.left, 0);
    assert.equal(state.mostAtOnce, 2);
    assert.equal(state.running, 0, 'nothing still running when the run settles');
  });

  it('shares the run\'s batch budget between the drainers', async () => {
    const { state, batch } = queue(1000);
    const total = await drain({ limit: 10, drainers: 2, maxBatches: 5 }, batch, count, count, { records: 0 });
    assert.equal(state.batches, 5);
    assert.deepEqual(total, { records: 50 });
  });

  it('stops a drainer whose batch made no progress', async () => {
    let batches = 0;
    const total = await drain({ limit: 10, drainers: 2 }, async () => (batches++, { records: 10, skipped: 10 }), (c) => c.records, (c) => c.records - c.skipped, { records: 0, skipped: 0 });
    assert.equal(batches, 2, 'each drainer stops after its first fruitless batch');
    assert.deepEqual(total, { records: 20, skipped: 20 });
  });

  it('after a batch fails, starts no new batch, and throws the failure once the other drainer\'s batch has settled', async () => {
    const { state, batch } = queue(1000, { failAtBatch: 2 });
    await assert.rejects(drain({ limit: 10, drainers: 2 }, batch, count, count, { records: 0 }), /batch 2 failed/);
    assert.equal(state.running, 0, 'no batch is still running when the failure reaches the job');
    assert.ok(state.batches <= 3, `batches run: ${state.batches}`);
  });

  it('drains pending source records two batches at once on a server, one on the embedded database', () => {
    assert.equal(ingestDrainers({ kind: 'server' }), SERVER_INGEST_DRAINERS);
    assert.equal(SERVER_INGEST_DRAINERS, 2);
    assert.equal(ingestDrainers({ kind: 'embedded' }), 1);
  });
});
