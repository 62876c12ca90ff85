import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Bundle, Patient } from '@medplum/fhirtypes';
import { MemoryRepository } from '@medplum/fhir-router';
import { startSandboxEhr, type SandboxEhr } from '../../../src/sandbox-ehr/server.ts';

/**
 * The sandbox answers an incremental sync's `_lastUpdated=ge…` search from what it knows of the type's newest change
 * when nothing changed since (without evaluating the criteria on every resource), and searches in full otherwise.
 */
describe('sandbox EHR: incremental searches by _lastUpdated', () => {
  let ehr: SandboxEhr;
  let searches = 0;
  const repo = new MemoryRepository();
  const patient = (id: string, lastUpdated: string): Patient => ({ resourceType: 'Patient', id, active: id !== 'p-inactive', meta: { versionId: '1', lastUpdated } });

  before(async () => {
    // Held before the sandbox started (and indexed its writes): the first incremental search must still see them.
    await repo.withSeeding(async () => {
      await repo.createResource(patient('p-early', '2026-03-01T10:00:00.000Z'));
      await repo.createResource(patient('p-late', '2026-03-02T10:00:00.500Z'));
    });
    ehr = await startSandboxEhr({ repo });
    const search = repo.search.bind(repo);
    repo.search = ((...args: Parameters<typeof search>) => {
      searches++;
      return search(...args);
    }) as typeof repo.search;
  });
  after(() => ehr.close());

  const ids = async (query: string): Promise<string[]> => {
    const res = await fetch(`${ehr.baseUrl}/Patient?${query}&_sort=_lastUpdated&_count=100`);
    assert.equal(res.status, 200, query);
    return ((await res.json()) as Bundle<Patient>).entry?.map((e) => e.resource!.id!) ?? [];
  };

  it('finds what changed at or after the bound, to the millisecond, resources stored before the sandbox started included', async () => {
    assert.deepEqual(await ids('_lastUpdated=ge2026-03-01T00:00:00Z'), ['p-early', 'p-late']);
    assert.deepEqual(await ids('_lastUpdated=ge2026-03-02T10:00:00.500Z'), ['p-late'], 'ge the newest instant itself');
    assert.deepEqual(await ids('_lastUpdated=ge2026-03-02T05:00:00.500-05:00'), ['p-late'], 'the same instant with an offset');
    assert.deepEqual(await ids('_lastUpdated=gt2026-03-02T10:00:00.499Z'), ['p-late']);
    assert.deepEqual(await ids('_lastUpdated=ge2026-03-01T00:00:00Z&active=false'), [], 'other criteria still apply');
  });

  it('answers nothing without searching when nothing of the type changed since the bound', async () => {
    const before = searches;
    assert.deepEqual(await ids('_lastUpdated=gt2026-03-02T10:00:00.500Z'), []);
    assert.deepEqual(await ids('_lastUpdated=ge2026-03-02T10:00:00.501Z'), []);
    assert.deepEqual(await ids('_lastUpdated=ge2026-03-02T10:00:00.501Z&active=true'), []);
    assert.equal(searches, before, 'the repository was searched');
    assert.deepEqual(await ids('_lastUpdated=ge2026-03-02'), ['p-late'], 'a bound without a time of day is searched as usual');
    assert.ok(searches > before);
  });

  it('sees a write made after the sandbox started, through the API or straight into the repository', async () => {
    const bound = '_lastUpdated=ge2026-03-02T10:00:00.501Z';
    await repo.withSeeding(() => repo.createResource(patient('p-direct', '2026-03-03T08:00:00.000Z')));
    assert.deepEqual(await ids(bound), ['p-direct']);
    const res = await fetch(`${ehr.baseUrl}/Patient`, { method: 'POST', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify({ resourceType: 'Patient', active: true }) });
    assert.equal(res.status, 201);
    const created = (await res.json()) as Patient;
    assert.deepEqual(await ids(bound), ['p-direct', created.id], 'the API stamps lastUpdated now, after the bound');
  });
});
