import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { AuditLog } from '../../src/store/audit.ts';
import { revokeApiKey } from '../../src/store/api-keys.ts';
import { StaffTaskRepository } from '../../src/store/staff-tasks.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { cipher, seedHousehold } from '../payments/webhook-fixtures.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { setCookies, startDashboard, Visitor, type DashboardFixture } from './support.ts';

describeOnEachDatabase('Staff dashboard sign-in and sessions', (db) => {
  let f: DashboardFixture;
  before(async () => {
    f = await startDashboard(db(), 'dash-signin');
  });
  after(() => f.close());

  const audit = () => new AuditLog(db(), f.clock).list(f.household.practiceId);

  it('sends a visitor without a session to the sign-in form, which is served with a nonce CSP and no external resources', async () => {
    const visitor = new Visitor(f.url);
    const home = await visitor.request('/dashboard');
    assert.equal(home.status, 303);
    assert.equal(home.headers.get('location'), '/dashboard/login');
    const form = await visitor.request('/dashboard/login');
    assert.equal(form.status, 200);
    const csp = form.headers.get('content-security-policy') ?? '';
    const nonce = /style-src 'nonce-([^']+)'/.exec(csp)?.[1];
    assert.ok(nonce, `CSP allows styles by nonce: ${csp}`);
    assert.doesNotMatch(csp, /unsafe-inline|script-src/);
    assert.match(csp, /default-src 'none'/);
    const page = await form.text();
    assert.ok(page.includes(`<style nonce="${nonce}">`));
    assert.doesNotMatch(page, /<script|https?:\/\/(?!127\.0\.0\.1)[a-z]/i, 'no script and no external URL');
    assert.match(page, /<label for="key">Staff API key<\/label>/);
  });

  it('refuses a sign-in form without its CSRF token (403) and a wrong key (401), auditing the failure without the key', async () => {
    const visitor = new Visitor(f.url, { 'x-forwarded-for': '198.51.100.10' });
    await visitor.request('/dashboard/login');
    const noToken = await visitor.request('/dashboard/login', { form: { key: f.keys.staff.secret } });
    assert.equal(noToken.status, 403);
    assert.equal(setCookies(noToken).has('settle_session'), false);

    const wrong = `${f.keys.staff.secret.slice(0, -4)}AAAA`;
    const refused = await visitor.signIn(wrong);
    assert.equal(refused.status, 401);
    assert.match(await refused.text(), /That key was not accepted/);
    assert.equal(setCookies(refused).has('settle_session'), false);
    const failed = (await audit()).filter((e) => e.action === 'dashboard.signin.failed');
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.detail.keyPrefix, f.keys.staff.secret.slice(0, 'settle_'.length + 12));
    assert.equal(failed[0]!.detail.client, '198.51.100.10');
    assert.doesNotMatch(JSON.stringify(failed[0]), new RegExp(wrong.slice(-20)), 'the presented secret is not in the audit trail');
  });

  it('refuses an integration key: the dashboard is for staff', async () => {
    const response = await new Visitor(f.url, { 'x-forwarded-for': '198.51.100.11' }).signIn(f.keys.integration.secret);
    assert.equal(response.status, 403);
    assert.match(await response.text(), /integration key cannot sign in/);
  });

  it('limits failed sign-ins per client: the sixth attempt within 15 minutes is refused without checking the key', async () => {
    const visitor = new Visitor(f.url, { 'x-forwarded-for': '198.51.100.12' });
    for (let i = 0; i < 5; i++) assert.equal((await visitor.signIn('settle_nope')).status, 401);
    const limited = await visitor.signIn(f.keys.staff.secret);
    assert.equal(limited.status, 429, 'even the right key waits');
    assert.ok(Number(limited.headers.get('retry-after')) > 0);
    assert.equal((await new Visitor(f.url, { 'x-forwarded-for': '198.51.100.13' }).signIn(f.keys.staff.secret)).status, 303, 'another client is not affected');
    f.clock.advance(15 * 60_000 + 1000);
    assert.equal((await visitor.signIn(f.keys.staff.secret)).status, 303, 'after the window the client may sign in');
  });

  it('signs a staff key in with an httpOnly, SameSite=Strict session cookie, Secure when the request came over https', async () => {
    const plain = await new Visitor(f.url).signIn(f.keys.staff.secret);
    assert.equal(plain.status, 303);
    assert.equal(plain.headers.get('location'), '/dashboard');
    const cookie = setCookies(plain).get('settle_session')!;
    assert.ok(cookie, 'a session cookie is set');
    assert.match(cookie, /; HttpOnly/);
    assert.match(cookie, /; SameSite=Strict/);
    assert.match(cookie, /; Path=\/dashboard/);
    assert.doesNotMatch(cookie, /Secure/, 'over plain http the cookie could not be sent back if Secure');
    const https = await new Visitor(f.url, { 'x-forwarded-proto': 'https' }).signIn(f.keys.staff.secret);
    assert.match(setCookies(https).get('settle_session')!, /; Secure/);
    const stored = await db().pool.query<{ hash: Buffer }>('SELECT secret_hash AS hash FROM dashboard_sessions WHERE practice_id = $1', [f.household.practiceId]);
    const secret = cookie.split(';')[0]!.split('=')[1]!;
    assert.ok(stored.rows.every((r) => !r.hash.toString('utf8').includes(secret)), 'only a hash of the session secret is stored');
    assert.ok((await audit()).some((e) => e.action === 'dashboard.signin' && e.actor === `apikey:${f.keys.staff.id}`));
  });

  it('refuses a form posted without the session CSRF token (403) and changes nothing', async () => {
    const visitor = new Visitor(f.url);
    await visitor.signIn(f.keys.staff.secret);
    const task = await new StaffTaskRepository(db().pool, f.clock).open({ practiceId: f.household.practiceId, kind: 'assistance', balanceId: f.household.olderBalanceId });
    const missing = await visitor.request(`/dashboard/worklist/${task.id}/resolve`, { form: { action: 'resolve' } });
    assert.equal(missing.status, 403);
    assert.match(await missing.text(), /security token/);
    const forged = await visitor.request(`/dashboard/worklist/${task.id}/resolve`, { form: { action: 'resolve', csrf: 'x'.repeat(43) } });
    assert.equal(forged.status, 403);
    const other = new Visitor(f.url);
    await other.signIn(f.keys.staff.secret);
    const othersToken = await other.csrf('/dashboard/worklist');
    assert.equal((await visitor.request(`/dashboard/worklist/${task.id}/resolve`, { form: { action: 'resolve', csrf: othersToken } })).status, 403, "another session's token does not work");
    assert.equal((await new StaffTaskRepository(db().pool, f.clock).get(f.household.practiceId, task.id))!.status, 'open');
    const ok = await visitor.request(`/dashboard/worklist/${task.id}/resolve`, { form: { action: 'resolve', note: 'called back', csrf: await visitor.csrf('/dashboard/worklist') } });
    assert.equal(ok.status, 303);
    assert.equal((await new StaffTaskRepository(db().pool, f.clock).get(f.household.practiceId, task.id))!.status, 'resolved');
  });

  it('ends a session after 30 idle minutes, on sign-out, and when its key is revoked', async () => {
    const idle = new Visitor(f.url);
    await idle.signIn(f.keys.staff.secret);
    f.clock.advance(29 * 60_000);
    assert.equal((await idle.request('/dashboard/policies')).status, 200, 'a request within 30 minutes keeps it alive');
    f.clock.advance(29 * 60_000);
    assert.equal((await idle.request('/dashboard/policies')).status, 200);
    f.clock.advance(31 * 60_000);
    const expired = await idle.request('/dashboard/policies');
    assert.equal(expired.status, 303);
    assert.equal(expired.headers.get('location'), '/dashboard/login');

    const leaving = new Visitor(f.url);
    await leaving.signIn(f.keys.staff.secret);
    const secret = leaving.jar.get('settle_session')!;
    const out = await leaving.request('/dashboard/logout', { form: { csrf: await leaving.csrf('/dashboard/policies') } });
    assert.equal(out.status, 303);
    assert.equal(leaving.jar.has('settle_session'), false, 'the cookie is cleared');
    const replay = new Visitor(f.url);
    replay.jar.set('settle_session', secret);
    assert.equal((await replay.request('/dashboard')).status, 303, 'the old cookie no longer works');

    const admin = new Visitor(f.url);
    assert.equal((await admin.signIn(f.keys.admin.secret)).status, 303);
    assert.equal((await admin.request('/dashboard/policies')).status, 200);
    await revokeApiKey(db(), f.clock, { idOrPrefix: f.keys.admin.id, actor: 'cli' });
    assert.equal((await admin.request('/dashboard/policies')).status, 303, 'a revoked key ends its sessions at once');
  });

  it('gives a new session secret at each sign-in and ends the one the browser held before', async () => {
    const visitor = new Visitor(f.url);
    await visitor.signIn(f.keys.staff.secret);
    const first = visitor.jar.get('settle_session')!;
    await visitor.signIn(f.keys.staff.secret);
    const second = visitor.jar.get('settle_session')!;
    assert.notEqual(second, first);
    const old = new Visitor(f.url);
    old.jar.set('settle_session', first);
    assert.equal((await old.request('/dashboard/policies')).status, 303, 'the earlier session is over');
    assert.equal((await visitor.request('/dashboard/policies')).status, 200);
  });

  it('audits a balance detail view (PHI) with the staff key, masks contact details, and answers 404 for a balance of another practice', async () => {
    await new LedgerRepository(db().pool, cipher, f.clock).upsertPatient(f.household.practiceId, { system: 'urn:mrn', value: 'P-dash-signin' }, {
      name: { given: ['Maria'], family: 'Lopez' }, phones: ['(617) 555-0134'], email: 'maria.lopez@example.com',
    });
    const visitor = new Visitor(f.url);
    await visitor.signIn(f.keys.staff.secret);
    const page = await visitor.request(`/dashboard/balances/${f.household.olderBalanceId}`);
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('cache-control'), 'no-store');
    const text = await page.text();
    assert.match(text, /\$100\.00/);
    assert.match(text, /Maria Lopez/);
    assert.match(text, /\*\*\*-\*\*\*-0134/);
    assert.match(text, /m\*\*\*@example\.com/);
    assert.doesNotMatch(text, /555-0134|maria\.lopez/, 'phone and email are masked');
    const views = (await audit()).filter((e) => e.action === 'balance.view');
    assert.equal(views.at(-1)!.entityId, f.household.olderBalanceId);
    assert.equal(views.at(-1)!.actor, `apikey:${f.keys.staff.id}`);
    const elsewhere = await seedHousehold(db(), f.clock, 'dash-signin-other');
    const missing = await visitor.request(`/dashboard/balances/${elsewhere.olderBalanceId}`);
    assert.equal(missing.status, 404);
    assert.equal((await audit()).filter((e) => e.action === 'balance.view').length, views.length, 'nothing shown, nothing audited');
  });

  it('labels every page "Demo" for a demo practice, and not otherwise', async () => {
    const demo = await startDashboard(db(), 'demo-dash');
    try {
      const visitor = new Visitor(demo.url);
      await visitor.signIn(demo.keys.staff.secret);
      const page = await (await visitor.request('/dashboard/policies')).text();
      assert.match(page, /<span class="demo"[^>]*>Demo<\/span>/);
      assert.match(page, /<title>Policies · Webhook Clinic \(Demo\) · Settle<\/title>/);
      const ordinary = new Visitor(f.url);
      await ordinary.signIn(f.keys.staff.secret);
      assert.doesNotMatch(await (await ordinary.request('/dashboard/policies')).text(), /class="demo"/);
    } finally {
      await demo.close();
    }
  });
});
