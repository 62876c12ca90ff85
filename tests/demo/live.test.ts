/**
 * `settle start` on a fresh machine: with nothing real configured it opens with the demo practice, populated,
 * and prints a staff key that signs in to the dashboard; with a connector to a real EHR it does not.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { killEngines, ROOT, spawnEngine, waitFor } from '../support/cli.ts';
import { demoStaffKey, FRESH_ENV } from './fresh-machine.ts';

const dirs: string[] = [];
after(() => {
  killEngines();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}
const cookieOf = (response: Response, name: string) => /^[^=]+=([^;]*)/.exec(response.headers.getSetCookie().find((c) => c.startsWith(`${name}=`)) ?? '')?.[1];

describe('npm start on a fresh machine', () => {
  it('opens with the demo practice: the printed staff key signs in to a populated dashboard', async () => {
    const dataDir = tempDir('settle-live-demo-');
    const engine = spawnEngine('start', { ...FRESH_ENV, SETTLE_DATA_DIR: dataDir, SETTLE_CONFIG_DIR: ROOT });
    let key = '';
    // A failure guard, not a speed target: how fast the dashboard is populated is measured by bench/demo.bench.ts.
    await waitFor(async () => {
      key = demoStaffKey(engine.output()) ?? '';
      return key !== '';
    }, 300_000, 'the staff key', engine.output);
    const url = await engine.url;
    assert.match(engine.output(), /DEMO: .*\(demo\).*Nothing is sent to anyone/);

    // The dashboard: the sign-in form's CSRF token and cookie, then the key.
    const form = await fetch(`${url}/dashboard/login`);
    const csrf = /name="csrf" value="([^"]+)"/.exec(await form.text())?.[1];
    assert.ok(csrf);
    const signIn = await fetch(`${url}/dashboard/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `settle_signin=${cookieOf(form, 'settle_signin')}` },
      body: new URLSearchParams({ csrf, key }).toString(),
    });
    assert.equal(signIn.status, 303);
    const session = cookieOf(signIn, 'settle_session');
    assert.ok(session, 'a session cookie');
    const overview = await fetch(`${url}/dashboard`, { headers: { cookie: `settle_session=${session}` } });
    assert.equal(overview.status, 200);
    const page = await overview.text();
    assert.match(page, /\(demo\)/, 'the dashboard names the demo practice');
    assert.match(page, /title="Demo practice: nothing is sent to anyone"/, 'and labels it Demo');
    assert.match(page, /<p class="status" role="status">The demo practice is still loading: \d+ of 2,000 patients/, 'and says the rest of the practice is on its way');

    // The API with the same key: balances still owed, and balances patients paid through the sandbox checkout.
    const auth = { authorization: `Bearer ${key}` };
    const balances = async (status: string) =>
      ((await (await fetch(`${url}/balances?status=${status}&limit=200`, { headers: auth })).json()) as { balances: { patientAmount: { amountMinor: number } }[] }).balances;
    const open = await balances('open');
    assert.ok(open.length > 0 && open.every((b) => b.patientAmount.amountMinor > 0), 'open balances');
    assert.ok((await balances('paid')).length > 0, 'paid balances (sandbox payments)');
    const outbox = (await (await fetch(`${url}/outbox`, { headers: auth })).json()) as { messages: unknown[] };
    assert.ok(outbox.messages.length > 0, 'messages in the outbox');

    engine.child.kill('SIGTERM');
    assert.equal(await engine.exited, 0);
  });

  it('does not start the demo when a connector reaches a real EHR', async () => {
    const dataDir = tempDir('settle-live-nodemo-');
    const configDir = tempDir('settle-live-config-');
    for (const folder of ['connectors', 'mappings', 'policies', 'fhir-profiles']) cpSync(join(ROOT, folder), join(configDir, folder), { recursive: true });
    rmSync(join(configDir, 'connectors', 'pm-hl7v2.json'));
    writeFileSync(join(configDir, 'connectors', 'riverside-ehr.json'), JSON.stringify({
      $schema: './connector.schema.json', name: 'riverside-ehr', description: 'The practice EHR', practice: 'default', transport: 'fhir-r4',
      baseUrl: 'https://fhir.riverside-clinic.org/r4', auth: { method: 'none' }, resources: [{ type: 'Patient' }], schedule: { every: '15 minutes' },
      pageSize: 100, rateLimitPerSecond: 5,
    }));
    const engine = spawnEngine('start', { ...FRESH_ENV, SETTLE_DATA_DIR: dataDir, SETTLE_CONFIG_DIR: configDir });
    const url = await engine.url;
    await waitFor(async () => (await fetch(`${url}/readyz`)).status === 200, 60_000, '/readyz', engine.output);
    assert.doesNotMatch(engine.output(), /DEMO/);
    assert.ok(!existsSync(join(dataDir, 'demo')), 'no demo world was written');
    engine.child.kill('SIGTERM');
    assert.equal(await engine.exited, 0);
  });
});
