import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { killEngines, ROOT, runCli, spawnEngine, waitFor } from '../support/cli.ts';
import { freePort, sendMllp } from '../support/mllp.ts';

after(killEngines);

const CLEAN_ENV = { DATABASE_URL: undefined, SETTLE_ENCRYPTION_KEYS: undefined, SETTLE_BLIND_INDEX_KEY: undefined, SETTLE_PAY_LINK_KEYS: undefined, SETTLE_CONFIG_DIR: ROOT };

describe('settle start on the embedded database', () => {
  it('runs on a fresh data directory, shares its database with the CLI, stops on SIGTERM and keeps its data', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'settle-start-'));
    // The shipped data files, with the HL7 listener moved off the standard port 2575 to a free one.
    const configDir = mkdtempSync(join(tmpdir(), 'settle-config-'));
    for (const folder of ['connectors', 'mappings', 'policies', 'fhir-profiles']) cpSync(join(ROOT, folder), join(configDir, folder), { recursive: true });
    const mllpPort = await freePort();
    const hl7File = join(configDir, 'connectors', 'pm-hl7v2.json');
    writeFileSync(hl7File, JSON.stringify({ ...JSON.parse(readFileSync(hl7File, 'utf8')), listen: { host: '127.0.0.1', port: mllpPort } }));
    const env = { ...CLEAN_ENV, SETTLE_DATA_DIR: dataDir, SETTLE_CONFIG_DIR: configDir, SETTLE_LOG_LEVEL: 'warn' };
    const engine = spawnEngine('start', env);
    const url = await engine.url;
    assert.deepEqual(await (await fetch(`${url}/healthz`)).json(), { status: 'ok' });
    await waitFor(async () => (await fetch(`${url}/readyz`)).status === 200, 60_000, '/readyz', engine.output);
    const ready = (await (await fetch(`${url}/readyz`)).json()) as { checks: Record<string, { ok: boolean }> };
    assert.deepEqual(Object.keys(ready.checks).sort(), ['database', 'migrations', 'scheduler']);
    assert.ok(existsSync(join(dataDir, 'keys.json')), 'development keys generated into the data directory');

    // The CLI reaches the running engine's database instead of opening the files a second time.
    const created = await runCli(['apikey', 'create', '--role', 'admin', '--name', 'office manager', '--json'], env);
    assert.equal(created.code, 0, created.stderr);
    const { secret } = JSON.parse(created.stdout) as { secret: string };
    const me = await fetch(`${url}/me`, { headers: { authorization: `Bearer ${secret}` } });
    assert.equal(me.status, 200);
    const spare = JSON.parse((await runCli(['apikey', 'create', '--role', 'staff', '--name', 'temp', '--json'], env)).stdout) as { id: string; secret: string };
    const listed = await runCli(['apikey', 'list'], env);
    assert.equal(listed.code, 0);
    assert.match(listed.stdout, /admin\s+office manager/);
    assert.ok(!listed.stdout.includes(secret) && !listed.stdout.includes(spare.secret), 'list never shows secrets');
    const revoked = await runCli(['apikey', 'revoke', spare.id], env);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal((await fetch(`${url}/me`, { headers: { authorization: `Bearer ${spare.secret}` } })).status, 401, 'revoked at once');
    assert.equal((await runCli(['apikey', 'revoke', 'settle_nosuchkey0000'], env)).code, 1);

    // The practice-management feed of connectors/pm-hl7v2.json is acknowledged once stored.
    const ack = await sendMllp(mllpPort, ['MSH|^~\\&|PMS|RIVERSIDE|SETTLE|SETTLE|20260601120000||DFT^P03|CTRL-1|P|2.5.1', 'EVN|P03|20260601120000', 'PID|1||MRN123||DOE^JANE||19800101|F||||||||||ACCT-9', 'FT1|1|||20260530||CG|99213^Office visit|||1|150.00&USD'].join('\r'));
    assert.deepEqual([ack.code, ack.controlId], ['AA', 'CTRL-1']);
    // Stored → processed into source records → posted to the ledger, without waiting for the minute schedule.
    let balances: { patientAmount: { value: string } }[] = [];
    await waitFor(async () => {
      balances = ((await (await fetch(`${url}/balances`, { headers: { authorization: `Bearer ${secret}` } })).json()) as { balances: typeof balances }).balances;
      return balances.length > 0;
    }, 30_000, 'the charge to reach the ledger');
    assert.deepEqual(balances.map((b) => b.patientAmount.value), ['150.00']);

    engine.child.kill('SIGTERM');
    assert.equal(await engine.exited, 0);
    assert.ok(!existsSync(join(dataDir, 'settle.lock')), 'lock released');

    const again = spawnEngine('start', env);
    const url2 = await again.url;
    await waitFor(async () => (await fetch(`${url2}/readyz`)).status === 200, 60_000, '/readyz after restart', again.output);
    assert.equal((await fetch(`${url2}/me`, { headers: { authorization: `Bearer ${secret}` } })).status, 200, 'the key survived the restart');
    again.child.kill('SIGINT');
    assert.equal(await again.exited, 0);
  });
});

