import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { before, it } from 'node:test';
import { ManualClock } from '../../../src/domain/clock.ts';
import type { SourceRecord } from '../../../src/domain/source-record.ts';
import { withTransaction } from '../../../src/store/database.ts';
import { PracticeRepository } from '../../../src/store/practices.ts';
import { ConnectorRunRepository, SourceRecordRepository } from '../../../src/store/source-records.ts';
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
    assert.equal(status.last?.status, 'running');
    assert.equal(status.lastSuccess?.id, ok);
    assert.equal(status.lastSuccess?.stored, 48);
    assert.equal(status.lastSuccess?.fullSync, true);
    assert.deepEqual(status.lastSuccess?.finishedAt, new Date('2026-03-01T15:00:01Z'));
    assert.equal(status.lastFailure?.error, '503 from http://ehr/Invoice');
    assert.deepEqual((await runs.list(practiceId, 'generic-fhir-r4')).map((r) => r.id), [running, bad, ok]);
  });
});
