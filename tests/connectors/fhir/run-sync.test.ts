import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, it } from 'node:test';
import { Command } from 'commander';
import express from 'express';
import { problemHandler } from '../../../src/api/problem.ts';
import { mountRoutes } from '../../../src/api/routes.ts';
import type { DataFile } from '../../../src/config/data-files.ts';
import { silentLogger } from '../../../src/config/logger.ts';
import type { Settings } from '../../../src/config/settings.ts';
import { fhirCommands } from '../../../src/connectors/fhir/cli-commands.ts';
import { connectorRoutes } from '../../../src/connectors/fhir/connector-routes.ts';
import { fhirConnectors, fhirSyncJob, findFhirConnector, runFhirConnectorCheck, runSync, scheduleConnectorSyncs, scheduleFhirSyncs } from '../../../src/connectors/fhir/run-sync.ts';
import { systemClock } from '../../../src/domain/clock.ts';
import { PracticeRepository } from '../../../src/store/practices.ts';
import { SourceRecordRepository } from '../../../src/store/source-records.ts';
import { JobRegistry, Scheduler } from '../../../src/scheduler/scheduler.ts';
import { describeOnEachDatabase } from '../../support/databases.ts';
import { startSandboxEhr, type SandboxEhr } from '../../../src/sandbox-ehr/server.ts';
import { seedPractice, type SeedSummary } from '../../../src/sandbox-ehr/seed.ts';