describe('settle refuses to start half-way', () => {
  it('lists every invalid setting at once and exits 3', async () => {
    const result = await runCli(['start'], { ...CLEAN_ENV, SETTLE_PORT: 'eighty', SETTLE_LOG_LEVEL: 'loud', DATABASE_URL: 'mysql://x' });
    assert.equal(result.code, 3);
    assert.match(result.stderr, /SETTLE_PORT: must be a whole number \(got "eighty"\)/);
    assert.match(result.stderr, /SETTLE_LOG_LEVEL: must be one of error, warn, info, debug/);
    assert.match(result.stderr, /DATABASE_URL: must match/);
    assert.doesNotMatch(result.stderr, /mysql:\/\/x/, 'secret settings are not echoed');
  });

  it('refuses to start with an invalid data file, naming the file and the JSON path', async () => {
    const configDir = mkdtempSync(join(tmpdir(), 'settle-config-'));
    mkdirSync(join(configDir, 'connectors'));
    writeFileSync(join(configDir, 'connectors', 'broken.json'), JSON.stringify({ name: 'broken', transport: 'carrier-pigeon' }));
    const dataDir = mkdtempSync(join(tmpdir(), 'settle-start-'));
    const result = await runCli(['start'], { ...CLEAN_ENV, SETTLE_CONFIG_DIR: configDir, SETTLE_DATA_DIR: dataDir });
    assert.equal(result.code, 3);
    assert.match(result.stderr, /connectors\/broken\.json: \/[^:]*: /);
    assert.ok(!existsSync(join(dataDir, 'pgdata')), 'no database was created');
  });

  it('refuses to start on a server database without SETTLE_PAY_LINK_KEYS (exit 3, naming the setting)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'settle-start-'));
    const result = await runCli(['start'], {
      ...CLEAN_ENV, SETTLE_DATA_DIR: dataDir, DATABASE_URL: 'postgres://settle@127.0.0.1:9/settle',
      SETTLE_ENCRYPTION_KEYS: `k1:${Buffer.alloc(32, 1).toString('base64')}`, SETTLE_BLIND_INDEX_KEY: Buffer.alloc(32, 2).toString('base64'),
    });
    assert.equal(result.code, 3);
    assert.match(result.stderr, /Settle did not start: SETTLE_PAY_LINK_KEYS is required when DATABASE_URL is set/);
    assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
    assert.ok(!existsSync(join(dataDir, 'pay-link-keys.json')), 'no per-process key was generated');
  });

  it('keeps serving health while the database is unreachable, and says why on /readyz', async () => {
    const engine = spawnEngine('serve', {
      ...CLEAN_ENV,
      DATABASE_URL: 'postgres://settle@127.0.0.1:9/settle',
      SETTLE_PAY_LINK_KEYS: `1:${Buffer.alloc(32, 9).toString('base64url')}`,
      SETTLE_ENCRYPTION_KEYS: `k1:${Buffer.alloc(32, 1).toString('base64')}`,
      SETTLE_BLIND_INDEX_KEY: Buffer.alloc(32, 2).toString('base64'),
      SETTLE_LOG_LEVEL: 'warn',
    });
    const url = await engine.url;
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
    const ready = await fetch(`${url}/readyz`);
    assert.equal(ready.status, 503);
    const body = (await ready.json()) as { checks: { database: { ok: boolean; detail: string } } };
    assert.equal(body.checks.database.ok, false);
    assert.match(body.checks.database.detail, /ECONNREFUSED|connect/);
    await waitFor(async () => /database unreachable, retrying/.test(engine.output()), 10_000, 'a retry to be logged');
    engine.child.kill('SIGTERM');
    assert.equal(await engine.exited, 0);
  });
});

