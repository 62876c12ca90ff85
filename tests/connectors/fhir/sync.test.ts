import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { Invoice } from '@medplum/fhirtypes';
import { createFhirClient, type FhirConnectorConfig } from '../../../src/connectors/fhir/connector.ts';
import { SyncFailedError, syncFhirConnector, type SyncOptions, type SyncProgress } from '../../../src/connectors/fhir/sync.ts';
import { systemClock } from '../../../src/domain/clock.ts';
import { CheckpointRepository } from '../../../src/store/checkpoints.ts';
import { PracticeRepository } from '../../../src/store/practices.ts';
import { ConnectorRunRepository, SourceRecordRepository } from '../../../src/store/source-records.ts';
import { describeOnEachDatabase } from '../../support/databases.ts';
import { runChild, urlOf } from './child-process.ts';
import { startSandboxEhr, type SandboxEhr } from '../../../src/sandbox-ehr/server.ts';
import { seedPractice, type SeedSummary } from '../../../src/sandbox-ehr/seed.ts';

function connectorFor(ehr: SandboxEhr, name: string, over: Partial<FhirConnectorConfig> = {}): FhirConnectorConfig {
  return {
    name,
    description: 'test',
    practice: 'riverside',
    transport: 'fhir-r4',
    baseUrl: ehr.baseUrl,
    auth: { method: 'none' },
    resources: [{ type: 'Patient' }, { type: 'Account' }, { type: 'Coverage' }, { type: 'Invoice' }],
    schedule: { every: '15 minutes' },
    pageSize: 10,
    rateLimitPerSecond: 1000,
    ...over,
  };
}

