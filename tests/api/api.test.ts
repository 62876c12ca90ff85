import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { ROLES, type Role } from '../../src/domain/access.ts';
import { expressPath } from '../../src/api/routes.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { startTestApi, type TestApi } from '../support/api.ts';

type Operation = { 'x-settle-roles'?: Role[]; security?: unknown[]; requestBody?: unknown };
type Document = { paths: Record<string, Record<string, Operation>> };

function concretePath(path: string): string {
  return path.replace(/\{[^}]+\}/g, '00000000-0000-4000-8000-000000000000');
}

describeOnEachDatabase('API skeleton', (db) => {
  let t: TestApi;
  before(async () => {
    t = await startTestApi(db());
  });
  after(() => t.close());

  it('documents every route express serves in /openapi.json', async () => {
    const res = await fetch(`${t.url}/openapi.json`, { headers: { authorization: `Bearer ${t.keys.staff}` } });
    assert.equal(res.status, 200);
    const doc = (await res.json()) as Document & { openapi: string };
    assert.equal(doc.openapi, '3.1.0');
    const documented = new Set(Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${expressPath(path)}`)));
    const stack = (t.api.app as unknown as { router: { stack: { route?: { path: string; methods: Record<string, boolean> } }[] } }).router.stack;
    const served = stack.flatMap((layer) => (layer.route ? Object.keys(layer.route.methods).map((m) => `${m} ${layer.route!.path}`) : []));
    // Routes mounted through a sub-router live one level down.
    const nested = stack.flatMap((layer) => {
      const inner = (layer as unknown as { handle?: { stack?: { route?: { path: string; methods: Record<string, boolean> } }[] } }).handle?.stack ?? [];
      return inner.flatMap((l) => (l.route ? Object.keys(l.route.methods).map((m) => `${m} ${l.route!.path}`) : []));
    });
    const all = [...served, ...nested];
    assert.ok(all.length >= 8, `found ${all.length} routes`);
    for (const route of all) assert.ok(documented.has(route), `${route} is served but missing from /openapi.json`);
  });

  it('refuses every keyed route without a key (401) and with a too-weak role (403)', async () => {
    const doc = (await (await fetch(`${t.url}/openapi.json`, { headers: { authorization: `Bearer ${t.keys.admin}` } })).json()) as Document;
    let keyed = 0;
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        const url = `${t.url}${concretePath(path)}`;
        const init = { method: method.toUpperCase(), headers: { 'content-type': 'application/json' }, body: operation.requestBody ? '{}' : undefined };
        if (operation.security?.length === 0) continue; // public: health, pay page, signed webhooks
        keyed++;
        const anonymous = await fetch(url, init);
        assert.equal(anonymous.status, 401, `${method} ${path} without a key`);
        assert.equal(anonymous.headers.get('content-type'), 'application/problem+json; charset=utf-8');
        assert.equal(((await anonymous.json()) as { code: string }).code, 'unauthorized');
        const wrong = await fetch(url, { ...init, headers: { ...init.headers, authorization: 'Bearer settle_AAAAAAAAAAAA_' + 'A'.repeat(43) } });
        assert.equal(wrong.status, 401, `${method} ${path} with an unknown key`);
        const allowed = operation['x-settle-roles'] ?? [];
        for (const role of ROLES.filter((r) => r !== 'admin' && !allowed.includes(r))) {
          const weak = await fetch(url, { ...init, headers: { ...init.headers, authorization: `Bearer ${t.keys[role]}` } });
          assert.equal(weak.status, 403, `${method} ${path} as ${role}`);
          assert.equal(((await weak.json()) as { code: string }).code, 'forbidden');
        }
      }
    }
    assert.ok(keyed >= 5);
  });

  it('answers health without a key and metrics to a monitoring key', async () => {
    assert.deepEqual(await (await fetch(`${t.url}/healthz`)).json(), { status: 'ok' });
    const ready = await fetch(`${t.url}/readyz`);
    assert.equal(ready.status, 200);
    const metrics = await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${t.keys.integration}` } });
    const text = await metrics.text();
    assert.match(text, /settle_http_request_duration_seconds_bucket\{[^}]*route="\/readyz"/);
    assert.match(text, /settle_jobs_total|# HELP settle_jobs_total/);
  });

  it('creates, lists and revokes keys, validating bodies with one problem per mistake', async () => {
    const admin = { authorization: `Bearer ${t.keys.admin}`, 'content-type': 'application/json' };
    const bad = await fetch(`${t.url}/apikeys`, { method: 'POST', headers: admin, body: JSON.stringify({ role: 'owner', colour: 'blue' }) });
    assert.equal(bad.status, 400);
    const problem = (await bad.json()) as { code: string; errors: { path: string; message: string }[] };
    assert.equal(problem.code, 'invalid_request');
    assert.deepEqual(
      problem.errors.map((e) => e.path).sort(),
      ['/colour', '/name', '/role'],
    );
    assert.match(problem.errors.find((e) => e.path === '/role')!.message, /admin, staff, integration/);

    const notJson = await fetch(`${t.url}/apikeys`, { method: 'POST', headers: admin, body: '{"name":' });
    assert.equal(notJson.status, 400);
    assert.equal(((await notJson.json()) as { code: string }).code, 'invalid_json');

    const created = await fetch(`${t.url}/apikeys`, { method: 'POST', headers: admin, body: JSON.stringify({ name: 'billing office', role: 'staff' }) });
    assert.equal(created.status, 201);
    const { key, secret } = (await created.json()) as { key: { id: string; prefix: string }; secret: string };
    const me = await fetch(`${t.url}/me`, { headers: { authorization: `Bearer ${secret}` } });
    assert.equal(((await me.json()) as { role: string }).role, 'staff');

    const listed = (await (await fetch(`${t.url}/apikeys`, { headers: admin })).json()) as { id: string; secret?: string }[];
    assert.ok(listed.some((k) => k.id === key.id));
    assert.ok(listed.every((k) => k.secret === undefined), 'secrets are never listed');

    const revoked = await fetch(`${t.url}/apikeys/${key.id}`, { method: 'DELETE', headers: admin });
    assert.equal(revoked.status, 200);
    assert.equal((await fetch(`${t.url}/me`, { headers: { authorization: `Bearer ${secret}` } })).status, 401);
    assert.equal((await fetch(`${t.url}/apikeys/${key.id}x`, { method: 'DELETE', headers: admin })).status, 404);

    const trail = await db().pool.query("SELECT action FROM audit_events WHERE practice_id = $1 AND entity_id = $2 ORDER BY id", [t.practiceId, key.id]);
    assert.deepEqual(trail.rows.map((r) => r.action), ['apikey.create', 'apikey.revoke']);
  });

  it('answers unknown routes with a problem document', async () => {
    const res = await fetch(`${t.url}/no/such/thing`);
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { code: string }).code, 'not_found');
  });
});
