import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { before, it } from 'node:test';
import { ManualClock } from '../../../src/domain/clock.ts';
import type { SourceRecord } from '../../../src/domain/source-record.ts';
import { withTransaction } from '../../../src/store/database.ts';
import { PracticeRepository } from '../../../src/store/practices.ts';
import { ConnectorRunRepository, RUN_HEARTBEAT_MS, SourceRecordRepository } from '../../../src/store/source-records.ts';
import { describeOnEachDatabase } from '../../support/databases.ts';

function record(practiceId: string, id: string, versionId: string, over: Partial<SourceRecord> = {}): SourceRecord {
  const body = { resourceType: 'Invoice', id, meta: { versionId, lastUpdated: '2026-02-01T10:00:00.000Z' }, status: 'issued' };
  return {
    practiceId,
    connector: 'generic-fhir-r4',
    transport: 'fhir-r4',
    resourceType: 'Invoice',
    sourceId: id,
    versionId,
    lastUpdated: new Date('2026-02-01T10:00:00Z'),
    contentHash: createHash('sha256').update(JSON.stringify(body)).digest('hex'),
    body,
    ...over,
  };
}

describeOnEachDatabase('source records repository', (db) => {
  const clock = new ManualClock(new Date('2026-03-01T15:00:00Z'));
  let practiceId: string;
  let other: string;
  let repo: SourceRecordRepository;

  before(async () => {
    const practices = new PracticeRepository(db().pool);
    practiceId = (await practices.ensure({ slug: 'riverside', name: 'Riverside Pediatrics' })).id;
    other = (await practices.ensure({ slug: 'hillside', name: 'Hillside Family Care' })).id;
    repo = new SourceRecordRepository(db().pool, clock);
  });

  it('stores each version once, counting only the new ones, duplicates in one batch included', async () => {
    const first = await withTransaction(db(), (tx) => repo.storeMany(tx, [record(practiceId, 'a', '1'), record(practiceId, 'b', '1'), record(practiceId, 'a', '1')]));
    assert.equal(first, 2);
    const again = await withTransaction(db(), (tx) => repo.storeMany(tx, [record(practiceId, 'a', '1'), record(practiceId, 'a', '2'), record(other, 'a', '1')]));
    assert.equal(again, 2, 'a new version and another practice are new; the same version is not');
    assert.equal(await withTransaction(db(), (tx) => repo.storeMany(tx, [])), 0);
    const versions = await repo.versions(practiceId, 'generic-fhir-r4', 'Invoice', 'a');
    assert.deepEqual(versions.map((v) => v.versionId), ['1', '2']);
    const stored = versions[0]!;
    assert.equal(stored.status, 'pending');
    assert.equal(stored.ingestedAt, null);
    assert.deepEqual(stored.receivedAt, clock.now());
    assert.deepEqual(stored.lastUpdated, new Date('2026-02-01T10:00:00Z'));
    assert.deepEqual(stored.body, record(practiceId, 'a', '1').body);
    assert.match(stored.contentHash, /^[0-9a-f]{64}$/);
    assert.equal((await repo.get(practiceId, stored.id))?.sourceId, 'a');
    assert.equal(await repo.get(other, stored.id), undefined, 'another practice cannot read it');
    assert.equal(await repo.get(practiceId, 'not-an-id'), undefined);
  });

  it('refuses a content hash that is not 64 lowercase hex digits', async () => {
    for (const contentHash of ['A'.repeat(64), 'a'.repeat(63), 'a'.repeat(65), `${'a'.repeat(63)}g`, `${'a'.repeat(63)}\n`]) {
      await assert.rejects(
        withTransaction(db(), (tx) => repo.storeMany(tx, [record(practiceId, 'hash-check', '1', { connector: 'hash-check', contentHash })])),
        (error: { constraint?: string }) => error.constraint === 'source_records_content_hash_check',
        JSON.stringify(contentHash),
      );
    }
    assert.equal(await withTransaction(db(), (tx) => repo.storeMany(tx, [record(practiceId, 'hash-check', '1', { connector: 'hash-check', contentHash: '0123456789abcdef'.repeat(4) })])), 1);
  });

  it('rolls back with its transaction', async () => {
    await assert.rejects(
      withTransaction(db(), async (tx) => {
        await repo.storeMany(tx, [record(practiceId, 'rolled-back', '1')]);
        throw new Error('page failed');
      }),
      /page failed/,
    );
    assert.deepEqual(await repo.versions(practiceId, 'generic-fhir-r4', 'Invoice', 'rolled-back'), []);
  });

  it('lists by connector, type and status a page at a time, and marks records ingested', async () => {
    await withTransaction(db(), (tx) =>
      repo.storeMany(tx, [
        record(practiceId, 'p1', '1', { resourceType: 'Patient' }),
        record(practiceId, 'p2', '1', { resourceType: 'Patient' }),
        record(practiceId, 'p3', '1', { resourceType: 'Patient', connector: 'other-connector' }),
      ]),
    );
    const firstPage = await repo.list(practiceId, { resourceType: 'Patient', connector: 'generic-fhir-r4', limit: 1 });
    assert.equal(firstPage.items.length, 1);
    assert.ok(firstPage.next);
    const secondPage = await repo.list(practiceId, { resourceType: 'Patient', connector: 'generic-fhir-r4', limit: 1, after: firstPage.next });
    assert.deepEqual(secondPage.items.map((r) => r.sourceId), ['p2']);
    assert.equal(secondPage.next, undefined);
    await assert.rejects(repo.list(practiceId, { after: "1; DROP TABLE x" }), /invalid cursor/);

    const pending = await repo.pending(practiceId, 2);
    assert.equal(pending.length, 2);
    const changed = await withTransaction(db(), (tx) => repo.markIngested(tx, practiceId, pending.map((r) => r.id), clock.now()));
    assert.equal(changed, 2);
    assert.equal((await repo.get(practiceId, pending[0]!.id))?.status, 'ingested');
    const counts = await repo.counts(practiceId, 'generic-fhir-r4');
    const invoice = counts.find((c) => c.resourceType === 'Invoice')!;
    assert.equal(invoice.total, 3);
    assert.equal(invoice.ingested, 2);
    assert.equal(invoice.pending, 1);
    assert.deepEqual(counts.find((c) => c.resourceType === 'Patient'), { resourceType: 'Patient', total: 2, pending: 2, ingested: 0, quarantined: 0 });
  });

  it('quarantines with an OperationOutcome, lists open entries and resolves them', async () => {
    const outcome = { resourceType: 'OperationOutcome' as const, issue: [{ severity: 'error' as const, code: 'required' as const, details: { text: 'resource has no id' } }] };
    const id = await withTransaction(db(), (tx) =>
      repo.quarantine(tx, { practiceId, connector: 'generic-fhir-r4', resourceType: 'Invoice', raw: '{"resourceType":"Invoice"}', outcome }),
    );
    const stored = (await repo.list(practiceId, { resourceType: 'Patient', limit: 1 })).items[0]!;
    await withTransaction(db(), (tx) =>
      repo.quarantine(tx, { practiceId, connector: 'generic-fhir-r4', resourceType: 'Patient', sourceId: stored.sourceId, sourceRecordId: stored.id, raw: JSON.stringify(stored.body), outcome }),
    );
    assert.equal((await repo.get(practiceId, stored.id))?.status, 'quarantined');
    const open = await repo.listQuarantine(practiceId, { connector: 'generic-fhir-r4' });
    assert.equal(open.items.length, 2);
    assert.deepEqual(open.items[0]!.outcome, outcome);
    assert.equal(open.items[0]!.sourceId, null);
    assert.equal(open.items[1]!.sourceRecordId, stored.id);
    assert.equal(await repo.countOpenQuarantine(practiceId, 'generic-fhir-r4'), 2);
    assert.equal(await repo.resolveQuarantine(practiceId, id, clock.now()), true);
    assert.equal(await repo.resolveQuarantine(practiceId, id, clock.now()), false);
    assert.equal(await repo.resolveQuarantine(other, open.items[1]!.id, clock.now()), false, 'not across practices');
    assert.equal((await repo.listQuarantine(practiceId)).items.length, 1);
    assert.equal((await repo.listQuarantine(practiceId, { includeResolved: true })).items.length, 2);
    await assert.rejects(
      withTransaction(db(), (tx) =>
        repo.quarantine(tx, { practiceId, connector: 'c', resourceType: 'Invoice', raw: '', outcome: { resourceType: 'Bundle' } as never }),
      ),
      /check constraint/,
    );
  });

  it('records connector runs: last, last success, last failure', async () => {
    const runs = new ConnectorRunRepository(db().pool, clock);
    assert.deepEqual(await runs.status(practiceId, 'generic-fhir-r4'), { last: undefined, lastSuccess: undefined, lastFailure: undefined });
    const ok = await runs.start(practiceId, 'generic-fhir-r4', true);
    clock.advance(1000);
    await runs.finish(ok, { pages: 3, resources: 50, stored: 48, duplicates: 2, quarantined: 0 });
    const bad = await runs.start(practiceId, 'generic-fhir-r4', false);
    await runs.finish(bad, { pages: 1, resources: 10, stored: 10, duplicates: 0, quarantined: 0 }, '503 from http://ehr/Invoice');
    const running = await runs.start(practiceId, 'generic-fhir-r4', false);
    const status = await runs.status(practiceId, 'generic-fhir-r4');
    assert.equal(status.last?.id, running);
    assert.equal(status.last?.status, 'running', 'alive: this process runs it (its heartbeat is on the database clock, not the test clock a day behind)');
    assert.equal(status.lastSuccess?.id, ok);
    assert.equal(status.lastSuccess?.stored, 48);
    assert.equal(status.lastSuccess?.fullSync, true);
    assert.deepEqual(status.lastSuccess?.finishedAt, new Date('2026-03-01T15:00:01Z'));
    assert.equal(status.lastFailure?.error, '503 from http://ehr/Invoice');
    assert.deepEqual((await runs.list(practiceId, 'generic-fhir-r4')).map((r) => r.id), [running, bad, ok]);
    await runs.finish(running, { pages: 0, resources: 0, stored: 0, duplicates: 0, quarantined: 0 });
  });

  it('marks interrupted the runs whose process is gone, and only those', async () => {
    const runs = new ConnectorRunRepository(db().pool, clock);
    const connector = 'owners';
    const insert = async (owner: { host: string | null; pid: number | null }, heartbeatAgo: string | null) => {
      const { rows } = await db().pool.query<{ id: string }>(
        `INSERT INTO connector_runs (practice_id, connector, started_at, owner_host, owner_pid, heartbeat_at)
         VALUES ($1, $2, now() - $5::interval, $3, $4, now() - $5::interval) RETURNING id::text AS id`,
        [practiceId, connector, owner.host, owner.pid, heartbeatAgo ?? '0 seconds'],
      );
      if (heartbeatAgo === null) await db().pool.query('UPDATE connector_runs SET heartbeat_at = NULL WHERE id = $1', [rows[0]!.id]);
      return rows[0]!.id;
    };
    const exited = spawnSync(process.execPath, ['-e', 'process.exit(0)']).pid;
    const cases = {
      // On another host: judged by the heartbeat alone.
      elsewhereFresh: await insert({ host: 'worker-2.invalid', pid: 4242 }, '10 seconds'),
      elsewhereSilent: await insert({ host: 'worker-2.invalid', pid: 4242 }, '10 minutes'),
      // On this host: a process that exited is gone at once, whatever its heartbeat.
      exitedHere: await insert({ host: hostname(), pid: exited }, '1 second'),
      // This very process, which is not running that run.
      thisProcessNotRunning: await insert({ host: hostname(), pid: process.pid }, '1 second'),
      // Before owners were recorded: judged by the start time.
      legacyRecent: await insert({ host: null, pid: null }, null),
    };
    const legacyOld = await insert({ host: null, pid: null }, '1 hour');
    await db().pool.query('UPDATE connector_runs SET heartbeat_at = NULL WHERE id = $1', [legacyOld]);
    const alive = await runs.start(practiceId, connector, false);
    const byId = new Map((await runs.list(practiceId, connector)).map((r) => [r.id, r]));
    const statusOf = (id: string) => byId.get(id)?.status;
    assert.deepEqual(
      Object.fromEntries(Object.entries(cases).map(([name, id]) => [name, statusOf(id)])),
      { elsewhereFresh: 'running', elsewhereSilent: 'interrupted', exitedHere: 'interrupted', thisProcessNotRunning: 'interrupted', legacyRecent: 'running' },
    );
    assert.equal(statusOf(legacyOld), 'interrupted');
    assert.equal(statusOf(alive), 'running', 'the run this process is running');
    assert.match(byId.get(cases.exitedHere)!.error!, new RegExp(`^interrupted: process ${exited} on ${hostname().replace(/\./g, '\\.')} stopped without finishing this run \\(last heartbeat `));
    assert.match(byId.get(legacyOld)!.error!, /^interrupted: a process of an earlier Settle version stopped/);
    assert.ok(byId.get(cases.elsewhereSilent)!.finishedAt! < new Date(Date.now() - 9 * 60_000), 'finished when it was last seen alive');
    const status = await runs.status(practiceId, connector);
    assert.equal(status.last?.id, alive);
    assert.equal(status.lastFailure?.status, 'interrupted');
    assert.equal(await runs.interruptDead(practiceId, connector), 0, 'nothing more to mark');
    await runs.finish(alive, { pages: 1, resources: 1, stored: 1, duplicates: 0, quarantined: 0 });
    assert.equal(await runs.interruptDead(practiceId, connector), 0, 'a finished run is not touched');
    assert.equal((await runs.status(practiceId, connector)).last?.status, 'succeeded');
  });

  it('a running run proves it is alive every 30 s (on the database clock) until it finishes', async (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    const runs = new ConnectorRunRepository(db().pool, clock);
    const heartbeat = async (id: string) =>
      (await db().pool.query<{ at: Date }>('SELECT heartbeat_at AS at FROM connector_runs WHERE id = $1', [id])).rows[0]!.at.getTime();
    const id = await runs.start(practiceId, 'heartbeat', false);
    const first = await heartbeat(id);
    await new Promise((resolve) => setTimeout(resolve, 20));
    t.mock.timers.tick(RUN_HEARTBEAT_MS);
    for (let i = 0; i < 100 && (await heartbeat(id)) === first; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    const second = await heartbeat(id);
    assert.ok(second > first, 'the heartbeat moved');
    await runs.finish(id, { pages: 0, resources: 0, stored: 0, duplicates: 0, quarantined: 0 });
    t.mock.timers.tick(RUN_HEARTBEAT_MS * 3);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(await heartbeat(id), second, 'no heartbeat once finished');
  });

  it('stores a body given as JSON text exactly as received, and quarantines several entries in order', async () => {
    const text = '{"resourceType":"Invoice","id":"as-text","meta":{"versionId":"1"},"totalNet":{"value":12345678901234567890.10}}';
    const { body: _parsed, ...rest } = record(practiceId, 'as-text', '1');
    assert.equal(await withTransaction(db(), (tx) => repo.storeMany(tx, [{ ...rest, bodyText: text }])), 1);
    const { rows } = await db().pool.query<{ value: string }>(
      `SELECT body::json -> 'totalNet' ->> 'value' AS value FROM source_records WHERE practice_id = $1 AND source_id = 'as-text'`,
      [practiceId],
    );
    assert.equal(rows[0]!.value, '12345678901234567890.10', 'not rounded by a parse and serialise in between');
    const [stored] = await repo.versions(practiceId, 'generic-fhir-r4', 'Invoice', 'as-text');
    assert.equal((stored!.body as { id: string }).id, 'as-text', 'read back parsed');
    await assert.rejects(withTransaction(db(), (tx) => repo.storeMany(tx, [{ ...rest, sourceId: 'bad', bodyText: '{"a":1}\u001e{"b":2}' }])), /Invoice\/bad is not JSON text/);

    const outcome = (text: string) => ({ resourceType: 'OperationOutcome' as const, issue: [{ severity: 'error' as const, code: 'invalid' as const, details: { text } }] });
    const entries = ['first', 'second', 'third'].map((t) => ({ practiceId, connector: 'ordered', resourceType: 'Invoice', raw: t, outcome: outcome(t) }));
    assert.equal(await withTransaction(db(), (tx) => repo.quarantineMany(tx, entries)), 3);
    assert.deepEqual((await repo.listQuarantine(practiceId, { connector: 'ordered' })).items.map((q) => [q.raw, q.outcome.issue[0]!.details!.text]), [
      ['first', 'first'],
      ['second', 'second'],
      ['third', 'third'],
    ]);
  });
});
