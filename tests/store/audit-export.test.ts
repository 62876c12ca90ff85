import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { validateResource } from '@medplum/core';
import type { AuditEvent as FhirAuditEvent, Bundle } from '@medplum/fhirtypes';
import { loadBaseDefinitions } from '../../src/mapping/fhir-validation.ts';
import { AuditLog } from '../../src/store/audit.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { startTestApi, type TestApi } from '../support/api.ts';
import { describeOnEachDatabase } from '../support/databases.ts';

describeOnEachDatabase('GET /audit: the audit trail as a FHIR AuditEvent Bundle', (db) => {
  let api: TestApi;
  before(async () => {
    loadBaseDefinitions();
    api = await startTestApi(db());
    // Events on three days (practice time zone America/New_York): May 9 evening local is May 10 UTC.
    const audit = new AuditLog(db(), new ManualClock(new Date('2026-05-10T02:00:00Z')));
    await audit.append({ practiceId: api.practiceId, actor: 'apikey:11111111-1111-1111-1111-111111111111', action: 'balance.view', entityType: 'balance', entityId: 'b-1' });
    const later = new AuditLog(db(), new ManualClock(new Date('2026-05-11T15:00:00Z')));
    await later.append({ practiceId: api.practiceId, actor: 'system', action: 'hl7.message.prune', entityType: 'hl7_message', detail: { count: 3 } });
    await later.append({ practiceId: api.practiceId, actor: 'cli', action: 'analytics.export', entityType: 'analytics', entityId: 'roi', detail: { rows: 1 } });
    const outside = new AuditLog(db(), new ManualClock(new Date('2026-05-20T15:00:00Z')));
    await outside.append({ practiceId: api.practiceId, actor: 'cli', action: 'apikey.revoke', entityType: 'api_key', entityId: 'k' });
  });
  after(() => api.close());

  const get = (query: string, key = api.keys.admin) => fetch(`${api.url}/audit?${query}`, { headers: { authorization: `Bearer ${key}` } });

  it('exports the period\'s events, each a valid R4 AuditEvent, and records the export', async () => {
    const res = await get('from=2026-05-09&to=2026-05-11');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/fhir\+json/);
    const bundle = (await res.json()) as Bundle<FhirAuditEvent>;
    validateResource(bundle);
    assert.equal(bundle.type, 'collection');
    const events = bundle.entry!.map((e) => e.resource!);
    for (const event of events) validateResource(event);
    assert.deepEqual(events.map((e) => e.subtype![0]!.code), ['balance.view', 'hl7.message.prune', 'analytics.export']);
    const [view, prune, exported] = events as [FhirAuditEvent, FhirAuditEvent, FhirAuditEvent];
    assert.equal(view.recorded, '2026-05-10T02:00:00.000Z', 'May 9 local time is in the period');
    assert.deepEqual(view.type, { system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110110', display: 'Patient Record' });
    assert.equal(view.action, 'R');
    assert.deepEqual(view.agent[0], { who: { identifier: { system: 'https://settle.dev/fhir/NamingSystem/audit-actor', value: 'apikey:11111111-1111-1111-1111-111111111111' } }, requestor: true });
    assert.equal(view.entity![0]!.what!.identifier!.value, 'b-1');
    assert.equal(prune.agent[0]!.requestor, false);
    assert.equal(prune.action, 'D');
    assert.deepEqual(JSON.parse(prune.entity![0]!.detail!.find((d) => d.type === 'detail')!.valueString!), { count: 3 });
    assert.equal(exported.type.code, '110106');
    // The chain hashes travel with each event, so an export can be checked against the database later.
    const hash = (e: FhirAuditEvent, type: string) => e.entity![0]!.detail!.find((d) => d.type === type)!.valueString;
    assert.equal(hash(prune, 'prev-hash'), hash(view, 'hash'));

    const { rows } = await db().pool.query<{ actor: string; detail: Record<string, unknown> }>(
      "SELECT actor, detail FROM audit_events WHERE practice_id = $1 AND action = 'audit.export'", [api.practiceId]);
    assert.equal(rows.length, 1);
    assert.deepEqual(rows[0]!.detail, { from: '2026-05-09', to: '2026-05-11', events: 3, format: 'fhir-bundle' });
    assert.equal(await new AuditLog(db(), new ManualClock(new Date())).verify(api.practiceId), undefined);
  });

  it('pages with a next link', async () => {
    const first = (await (await get('from=2026-05-01&to=2026-05-31&limit=2')).json()) as Bundle<FhirAuditEvent>;
    assert.equal(first.entry!.length, 2);
    const next = first.link!.find((l) => l.relation === 'next')!.url!;
    assert.match(next, /^\/audit\?from=2026-05-01&to=2026-05-31&limit=2&after=\d+$/);
    const second = (await (await fetch(`${api.url}${next}`, { headers: { authorization: `Bearer ${api.keys.admin}` } })).json()) as Bundle<FhirAuditEvent>;
    // (The exports themselves are recorded at the API clock's time, 2026-06-01: outside May.)
    assert.deepEqual(second.entry!.map((e) => e.resource!.subtype![0]!.code), ['analytics.export', 'apikey.revoke']);
    assert.equal(second.link, undefined);
  });

  it('is for admin keys only', async () => {
    assert.equal((await get('', api.keys.staff)).status, 403);
    assert.equal((await fetch(`${api.url}/audit`)).status, 401);
  });
});
