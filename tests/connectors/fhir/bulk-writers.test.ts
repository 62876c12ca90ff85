import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { BulkWriter, closeWriters, openWriters } from '../../../src/connectors/fhir/bulk-writers.ts';
import type { ClassifiedPage } from '../../../src/connectors/fhir/sync.ts';
import { describeOnEachDatabase } from '../../support/databases.ts';

/** A promise settled from outside. */
function deferred(): { promise: Promise<void>; resolve: () => void; reject: (error: Error) => void } {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

/** Lets every callback already due run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('a Bulk writer', () => {
  /** A writer whose stores wait until the test finishes them, recording which batch (by its first quarantine raw) started. */
  function controlledWriter() {
    const started: string[] = [];
    const pending = new Map<string, ReturnType<typeof deferred>>();
    const writer = new BulkWriter({} as pg.PoolClient, async (_client, batch: ClassifiedPage) => {
      const name = batch.quarantined[0]!.raw;
      started.push(name);
      const d = deferred();
      pending.set(name, d);
      await d.promise;
    });
    const fill = (name: string) => {
      writer.batch.quarantined.push({ practiceId: 'p', connector: 'c', resourceType: 'Invoice', raw: name, outcome: { resourceType: 'OperationOutcome', issue: [] } });
      writer.chars += name.length;
    };
    return { writer, started, pending, fill };
  }

  it('stores its batches in order, each as soon as the one before is stored, and waits to hand over while two are queued', async () => {
    const { writer, started, pending, fill } = controlledWriter();
    fill('b1');
    await writer.handOver();
    assert.equal(writer.size, 0, 'a fresh batch to fill');
    assert.equal(writer.chars, 0);
    fill('b2');
    await writer.handOver(); // b1 being stored, b2 queued behind it: not waited for
    await settle();
    assert.deepEqual(started, ['b1'], 'b2 waits for b1');
    fill('b3');
    let handedOver = false;
    const third = writer.handOver().then(() => (handedOver = true));
    await settle();
    assert.equal(handedOver, false, 'two batches queued: the third waits');
    pending.get('b1')!.resolve();
    await third;
    assert.deepEqual(started, ['b1', 'b2'], 'b2 started when b1 was stored, before anything else was handed over');
    pending.get('b2')!.resolve();
    await settle();
    assert.deepEqual(started, ['b1', 'b2', 'b3']);
    let allStored = false;
    const stored = writer.stored().then(() => (allStored = true));
    await settle();
    assert.equal(allStored, false, 'b3 is not stored yet');
    pending.get('b3')!.resolve();
    await stored;
  });

  it('fails the next hand-over and stored() with the first failure, and stores nothing after it', async () => {
    const { writer, started, pending, fill } = controlledWriter();
    fill('b1');
    await writer.handOver();
    fill('b2');
    await writer.handOver();
    await settle();
    pending.get('b1')!.reject(new Error('b1 refused'));
    fill('b3');
    await assert.rejects(writer.handOver(), /b1 refused/);
    await assert.rejects(writer.stored(), /b1 refused/);
    assert.deepEqual(started, ['b1'], 'b2 was never sent');
  });

  it('lays each batch\'s bodies out as UTF-8 bytes, one after another with U+001E after each, in a buffer used again once its batch is stored', async () => {
    const stored: ClassifiedPage[] = [];
    const pending: ReturnType<typeof deferred>[] = [];
    const writer = new BulkWriter({} as pg.PoolClient, async (_client, batch) => {
      stored.push(batch);
      const d = deferred();
      pending.push(d);
      await d.promise;
    });
    const add = (text: string) =>
      writer.addRecord({ practiceId: 'p', connector: 'c', transport: 'fhir-r4', resourceType: 'Invoice', sourceId: 'x', versionId: '1', lastUpdated: null, contentHash: 'h', bodyText: text });
    const texts = ['{"a":"Jos\u00e9"}', '{"b":"\u4e2d\u6587 \ud83d\ude00"}', '{"c":1}'];
    for (const text of texts) add(text);
    const first = writer.batch.records.map((r) => r.bodyBytes!);
    assert.deepEqual(writer.batch.records.map((r) => r.bodyText), [undefined, undefined, undefined], 'the records keep the bytes, not the text');
    assert.deepEqual(first.map((b) => Buffer.from(b).toString('utf8')), texts);
    const all = Buffer.from(first[0]!.buffer, first[0]!.byteOffset, first[2]!.byteOffset + first[2]!.length + 1 - first[0]!.byteOffset);
    assert.equal(all.toString('utf8'), texts.map((t) => `${t}\u001e`).join(''), 'one after another, U+001E after each');
    await writer.handOver();
    add('{"d":2}');
    const second = writer.batch.records[0]!.bodyBytes!;
    assert.notEqual(second.buffer, first[0]!.buffer, 'the first batch is not stored yet: the next one lies in another buffer');
    await writer.handOver();
    pending[0]!.resolve();
    await settle();
    add('{"e":3}');
    assert.equal(writer.batch.records[0]!.bodyBytes!.buffer, first[0]!.buffer, 'the first batch is stored: its buffer takes the next one');
    assert.equal(writer.batch.records[0]!.bodyBytes!.byteOffset, first[0]!.byteOffset, 'from its start');
    const long = `{"f":"${'\u00e9'.repeat(2 ** 20)}"}`; // 2 MiB and more as UTF-8: more than a body buffer holds
    add(long);
    const [e, f] = writer.batch.records.map((r) => r.bodyBytes!);
    assert.equal(Buffer.from(e!).toString('utf8'), '{"e":3}');
    assert.equal(Buffer.from(f!).toString('utf8'), long, 'a line longer than the buffer gets one of its own');
    await writer.handOver();
    pending[1]!.resolve();
    await settle();
    pending[2]!.resolve();
    await writer.stored();
    assert.deepEqual(stored.map((b) => b.records.length), [3, 1, 2]);
  });
});