describe('settle CLI', () => {
  it('answers --help on every command and exits 2 on a usage error', async () => {
    for (const args of [['--help'], ['start', '--help'], ['worker', '--help'], ['migrate', '--help'], ['config', 'check', '--help'], ['apikey', 'create', '--help']]) {
      const result = await runCli(args, CLEAN_ENV);
      assert.equal(result.code, 0, args.join(' '));
      assert.match(result.stdout, /Usage: settle/);
    }
    const wrong = await runCli(['apikey', 'create', '--role', 'owner', '--name', 'x'], CLEAN_ENV);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /Allowed choices are admin, staff, integration/);
  });
});

describe('settle migrate from two processes at once', { skip: process.env.TEST_DATABASE_URL ? undefined : 'TEST_DATABASE_URL is not set: needs a PostgreSQL server' }, () => {
  it('applies each migration once and both exit 0', async () => {
    const { default: pg } = await import('pg');
    const admin = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
    await admin.connect();
    const name = `settle_mig_${process.pid}_${Date.now()}`;
    await admin.query(`CREATE DATABASE ${name}`);
    try {
      const url = new URL(process.env.TEST_DATABASE_URL!);
      url.pathname = `/${name}`;
      const env = {
        ...CLEAN_ENV,
        DATABASE_URL: url.toString(),
        SETTLE_PAY_LINK_KEYS: `1:${Buffer.alloc(32, 9).toString('base64url')}`,
        SETTLE_ENCRYPTION_KEYS: `k1:${Buffer.alloc(32, 1).toString('base64')}`,
        SETTLE_BLIND_INDEX_KEY: Buffer.alloc(32, 2).toString('base64'),
      };
      const results = await Promise.all([runCli(['migrate'], env), runCli(['migrate'], env)]);
      assert.deepEqual(results.map((r) => r.code), [0, 0], results.map((r) => r.stderr).join('\n'));
      const db = new pg.Client({ connectionString: url.toString() });
      await db.connect();
      const { rows } = await db.query('SELECT version, count(*)::int AS n FROM schema_migrations GROUP BY version');
      await db.end();
      assert.ok(rows.length >= 3);
      assert.ok(rows.every((r) => r.n === 1));
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    }
  });
});

describe('settle mappings test and settle import csv', () => {
  it('try a mapping without a database, then import a statement export once, reporting each bad row', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'settle-import-'));
    const env = { ...CLEAN_ENV, SETTLE_DATA_DIR: dataDir };
    const csv = join(ROOT, 'tests/mapping/fixtures/statement.csv');
    const tried = await runCli(['mappings', 'test', 'csv-statement', csv], env);
    assert.equal(tried.code, 1, 'bad rows make the test fail');
    assert.match(tried.stdout, /line 2: OK/);
    assert.match(tried.stdout, /"12\.345" has 3 decimal places; USD has 2/);
    assert.ok(!existsSync(join(dataDir, 'pgdata')), 'trying a mapping opens no database');

    const first = await runCli(['import', 'csv', csv, '--mapping', 'csv-statement'], env, 120_000);
    assert.equal(first.code, 1, first.stderr);
    assert.match(first.stdout, /line 6, column 18 \(Charges\): "12\.345" has 3 decimal places/);
    assert.match(first.stdout, /6 rows: 3 imported, 0 already imported/);
    const again = await runCli(['import', 'csv', csv, '--mapping', 'csv-statement'], env, 120_000);
    assert.match(again.stdout, /6 rows: 0 imported, 3 already imported/);

    const unknown = await runCli(['import', 'csv', csv, '--mapping', 'nope'], env);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /No mapping "nope"/);
  });
});