describeOnEachDatabase('FHIR incremental sync against the sandbox EHR', (db) => {
  let ehr: SandboxEhr;
  let seeded: SeedSummary;
  let practiceId: string;
  let sleeps: number[] = [];

  before(async () => {
    ehr = await startSandboxEhr();
    seeded = await seedPractice(ehr.repo, { patients: 30, seed: 11 });
    practiceId = (await new PracticeRepository(db().pool).ensure({ slug: 'riverside', name: 'Riverside Pediatrics' })).id;
  });
  after(() => ehr.close());

  function sync(connector: FhirConnectorConfig, over: Partial<SyncOptions> = {}) {
    sleeps = [];
    const client = createFhirClient(connector, { env: {}, sleep: async (ms) => void sleeps.push(ms) });
    return syncFhirConnector({ db: db(), connector, practiceId, client, ...over });
  }
  const records = () => new SourceRecordRepository(db().pool, systemClock);
  const checkpoint = async (connector: string, type: string) => (await new CheckpointRepository(db().pool, systemClock).get(practiceId, connector, type))?.position;
  const maxLastUpdated = (type: string) =>
    ehr.repo.searchResources({ resourceType: type as 'Patient' }).then((all) => all.map((r) => r.meta!.lastUpdated!).sort().at(-1)!);

  it('stores every seeded resource on the first sync, over three or more pages, and moves the checkpoints', async () => {
    const connector = connectorFor(ehr, 'first-sync');
    const progress: SyncProgress[] = [];
    const start = ehr.stats.fhirRequests.length;
    const summary = await sync(connector, { onProgress: (p) => progress.push(p) });
    const byType = Object.fromEntries(summary.types.map((t) => [t.resourceType, t]));
    assert.equal(byType.Patient!.stored, seeded.patients);
    assert.equal(byType.Account!.stored, seeded.accounts);
    assert.equal(byType.Coverage!.stored, seeded.coverages);
    assert.equal(byType.Invoice!.stored, seeded.invoices);
    assert.equal(byType.Patient!.pages, Math.ceil(seeded.patients / 10));
    assert.ok(byType.Patient!.pages >= 3);
    assert.equal(summary.stored, seeded.patients + seeded.accounts + seeded.coverages + seeded.invoices);
    assert.equal(summary.duplicates, 0);
    assert.equal(summary.quarantined, 0);
    for (const type of ['Patient', 'Account', 'Coverage', 'Invoice']) {
      assert.equal(await checkpoint('first-sync', type), new Date(await maxLastUpdated(type)).toISOString(), type);
      assert.equal(byType[type]!.complete, true);
    }
    // The first search of a type has no _lastUpdated; it asks for _sort and _count; later pages are next links.
    const firstPatientSearch = ehr.stats.fhirRequests.slice(start).find((r) => r.url.startsWith('/fhir/R4/Patient'))!;
    assert.equal(firstPatientSearch.url, '/fhir/R4/Patient?_sort=_lastUpdated&_count=10');
    assert.ok(ehr.stats.fhirRequests.slice(start).some((r) => r.url.includes('_getpages=')));
    // Progress after each page, with the Bundle's total.
    const patientProgress = progress.filter((p) => p.resourceType === 'Patient');
    assert.deepEqual(patientProgress.map((p) => p.pages), [1, 2, 3]);
    assert.deepEqual(patientProgress.at(-1), { resourceType: 'Patient', typeIndex: 0, typeCount: 4, pages: 3, resources: seeded.patients, total: seeded.patients });
    const run = await new ConnectorRunRepository(db().pool, systemClock).status(practiceId, 'first-sync');
    assert.equal(run.lastSuccess?.stored, summary.stored);
    assert.equal(run.lastSuccess?.id, summary.runId);
  });

  it('on the next sync, searches from the checkpoint minus the overlap and stores only the 2 changed resources', async () => {
    const connector = connectorFor(ehr, 'incremental', { resources: [{ type: 'Invoice' }] });
    await sync(connector);
    const before = await checkpoint('incremental', 'Invoice');
    const unchanged = await sync(connector);
    assert.equal(unchanged.stored, 0, 'nothing changed, nothing stored');
    assert.ok(unchanged.duplicates >= 1, 'the overlap window re-read the boundary resources');
    assert.equal(unchanged.types[0]!.since, new Date(Date.parse(before!) - 1000).toISOString());
    assert.ok(ehr.stats.fhirRequests.at(-1)!.url.includes(`_lastUpdated=ge${encodeURIComponent(unchanged.types[0]!.since!)}`));

    for (const id of seeded.ids.Invoice.slice(0, 2)) {
      const invoice = await ehr.repo.readResource<Invoice>('Invoice', id);
      await ehr.repo.updateResource<Invoice>({ ...invoice, status: 'balanced' });
    }
    const changed = await sync(connector);
    assert.equal(changed.stored, 2);
    assert.equal(changed.quarantined, 0);
    for (const id of seeded.ids.Invoice.slice(0, 2)) {
      const versions = await records().versions(practiceId, 'incremental', 'Invoice', id);
      assert.equal(versions.length, 2);
      assert.equal((versions[1]!.body as Invoice).status, 'balanced');
    }
    assert.equal(await checkpoint('incremental', 'Invoice'), new Date(await maxLastUpdated('Invoice')).toISOString());
    // --full ignores the checkpoint: everything is read again, nothing stored twice.
    const full = await sync(connector, { full: true });
    assert.equal(full.stored, 0);
    assert.equal(full.duplicates, seeded.invoices);
    assert.equal(full.types[0]!.since, undefined);
  });

  it('honours Retry-After on a 429 during the sync and loses nothing', async () => {
    const connector = connectorFor(ehr, 'throttled', { resources: [{ type: 'Patient' }] });
    ehr.failNext(429, 1, 3);
    const summary = await sync(connector);
    assert.deepEqual(sleeps, [3000]);
    assert.equal(summary.stored, seeded.patients);
    assert.ok(ehr.stats.fhirRequests.some((r) => r.status === 429));
  });

  it('quarantines malformed resources with an OperationOutcome and goes on', async () => {
    const connector = connectorFor(ehr, 'malformed', { resources: [{ type: 'Coverage' }, { type: 'Account' }] });
    ehr.injectEntries('Coverage', [
      'not an object',
      { resource: 42 },
      { resource: { resourceType: 'Coverage', meta: { versionId: '1', lastUpdated: '2026-01-01T00:00:00Z' }, status: 'active' } },
      { resource: { resourceType: 'Banana', id: 'b1' } },
      { resource: { resourceType: 'Patient', id: 'p-wrong-type' } },
      { resource: { resourceType: 'Coverage', id: 'has spaces/and slash' } },
      { resource: { resourceType: 'Patient', id: 'included' }, search: { mode: 'include' } },
      { resource: { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational' }] }, search: { mode: 'outcome' } },
    ]);
    try {
      const summary = await sync(connector);
      assert.equal(summary.types[0]!.quarantined, 6);
      assert.equal(summary.types[0]!.stored, seeded.coverages);
      assert.equal(summary.types[1]!.stored, seeded.accounts, 'the next type still synced');
      const open = await records().listQuarantine(practiceId, { connector: 'malformed' });
      const texts = open.items.map((q) => q.outcome.issue[0]!.details!.text).sort();
      assert.deepEqual(texts, [
        'a search of Coverage returned a Patient',
        'the Bundle entry is not a JSON object',
        'the Coverage has no id',
        'the Coverage id is not a valid FHIR id (1-64 letters, digits, "-" and ".")',
        'the entry has no resource object',
        'unknown resourceType "Banana": not a FHIR R4 resource type',
      ]);
      assert.ok(open.items.every((q) => q.outcome.resourceType === 'OperationOutcome' && q.resourceType === 'Coverage'));
      assert.equal(open.items.find((q) => q.sourceId === 'p-wrong-type')?.raw, JSON.stringify({ resourceType: 'Patient', id: 'p-wrong-type' }));
    } finally {
      ehr.injectEntries('Coverage', []);
    }
  });

  it('a type the server refuses does not stop the others; the run is recorded as failed', async () => {
    const connector = connectorFor(ehr, 'partly-broken', { resources: [{ type: 'Account', search: { _offset: '5' } }, { type: 'Coverage' }] });
    await assert.rejects(sync(connector), (error: unknown) => {
      assert.ok(error instanceof SyncFailedError);
      assert.match(error.message, /Account \(400 from .*_offset=\*.*follow the next link/);
      assert.equal(error.summary.types[1]!.stored, seeded.coverages);
      return true;
    });
    const status = await new ConnectorRunRepository(db().pool, systemClock).status(practiceId, 'partly-broken');
    assert.equal(status.last?.status, 'failed');
    assert.match(status.lastFailure?.error ?? '', /^Account: 400/);
    await assert.rejects(sync(connector, { types: ['Invoice'] }), /does not pull Invoice/);
  });

  it('with sort: false the checkpoint moves only once the search is read to its end', async () => {
    const connector = connectorFor(ehr, 'unsorted', { resources: [{ type: 'Patient', sort: false }] });
    const seen: (string | undefined)[] = [];
    const summary = await sync(connector, { onPageCommitted: (info) => void seen.push(info.checkpoint) });
    assert.deepEqual(seen, [undefined, undefined, undefined]);
    assert.equal(summary.types[0]!.checkpoint, new Date(await maxLastUpdated('Patient')).toISOString());
    assert.equal(await checkpoint('unsorted', 'Patient'), summary.types[0]!.checkpoint);
    assert.ok(!ehr.stats.fhirRequests.at(-3)!.url.includes('_sort'));
  });

  it('notices a server that ignores _sort, puts the checkpoint back where the run started, and moves it at the end', async () => {
    const connector = connectorFor(ehr, 'disorderly', { resources: [{ type: 'Patient' }] });
    const at = (minute: number) => `2026-05-01T10:${String(minute).padStart(2, '0')}:00.000Z`;
    const patient = (id: string, minute: number) => ({ resource: { resourceType: 'Patient', id, meta: { versionId: '1', lastUpdated: at(minute) } } });
    await new CheckpointRepository(db().pool, systemClock).set(practiceId, 'disorderly', 'Patient', at(2));
    const pages = [[patient('a', 3), patient('b', 4)], [patient('c', 1), patient('d', 5)], [patient('e', 2)]];
    const asked: unknown[] = [];
    const client = {
      async *searchPages(type: string, params: unknown) {
        asked.push([type, params]);
        for (const entry of pages) yield { resourceType: 'Bundle' as const, type: 'searchset' as const, entry };
      },
    } as unknown as SyncOptions['client'];
    const seen: (string | undefined)[] = [];
    const summary = await syncFhirConnector({ db: db(), connector, practiceId, client, onPageCommitted: (i) => void seen.push(i.checkpoint) });
    assert.deepEqual(asked, [['Patient', { _lastUpdated: `ge${'2026-05-01T10:01:59.000Z'}`, _sort: '_lastUpdated', _count: 10 }]]);
    assert.deepEqual(seen, [at(4), at(2), at(2)]);
    assert.equal(summary.types[0]!.checkpoint, at(5));
    assert.equal(await checkpoint('disorderly', 'Patient'), at(5));
    assert.match(summary.types[0]!.warnings[0]!, /did not return Patient in _lastUpdated order/);
    assert.equal(summary.stored, 5);
  });

  it('a sync killed between pages, or in the middle of one, resumes from its checkpoint with nothing lost or stored twice; the killed runs show as interrupted', async () => {
    const connector = connectorFor(ehr, 'killed', { resources: [{ type: 'Invoice' }], pageSize: 7 });
    const input = { databaseUrl: urlOf(db()), practiceId, connector };
    const killed = await runChild({ ...input, killAfterPage: 2 });
    assert.equal(killed.signal, 'SIGKILL', killed.stderr);
    assert.equal(killed.lines.length, 2);
    const afterKill = await records().list(practiceId, { connector: 'killed', limit: 1000 });
    assert.equal(afterKill.items.length, 14, 'two pages of 7 were committed');
    assert.equal(await checkpoint('killed', 'Invoice'), killed.lines[1]!.checkpoint);
    const runs = new ConnectorRunRepository(db().pool, systemClock);
    const afterKillStatus = await runs.status(practiceId, 'killed');
    assert.equal(afterKillStatus.last?.status, 'interrupted', 'the status never shows the dead run as running');
    assert.match(afterKillStatus.last?.error ?? '', new RegExp(`^interrupted: process ${killed.pid} on .+ stopped without finishing this run`));
    assert.equal(afterKillStatus.lastFailure?.id, afterKillStatus.last?.id);

    const killedMidPage = await runChild({ ...input, killBeforePage: 3 });
    assert.equal(killedMidPage.signal, 'SIGKILL', killedMidPage.stderr);
    assert.equal(killedMidPage.lines.length, 2, 'it resumed, committed 2 pages, and died fetching the 3rd');

    const resumed = await runChild(input);
    assert.equal(resumed.code, 0, resumed.stderr);
    const resumedType = (resumed.lines.at(-1)!.summary as { types: { since?: string; pages: number }[] }).types[0]!;
    assert.ok(resumedType.since, 'the resumed run searched from the checkpoint');
    assert.ok(resumedType.pages < Math.ceil(seeded.invoices / 7), 'and did not read everything again');
    const all = (await records().list(practiceId, { connector: 'killed', limit: 1000 })).items;
    assert.equal(all.length, seeded.invoices, 'every invoice is stored');
    assert.equal(new Set(all.map((r) => `${r.sourceId}/${r.versionId}`)).size, all.length, 'none twice');
    const current = await ehr.repo.searchResources<Invoice>({ resourceType: 'Invoice' });
    assert.deepEqual(new Set(all.map((r) => r.sourceId)), new Set(current.map((r) => r.id)));
    assert.equal(await checkpoint('killed', 'Invoice'), new Date(await maxLastUpdated('Invoice')).toISOString());
    // The second killed run was marked interrupted when the next one started (nothing read the status in between).
    const rows = await db().pool.query<{ status: string }>(`SELECT status FROM connector_runs WHERE practice_id = $1 AND connector = 'killed' ORDER BY id DESC`, [practiceId]);
    assert.deepEqual(rows.rows.map((r) => r.status), ['succeeded', 'interrupted', 'interrupted']);
  });
});
