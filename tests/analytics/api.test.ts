import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { byAgeGroupAndZip3, collectionRateByMonth, MEASURE_NAMES } from '../../src/analytics/index.ts';
import { ApiKeyRepository } from '../../src/store/api-keys.ts';
import { startTestApi, type TestApi } from '../support/api.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { buildDataset, PERIOD, type Dataset } from './dataset.ts';

describeOnEachDatabase('GET /analytics/{measure}', (db) => {
  let api: TestApi;
  let data: Dataset;
  let staff: string;
  let integration: string;
  before(async () => {
    api = await startTestApi(db());
    data = await buildDataset(db());
    const keys = new ApiKeyRepository(db().pool, data.clock);
    staff = (await keys.create(data.practiceId, 'Office manager', 'staff')).secret;
    integration = (await keys.create(data.practiceId, 'BI tool', 'integration')).secret;
  });
  after(() => api.close());

  const get = (path: string, key = staff, headers: Record<string, string> = {}) => fetch(`${api.url}${path}`, { headers: { authorization: `Bearer ${key}`, ...headers } });
  const exports = async () => (await db().pool.query<{ actor: string; entity_id: string; detail: Record<string, unknown> }>(
    "SELECT actor, entity_id, detail FROM audit_events WHERE practice_id = $1 AND action = 'analytics.export' ORDER BY id", [data.practiceId])).rows;

  it('answers each measure as JSON for the caller\'s practice, the same numbers the functions give', async () => {
    const res = await get(`/analytics/collection-rate?from=${PERIOD.from}&to=${PERIOD.to}`);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { rows: { collectedMinor: number }[] };
    const direct = await collectionRateByMonth(db().pool, { practiceId: data.practiceId, ...PERIOD });
    assert.deepEqual(body, JSON.parse(JSON.stringify(direct)));
    assert.equal(body.rows[2]!.collectedMinor, 29000);
    for (const name of MEASURE_NAMES) {
      const each = await get(`/analytics/${name}?from=${PERIOD.from}&to=${PERIOD.to}`, integration);
      assert.equal(each.status, 200, name);
      assert.equal(((await each.json()) as { measure: string }).measure, name);
    }
    assert.deepEqual(await exports(), [], 'viewing aggregates is not an export');
  });

  it('exports CSV with ?format=csv or Accept: text/csv, and records each export in the audit trail', async () => {
    const res = await get(`/analytics/unpaid-by-service-code?from=${PERIOD.from}&to=${PERIOD.to}&format=csv`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/csv; charset=utf-8/);
    assert.match(res.headers.get('content-disposition') ?? '', /^attachment; filename="?settle-unpaid-by-service-code-2026-01-01-to-2026-03-31\.csv"?$/);
    assert.equal(await res.text(), [
      'serviceCode,charges,billedMinor,unpaidCharges,unpaidMinor,unpaidRate',
      '99213,2,22500,2,17500,0.7778',
      '99214,1,10000,1,5000,0.5',
      '(none),1,3000,1,3000,1',
      '80053,1,4000,0,0,0',
      '',
    ].join('\r\n'));
    const byHeader = await get(`/analytics/roi?from=${PERIOD.from}&to=${PERIOD.to}&agencyCommissionPercent=22.5&minutesPerCall=4`, staff, { accept: 'text/csv' });
    assert.equal(await byHeader.text(), [
      'collectedMinor,payments,agencyCommissionPercent,agencyWouldHaveKeptMinor,remindersSent,callsAvoided,minutesPerCall,staffMinutesAvoided',
      '27000,5,22.5,6075,4,9,4,36',
      '',
    ].join('\r\n'));
    const audited = await exports();
    assert.equal(audited.length, 2);
    assert.deepEqual(audited.map((e) => e.entity_id), ['unpaid-by-service-code', 'roi']);
    assert.deepEqual(audited[0]!.detail, { format: 'csv', from: PERIOD.from, to: PERIOD.to, currency: 'USD', rows: 4 });
    assert.match(audited[0]!.actor, /^apikey:[0-9a-f-]{36}$/);
  });

  it('suppressed cells export as "true" with empty fields, never a count', async () => {
    const res = await get(`/analytics/demographics?from=${PERIOD.from}&to=${PERIOD.to}`, staff, { accept: 'text/csv' });
    const csv = await res.text();
    assert.equal(csv.split('\r\n')[0], 'ageGroup,zip3,suppressed,patients,balances,billedMinor,collectedMinor,outstandingMinor,collectionRate');
    assert.equal(csv.split('\r\n')[1], '0-17,100,true,,,,,,');
    const direct = await byAgeGroupAndZip3(db().pool, { practiceId: data.practiceId, ...PERIOD });
    assert.equal(csv.trim().split('\r\n').length, direct.rows.length + 1);
    assert.ok(direct.rows.every((r) => r.suppressed && r.patients === null));
  });

  it('refuses a bad period or parameter, naming it', async () => {
    const bad = async (query: string) => {
      const res = await get(`/analytics/roi?${query}`);
      assert.equal(res.status, 400, query);
      return ((await res.json()) as { errors: { path: string; message: string }[] }).errors;
    };
    assert.deepEqual(await bad('from=2026-02-30'), [{ path: '?from', message: 'must match format "date"' }]);
    assert.deepEqual(await bad('from=2026-03-01&to=2026-02-01'), [{ path: '?from', message: 'must be on or before to (2026-03-01 is after 2026-02-01)' }]);
    assert.equal((await bad('agencyCommissionPercent=101'))[0]!.path, '?agencyCommissionPercent');
    assert.equal((await bad('minutes=4'))[0]!.path, '?minutes');
    assert.equal((await bad('currency=usd'))[0]!.path, '?currency');
  });

  it('needs a staff or integration key, and lists the measures', async () => {
    assert.equal((await fetch(`${api.url}/analytics/roi`)).status, 401);
    const list = (await (await get('/analytics')).json()) as { measures: { name: string }[] };
    assert.deepEqual(list.measures.map((m: { name: string }) => m.name), [...MEASURE_NAMES]);
    assert.ok(api.api.document.paths && Object.keys(api.api.document.paths as object).includes('/analytics/channels'));
  });

  it('says as of when the figures are, and POST /analytics/refresh brings them up to date', async () => {
    const before = (await (await get(`/analytics/aging?from=${PERIOD.from}&to=${PERIOD.to}`)).json()) as { asOf: string };
    assert.match(before.asOf, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    const res = await fetch(`${api.url}/analytics/refresh`, { method: 'POST', headers: { authorization: `Bearer ${integration}` } });
    assert.equal(res.status, 200);
    const refresh = (await res.json()) as { asOf: string; durationMs: number };
    assert.ok(refresh.asOf > before.asOf && Number.isInteger(refresh.durationMs));
    const after = (await (await get(`/analytics/aging?from=${PERIOD.from}&to=${PERIOD.to}`)).json()) as { asOf: string };
    assert.equal(after.asOf, refresh.asOf);
    assert.equal((await fetch(`${api.url}/analytics/refresh`, { method: 'POST' })).status, 401);
  });

  it('defaults to the twelve months up to today, in the practice\'s time zone', async () => {
    const res = await get('/analytics/collection-rate');
    const body = (await res.json()) as { from: string; to: string; rows: unknown[] };
    // The test API's clock stands at 2026-06-01T14:00Z: 2025-07-01 … 2026-06-01.
    assert.equal(body.from, '2025-07-01');
    assert.equal(body.to, '2026-06-01');
    assert.equal(body.rows.length, 12);
  });
});