describeOnEachDatabase('Bulk writers\' connections', (db, engine) => {
  const setting = async (client: pg.ClientBase) => (await client.query<{ synchronous_commit: string }>('SHOW synchronous_commit')).rows[0]!.synchronous_commit;

  it('holds one connection each, at most the pool less one, committing without waiting for the disk on a server, and gives them back as they were', async () => {
    // What RESET returns a session to: the server's own default ('on', unless it is configured otherwise, as CI's is).
    const { rows: [defaults] } = await db().pool.query<{ reset_val: string }>(`SELECT reset_val FROM pg_settings WHERE name = 'synchronous_commit'`);
    const writers = await openWriters(db(), 10, async () => {});
    assert.equal(writers.length, 4, 'a pool of 5: one left for the heartbeat and checkpoints');
    for (const w of writers) assert.equal(await setting(w.client), engine === 'postgres' ? 'off' : defaults!.reset_val);
    await closeWriters(db(), writers);
    const clients = await Promise.all(Array.from({ length: 5 }, () => db().pool.connect()));
    try {
      for (const client of clients) assert.equal(await setting(client), defaults!.reset_val, 'every connection of the pool as it was');
    } finally {
      for (const client of clients) client.release();
    }
  });

  it('closes the connection of a writer whose batch failed instead of giving it back, and closing does not throw', async () => {
    const writers = await openWriters(db(), 1, async (client) => {
      await client.query('SELECT 1/0');
    });
    const [writer] = writers;
    const ended = new Promise<string>((resolve) => writer!.client.once('end', () => resolve('closed')));
    writer!.batch.quarantined.push({ practiceId: 'p', connector: 'c', resourceType: 'Invoice', raw: 'x', outcome: { resourceType: 'OperationOutcome', issue: [] } });
    await writer!.handOver();
    await assert.rejects(writer!.stored(), /division by zero/);
    await closeWriters(db(), writers);
    assert.equal(await Promise.race([ended, sleep(2000).then(() => 'still open after 2 s')]), 'closed');
    assert.equal(db().pool.totalCount, db().pool.idleCount, 'no connection left checked out');
  });
});