describeOnEachDatabase('settle sync, connectors check, the fhir.sync job and GET /connectors', (db) => {
  let ehr: SandboxEhr;
  let seeded: SeedSummary;
  let practiceId: string;
  let configDir: string;
  const env = { SANDBOX_TOKEN: 'sandbox-static-token' };

  before(async () => {
    ehr = await startSandboxEhr({ bearerTokens: [env.SANDBOX_TOKEN] });
    seeded = await seedPractice(ehr.repo, { patients: 25, seed: 3 });
    practiceId = (await new PracticeRepository(db().pool).ensure({ slug: 'riverside', name: 'Riverside Pediatrics' })).id;
    configDir = mkdtempSync(join(tmpdir(), 'settle-fhir-'));
    mkdirSync(join(configDir, 'connectors'));
    const connector = (name: string, practice: string) => ({
      name,
      description: 'The sandbox EHR.',
      practice,
      transport: 'fhir-r4',
      baseUrl: ehr.baseUrl,
      auth: { method: 'bearer', tokenEnv: 'SANDBOX_TOKEN' },
      resources: [{ type: 'Patient' }, { type: 'Invoice', search: { status: 'issued,balanced' } }],
      schedule: { every: '15 minutes' },
      pageSize: 10,
      rateLimitPerSecond: 500,
    });
    writeFileSync(join(configDir, 'connectors', 'sandbox-ehr.json'), JSON.stringify(connector('sandbox-ehr', 'riverside')));
    writeFileSync(join(configDir, 'connectors', 'other-practice.json'), JSON.stringify({ ...connector('other-practice', 'hillside'), schedule: { cron: '0 * * * *' } }));
  });
  after(async () => {
    await ehr.close();
    rmSync(configDir, { recursive: true, force: true });
  });

  it('settle sync shows progress and prints a summary; --type limits it to one type', async () => {
    const { file } = findFhirConnector(configDir, 'sandbox-ehr');
    const progress = new PassThrough();
    let drawn = '';
    progress.on('data', (d) => (drawn += d));
    let printed = '';
    const result = await runSync({ db: db(), connectorFile: file, practiceId, out: (t) => (printed += t), env, progressStream: progress, progressAlways: true });
    assert.equal(result.code, 0, printed);
    assert.match(drawn, /Patient \(1\/2\) \[[=-]+\] 25\/25 resources \| 3 pages \| \d+\/s \| ETA \d+ s/);
    assert.match(drawn, /Invoice \(2\/2\)/);
    assert.match(printed, new RegExp(`^Synced sandbox-ehr in \\d+\\.\\d s: \\d+ pages, ${seeded.patients + seeded.invoices} resources, ${seeded.patients + seeded.invoices} new, 0 already stored, 0 quarantined\\.\\n`));
    assert.match(printed, /\n {2}Patient: 3 pages, 25 resources, 25 new, 0 already stored, 0 quarantined; checkpoint 2026-/);

    let again = '';
    const typed = await runSync({ db: db(), connectorFile: file, practiceId, type: 'Invoice', full: true, out: (t) => (again += t), env, progressStream: new PassThrough() });
    assert.equal(typed.code, 0);
    assert.deepEqual(typed.summary!.types.map((t) => t.resourceType), ['Invoice']);
    assert.match(again, /^Synced sandbox-ehr \(full\) in .*0 new, \d+ already stored/);

    let wrong = '';
    assert.equal((await runSync({ db: db(), connectorFile: file, practiceId, type: 'Account', out: (t) => (wrong += t), env })).code, 1);
    assert.match(wrong, /connector sandbox-ehr does not pull Account \(it pulls Patient, Invoice\)/);
    let missing = '';
    assert.equal((await runSync({ db: db(), connectorFile: file, practiceId, out: (t) => (missing += t), env: {} })).code, 1);
    assert.equal(missing, 'connector sandbox-ehr: environment variable SANDBOX_TOKEN (the bearer token) is not set\n');
    assert.throws(() => findFhirConnector(configDir, 'nope'), /connector nope: there is no connectors\/nope\.json \(FHIR connectors: other-practice, sandbox-ehr\)/);
  });

  it('settle sync reports a failed type and exits 1; settle connectors check reports the sandbox', async () => {
    const { config } = findFhirConnector(configDir, 'sandbox-ehr');
    ehr.failNext(503, 10, 0);
    let printed = '';
    const failed = await runSync({ db: db(), connectorFile: { ...config, resources: [{ type: 'Patient' }] }, practiceId, out: (t) => (printed += t), env });
    ehr.failNext(503, 0);
    assert.equal(failed.code, 1);
    assert.match(printed, /^Sync of sandbox-ehr in .*\n {2}Patient: 0 pages, .*FAILED: 503 from http:\/\/127\.0\.0\.1:\d+\/fhir\/R4\/Patient\?_lastUpdated=ge.*service temporarily unavailable/);

    let report = '';
    assert.equal(await runFhirConnectorCheck({ connectorFile: config, out: (t) => (report += t), env }), 0, report);
    assert.match(report, /^sandbox-ehr: authenticated \(bearer\)\nsandbox-ehr: Settle sandbox EHR, FHIR 4\.0\.1\n {2}\[ok {2}\] Patient: /);
  });

  it('settle sync and settle connectors check as commander commands', async () => {
    class Exit extends Error {
      readonly code: number;
      constructor(code: number, message: string) {
        super(message);
        this.code = code;
      }
    }
    let printed = '';
    const program = () => {
      const p = new Command('settle').exitOverride();
      const settings = { configDir } as Settings;
      for (const c of fhirCommands({
        withDatabase: (work) => work(db(), settings),
        settings: () => settings,
        out: (t) => (printed += t),
        exitError: (code, message) => new Exit(code, message),
        env,
        progressStream: new PassThrough(),
      })) p.addCommand(c);
      return p;
    };
    await program().parseAsync(['node', 'settle', 'sync', 'sandbox-ehr', '--type', 'Patient']);
    assert.match(printed, /^Synced sandbox-ehr in .*\n {2}Patient: /);
    printed = '';
    await program().parseAsync(['node', 'settle', 'sync', 'sandbox-ehr', '--bulk', '--full']);
    assert.match(printed, /^export in progress: 50% done\nLoaded sandbox-ehr by Bulk export in .* s: \d+ lines, 0 new, \d+ already stored, 0 quarantined; checkpoints at 2026-/);
    await assert.rejects(program().parseAsync(['node', 'settle', 'sync', 'sandbox-ehr', '--bulk', 'nope']), (e: Exit) => e.code === 1);
    assert.match(printed, /Bulk export of sandbox-ehr failed: 404 from .*Group\/nope\/\$export\?_type=Patient%2CInvoice&_since=2026-.*: Group\/nope does not exist/);
    printed = '';
    await program().parseAsync(['node', 'settle', 'connectors', 'check', 'sandbox-ehr']);
    assert.match(printed, /^sandbox-ehr: authenticated \(bearer\)\n/);
    await assert.rejects(program().parseAsync(['node', 'settle', 'sync', 'other-practice']), (e: Exit) => e.code === 1 && /No practice "hillside" \(named by connectors\/other-practice\.json\)/.test(e.message));
    await assert.rejects(program().parseAsync(['node', 'settle', 'connectors', 'check', 'nope']), (e: Exit) => e.code === 1 && /there is no connectors\/nope\.json/.test(e.message));
  });

  it('the fhir.sync job syncs the named connector for the practice its file names', async () => {
    const job = fhirSyncJob({ db: db(), clock: systemClock, logger: silentLogger(), configDir, env });
    assert.equal(job.name, 'fhir.sync');
    await job.run({ connector: 'sandbox-ehr', full: true }, { jobId: 'j1', failures: 0 });
    const counts = await new SourceRecordRepository(db().pool, systemClock).counts(practiceId, 'sandbox-ehr');
    assert.deepEqual(counts.map((c) => [c.resourceType, c.total]), [['Invoice', seeded.invoices], ['Patient', seeded.patients]]);
    await assert.rejects(job.run({ connector: 'other-practice' }, { jobId: 'j2', failures: 0 }), /connector other-practice: names practice "hillside", which does not exist/);
    await assert.rejects(job.run({ connector: 'missing' }, { jobId: 'j3', failures: 0 }), /there is no connectors\/missing\.json/);
  });

  it('GET /connectors and /connectors/{name} show status for the caller practice only', async () => {
    const app = express();
    const router = express.Router();
    mountRoutes(router, connectorRoutes({ db: db(), clock: systemClock, configDir }), async (key) =>
      key === 'staff-key' ? { keyId: 'k', practiceId, name: 'staff', role: 'staff' } : undefined,
    );
    app.use(router);
    app.use(problemHandler(silentLogger()));
    const server: Server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const get = (path: string, key = 'staff-key') => fetch(`${base}${path}`, { headers: { authorization: `Bearer ${key}` } });
    try {
      const list = await get('/connectors');
      assert.equal(list.status, 200);
      const connectors = (await list.json()) as Record<string, unknown>[];
      assert.deepEqual(connectors.map((c) => c.name), ['sandbox-ehr'], 'another practice\'s connector is not shown');
      const status = connectors[0]!;
      assert.equal((status.lastSuccess as { status: string }).status, 'succeeded');
      assert.match((status.lastError as { error: string }).error, /^bulk export: 404 from .*Group\/nope/);
      assert.deepEqual((status.checkpoints as { resourceType: string }[]).map((c) => c.resourceType), ['Invoice', 'Patient']);
      assert.deepEqual(status.resourceTypes, ['Patient', 'Invoice']);
      assert.equal(status.openQuarantine, 0);
      const one = await get('/connectors/sandbox-ehr');
      assert.equal(one.status, 200);
      assert.deepEqual(((await one.json()) as { quarantine: unknown[] }).quarantine, []);
      const missing = await get('/connectors/other-practice');
      assert.equal(missing.status, 404);
      assert.equal(((await missing.json()) as { code: string }).code, 'not_found');
      assert.equal((await get('/connectors', 'wrong')).status, 401);

      // A run whose process died (on another worker: no heartbeat for ten minutes) is never shown running.
      const { rows } = await db().pool.query<{ id: string }>(
        `INSERT INTO connector_runs (practice_id, connector, started_at, owner_host, owner_pid, heartbeat_at)
         VALUES ($1, 'sandbox-ehr', now() - interval '1 hour', 'worker-2.invalid', 4242, now() - interval '10 minutes') RETURNING id::text AS id`,
        [practiceId],
      );
      const dead = (await (await get('/connectors/sandbox-ehr')).json()) as { lastRun: { id: string; status: string; error: string }; lastError: { id: string } };
      assert.equal(dead.lastRun.id, rows[0]!.id);
      assert.equal(dead.lastRun.status, 'interrupted');
      assert.match(dead.lastRun.error, /^interrupted: process 4242 on worker-2\.invalid stopped without finishing this run/);
      assert.equal(dead.lastError.id, rows[0]!.id);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('the engine keeps enabled connectors on their schedule in the practice time zone, and takes disabled or removed ones off', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'settle-fhir-schedule-'));
    mkdirSync(join(dir, 'connectors'));
    const file = (name: string, data: Record<string, unknown>): DataFile => ({ file: `connectors/${name}.json`, absolutePath: join(dir, 'connectors', `${name}.json`), name, data });
    const base = { description: 'The sandbox EHR.', transport: 'fhir-r4', baseUrl: ehr.baseUrl, auth: { method: 'bearer', tokenEnv: 'SANDBOX_TOKEN' }, resources: [{ type: 'Patient' }], pageSize: 50, rateLimitPerSecond: 500 };
    const running = file('every-second', { ...base, name: 'every-second', practice: 'riverside', schedule: { every: '1 second' } });
    const paused = file('paused', { ...base, name: 'paused', practice: 'riverside', schedule: { cron: '0 6 * * *' }, enabled: false });
    const nightly = file('nightly', { ...base, name: 'nightly', practice: 'riverside', schedule: { cron: '0 2 * * *' } });
    for (const f of [running, paused, nightly]) writeFileSync(f.absolutePath, JSON.stringify(f.data));
    await db().pool.query("UPDATE practices SET time_zone = 'America/Chicago' WHERE id = $1", [practiceId]);
    const registry = new JobRegistry();
    // A short lock lifetime: Agenda 6.2.6's liveness check sleeps half of it after each run and would keep the test process alive.
    registry.register({ ...fhirSyncJob({ db: db(), clock: systemClock, logger: silentLogger(), configDir: dir, env }), lockLifetimeMs: 4_000 });
    const scheduler = new Scheduler({ db: db(), registry, name: 'test-schedule', concurrency: 1, pollIntervalMs: 200 });
    const jobs = async () =>
      (await db().pool.query<{ connector: string; repeat_timezone: string | null }>(
        "SELECT data->>'connector' AS connector, repeat_timezone FROM agenda_jobs WHERE name = 'fhir.sync' AND repeat_interval IS NOT NULL AND data->>'connector' IN ('every-second', 'paused', 'nightly') ORDER BY 1",
      )).rows;
    try {
      await scheduler.start();
      // A connector paused in its file is taken off the schedule it had.
      await scheduleConnectorSyncs(scheduler.agenda, db(), [running, { ...paused, data: { ...paused.data, enabled: true } }, nightly]);
      assert.deepEqual((await jobs()).map((j) => j.connector), ['every-second', 'nightly', 'paused']);
      assert.deepEqual(await scheduleConnectorSyncs(scheduler.agenda, db(), [running, paused, nightly]), ['every-second', 'nightly']);
      assert.deepEqual(await jobs(), [
        { connector: 'every-second', repeat_timezone: 'America/Chicago' },
        { connector: 'nightly', repeat_timezone: 'America/Chicago' },
      ]);
      // The scheduled sync really runs: the connector's Patients arrive without anyone calling `settle sync`.
      const counts = () => new SourceRecordRepository(db().pool, systemClock).counts(practiceId, 'every-second');
      const deadline = Date.now() + 15_000;
      while (!(await counts()).some((c) => c.resourceType === 'Patient' && c.total === seeded.patients)) {
        assert.ok(Date.now() < deadline, 'the scheduled sync stored the Patients within 15 s');
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      // A connector whose file is gone comes off the schedule too.
      assert.deepEqual(await scheduleConnectorSyncs(scheduler.agenda, db(), [nightly]), ['nightly']);
      assert.deepEqual((await jobs()).map((j) => j.connector), ['nightly']);
    } finally {
      await scheduler.stop(5_000);
      await db().pool.query("UPDATE practices SET time_zone = 'America/New_York' WHERE id = $1", [practiceId]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('schedules one repeating fhir.sync per connector, however often it is called', async () => {
    const scheduler = new Scheduler({ db: db(), registry: new JobRegistry(), name: 'test', concurrency: 1 });
    const connectors = fhirConnectors(configDir);
    assert.deepEqual(await scheduleFhirSyncs(scheduler.agenda, connectors), ['other-practice', 'sandbox-ehr']);
    await scheduleFhirSyncs(scheduler.agenda, connectors);
    const { rows } = await db().pool.query<{ connector: string; repeat_interval: string }>(
      "SELECT data->>'connector' AS connector, repeat_interval FROM agenda_jobs WHERE name = 'fhir.sync' ORDER BY 1",
    );
    assert.deepEqual(rows, [
      { connector: 'other-practice', repeat_interval: '0 * * * *' },
      { connector: 'sandbox-ehr', repeat_interval: '15 minutes' },
    ]);
    await scheduler.stop(1000);
  });
});
