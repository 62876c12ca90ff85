import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { Command } from 'commander';
import express from 'express';
import { Registry } from 'prom-client';
import { hl7Routes } from '../../../src/api/hl7-routes.ts';
import { problemHandler } from '../../../src/api/problem.ts';
import { mountRoutes } from '../../../src/api/routes.ts';
import { hl7Command, parseWhen } from '../../../src/cli/hl7-commands.ts';
import { silentLogger } from '../../../src/config/logger.ts';
import type { Settings } from '../../../src/config/settings.ts';
import { hl7RetentionJob, registerHl7Metrics, runHl7Retention } from '../../../src/connectors/hl7v2/admin.ts';
import type { Hl7v2MllpConnector } from '../../../src/connectors/hl7v2/mllp-server.ts';
import type { Role } from '../../../src/domain/access.ts';
import { ManualClock } from '../../../src/domain/clock.ts';
import { ApiKeyRepository } from '../../../src/store/api-keys.ts';
import { AuditLog } from '../../../src/store/audit.ts';
import { Hl7MessageAdmin, Hl7MessageRepository, type NewHl7Message } from '../../../src/store/hl7-messages.ts';
import { PracticeRepository } from '../../../src/store/practices.ts';
import type { Database } from '../../../src/store/database.ts';
import { describeOnEachDatabase } from '../../support/databases.ts';

/** What main.ts passes as `practiceFor`: the practice a slug names (here always given). */
async function practiceBySlug(db: Database, slug: string | undefined): Promise<{ id: string }> {
  const practice = await new PracticeRepository(db.pool).findBySlug(slug ?? 'default');
  if (!practice) throw new Error(`No practice "${slug}".`);
  return practice;
}

const connector = (name: string, retentionDays: number): Hl7v2MllpConnector => ({
  name,
  transport: 'hl7v2-mllp',
  practice: 'default',
  listen: { host: '127.0.0.1', port: 0 },
  acceptedMessageTypes: ['DFT^P03', 'ADT^A04'],
  charset: 'UTF-8',
  retentionDays,
});

describeOnEachDatabase('hl7 message store admin', (db) => {
  const clock = new ManualClock(new Date('2026-06-01T12:00:00Z'));
  const day = 86_400_000;
  let practiceId: string;
  let otherPracticeId: string;
  let server: Server;
  let url: string;
  const keys = {} as Record<Role, string>;
  /** id by control id */
  const ids = new Map<string, string>();

  const message = (controlId: string, overrides: Partial<NewHl7Message> = {}): NewHl7Message => ({
    practiceId,
    connector: 'pm-hl7v2',
    controlId,
    messageType: 'DFT^P03',
    sendingApplication: 'PMS',
    sendingFacility: 'RIVERSIDE',
    receivedAt: new Date(clock.now().getTime() - day),
    raw: `MSH|^~\\&|PMS|RIVERSIDE|SETTLE|SETTLE|20260531||DFT^P03|${controlId}|P|2.5.1\rPID|1||MRN1||Doe^Jane`,
    rawBytesCharset: 'UTF-8',
    ...overrides,
  });

  before(async () => {
    const practices = new PracticeRepository(db().pool);
    practiceId = (await practices.ensure({ slug: 'admin-a', name: 'A' })).id;
    otherPracticeId = (await practices.ensure({ slug: 'admin-b', name: 'B' })).id;
    const repo = new Hl7MessageRepository(db().pool);
    const t0 = clock.now().getTime();
    // 12 DFT from PMS (one per hour, 40 days ago … ), 3 ADT from REG, 1 on another connector, 1 in another practice.
    const batch: NewHl7Message[] = [];
    for (let i = 0; i < 12; i++) batch.push(message(`D${i}`, { receivedAt: new Date(t0 - 40 * day + i * 3_600_000) }));
    for (let i = 0; i < 3; i++) batch.push(message(`A${i}`, { messageType: 'ADT^A04', sendingApplication: 'REG', sendingFacility: 'NORTH', receivedAt: new Date(t0 - 2 * day + i) }));
    batch.push(message('X1', { connector: 'other-feed', receivedAt: new Date(t0 - 200 * day) }));
    const results = await repo.storeMany(batch);
    batch.forEach((m, i) => ids.set(m.controlId, results[i].id));
    await repo.store(message('D0', { practiceId: otherPracticeId }));
    // D0-D5 processed, D6 failed, the rest received.
    for (let i = 0; i < 6; i++) await repo.markProcessed(practiceId, ids.get(`D${i}`)!, clock.now());
    await repo.markFailed(practiceId, ids.get('D6')!, 'FT1-11: "1,0" is not an amount', clock.now());
    await repo.markProcessed(practiceId, ids.get('X1')!, clock.now());

    const apiKeys = new ApiKeyRepository(db().pool, clock);
    for (const role of ['admin', 'staff', 'integration'] as const) keys[role] = (await apiKeys.create(practiceId, `${role} key`, role)).secret;
    const app = express();
    app.use(express.json());
    const router = express.Router();
    mountRoutes(router, hl7Routes(db(), clock), (presented) => apiKeys.authenticate(presented));
    app.use(router);
    app.use(problemHandler(silentLogger()));
    server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));

  it('searches by type, status, sender, connector, control id and date range, newest first, in pages', async () => {
    const admin = new Hl7MessageAdmin(db().pool);
    const all = await admin.search(practiceId, {}, { limit: 1000 });
    assert.equal(all.items.length, 16);
    assert.equal(all.next, undefined);
    assert.deepEqual(all.items.slice(0, 3).map((m) => m.controlId), ['A2', 'A1', 'A0']);
    assert.ok(!('raw' in all.items[0]), 'listings never carry message content');
    assert.ok(all.items[0].sizeChars > 20);
    const count = async (filter: Parameters<Hl7MessageAdmin['search']>[1]) => (await admin.search(practiceId, filter, { limit: 1000 })).items.length;
    assert.equal(await count({ type: 'DFT^P03' }), 13);
    assert.equal(await count({ type: 'ADT' }), 3);
    assert.equal(await count({ type: 'ADT^A08' }), 0);
    assert.equal(await count({ status: 'processed' }), 7);
    assert.equal(await count({ status: 'failed' }), 1);
    assert.equal(await count({ sender: 'REG' }), 3);
    assert.equal(await count({ sender: 'REG|NORTH' }), 3);
    assert.equal(await count({ sender: 'REG|SOUTH' }), 0);
    assert.equal(await count({ connector: 'other-feed' }), 1);
    assert.equal(await count({ controlId: 'D3' }), 1);
    assert.equal(await count({ since: new Date(clock.now().getTime() - 3 * day) }), 3);
    assert.equal(await count({ until: new Date(clock.now().getTime() - 100 * day) }), 1);
    assert.equal(await count({ type: 'DFT^P03', status: 'received', connector: 'pm-hl7v2' }), 5);
    assert.equal(await count({ ids: [ids.get('D1')!, ids.get('A1')!, 'not-a-uuid'] }), 2);
    assert.equal((await admin.search(otherPracticeId, {}, {})).items.length, 1, 'a practice sees its own messages only');

    // Pages of 5 walk every message once.
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await admin.search(practiceId, {}, { limit: 5, cursor });
      seen.push(...page.items.map((m) => m.id));
      cursor = page.next;
    } while (cursor);
    assert.deepEqual(seen, all.items.map((m) => m.id));
    await assert.rejects(admin.search(practiceId, {}, { cursor: 'garbage' }), { name: 'InvalidCursorError' });
  });

  it('API: GET /hl7/messages filters and pages (staff, integration); 400 on a bad query; 403 for others', async () => {
    const get = (path: string, role: Role = 'staff') => fetch(`${url}${path}`, { headers: { authorization: `Bearer ${keys[role]}` } });
    const res = await get('/hl7/messages?type=DFT^P03&status=received&limit=2');
    assert.equal(res.status, 200);
    const page = (await res.json()) as { items: Array<{ controlId: string; charset: string; practiceId?: string }>; next: string };
    assert.deepEqual(page.items.map((m) => m.controlId), ['D11', 'D10']);
    assert.equal(page.items[0].charset, 'UTF-8');
    assert.equal(page.items[0].practiceId, undefined);
    const second = (await (await get(`/hl7/messages?type=DFT^P03&status=received&limit=2&cursor=${page.next}`, 'integration')).json()) as typeof page;
    assert.deepEqual(second.items.map((m) => m.controlId), ['D9', 'D8']);
    assert.equal(((await (await get('/hl7/messages?since=2026-05-29')).json()) as typeof page).items.length, 3);
    assert.equal(((await (await get('/hl7/messages?sender=REG%7CNORTH&controlId=A1')).json()) as typeof page).items.length, 1);
    for (const bad of ['status=done', 'type=dft', 'since=yesterday', 'limit=0', 'colour=red', 'cursor=xyz']) {
      const r = await get(`/hl7/messages?${bad}`);
      assert.equal(r.status, 400, bad);
      assert.equal(((await r.json()) as { code: string }).code, 'invalid_request');
    }
    assert.equal((await fetch(`${url}/hl7/messages`)).status, 401);
  });

  it('API: GET /hl7/messages/{id} returns the content to staff and audits the view; 404 otherwise', async () => {
    const id = ids.get('D6')!;
    const before = (await new AuditLog(db(), clock).list(practiceId)).filter((e) => e.action === 'hl7.message.view').length;
    const res = await fetch(`${url}/hl7/messages/${id}`, { headers: { authorization: `Bearer ${keys.staff}` } });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { raw: string; status: string; error: string; controlId: string };
    assert.match(body.raw, /^MSH\|/);
    assert.equal(body.status, 'failed');
    assert.match(body.error, /FT1-11/);
    const views = (await new AuditLog(db(), clock).list(practiceId)).filter((e) => e.action === 'hl7.message.view');
    assert.equal(views.length, before + 1);
    const event = views.at(-1)!;
    assert.equal(event.entityId, id);
    assert.match(event.actor, /^apikey:/);
    assert.deepEqual(event.detail, { connector: 'pm-hl7v2', messageType: 'DFT^P03', controlId: 'D6' });
    assert.doesNotMatch(JSON.stringify(event), /Doe/);
    assert.equal((await fetch(`${url}/hl7/messages/${id}`, { headers: { authorization: `Bearer ${keys.integration}` } })).status, 403);
    const otherPractice = (await new Hl7MessageRepository(db().pool).findByControlId(otherPracticeId, 'pm-hl7v2', 'D0'))[0].id;
    for (const missing of [otherPractice, '00000000-0000-4000-8000-000000000000', 'nope']) {
      const r = await fetch(`${url}/hl7/messages/${missing}`, { headers: { authorization: `Bearer ${keys.staff}` } });
      assert.equal(r.status, 404, missing);
    }
    const after = (await new AuditLog(db(), clock).list(practiceId)).filter((e) => e.action === 'hl7.message.view').length;
    assert.equal(after, before + 1, 'what was not shown is not audited');
    assert.equal(await new AuditLog(db(), clock).verify(practiceId), undefined);
  });

  it('API: POST /hl7/messages/reprocess puts processed and failed messages back to received (integration), validated', async () => {
    const post = (body: unknown, role: Role = 'integration') =>
      fetch(`${url}/hl7/messages/reprocess`, { method: 'POST', headers: { authorization: `Bearer ${keys[role]}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    for (const bad of [{}, { status: 'done' }, { ids: [] }, { ids: ['x'] }, { colour: 'red' }, { since: 'yesterday' }]) {
      const r = await post(bad);
      assert.equal(r.status, 400, JSON.stringify(bad));
    }
    assert.equal((await post({ status: 'failed' }, 'staff')).status, 403);
    const failed = await post({ status: 'failed' });
    assert.deepEqual(await failed.json(), { matched: 1, requeued: 1, alreadyPending: 0 });
    const d6 = await new Hl7MessageRepository(db().pool).findById(practiceId, ids.get('D6')!);
    assert.equal(d6?.status, 'received');
    assert.equal(d6?.error, null);
    const one = await post({ ids: [ids.get('D0')!, ids.get('D7')!] });
    assert.deepEqual(await one.json(), { matched: 2, requeued: 1, alreadyPending: 1 });
    const events = (await new AuditLog(db(), clock).list(practiceId)).filter((e) => e.action === 'hl7.message.reprocess');
    assert.equal(events.length, 2);
    assert.deepEqual(events[0].detail, { filter: { status: 'failed' }, matched: 1, requeued: 1, alreadyPending: 0 });
    // Put them back for the following tests.
    await new Hl7MessageRepository(db().pool).markFailed(practiceId, ids.get('D6')!, 'again', clock.now());
    await new Hl7MessageRepository(db().pool).markProcessed(practiceId, ids.get('D0')!, clock.now());
  });

  it('CLI: settle hl7 messages / show / reprocess', async () => {
    let output = '';
    const run = async (...args: string[]) => {
      output = '';
      const program = new Command('settle').exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
      program.addCommand(
        hl7Command({
          withDatabase: (work) => work(db(), {} as Settings),
          out: (text) => (output += text),
          exitError: (code, message) => Object.assign(new Error(message), { exitCode: code }),
          clock,
          practiceFor: practiceBySlug,
        }),
      );
      await program.parseAsync(['node', 'settle', 'hl7', ...args, '--practice', 'admin-a']);
      return output;
    };
    const listed = await run('messages', '--type', 'ADT^A04', '--since', '3d');
    assert.deepEqual(listed.trim().split('\n').map((l) => l.split(/\s+/).at(-1)), ['A2', 'A1', 'A0']);
    assert.match(listed, /REG\|NORTH/);
    const json = JSON.parse(await run('messages', '--status', 'failed', '--json')) as { items: Array<{ controlId: string }> };
    assert.deepEqual(json.items.map((m) => m.controlId), ['D6']);
    assert.match(await run('messages', '--control-id', 'nothing'), /No messages match/);
    assert.match(await run('messages', '--limit', '2'), /More: --cursor \S+/);

    const shown = await run('show', ids.get('D6')!);
    assert.match(shown, /control id: +D6/);
    assert.match(shown, /error: +again/);
    assert.match(shown, /\nMSH\|\^~\\&\|PMS[^\n]*\nPID\|/);
    const cliViews = (await new AuditLog(db(), clock).list(practiceId)).filter((e) => e.action === 'hl7.message.view' && e.actor === 'cli');
    assert.equal(cliViews.length, 1);
    await assert.rejects(run('show', '00000000-0000-4000-8000-000000000000'), { exitCode: 1 });

    assert.match(await run('reprocess', '--type', 'DFT^P03', '--status', 'failed'), /^1 matched: 1 marked for processing again, 0 already waiting/);
    assert.deepEqual(JSON.parse(await run('reprocess', ids.get('D1')!, '--json')), { matched: 1, requeued: 1, alreadyPending: 0 });
    await assert.rejects(run('reprocess'), { exitCode: 2 });
    await assert.rejects(run('reprocess', 'not-an-id'), { exitCode: 2 });
    await assert.rejects(run('messages', '--since', 'last tuesday'), { exitCode: 2 });
    await assert.rejects(run('messages', '--type', 'dft'), { exitCode: 2 });
    const repo = new Hl7MessageRepository(db().pool);
    await repo.markFailed(practiceId, ids.get('D6')!, 'again', clock.now());
    await repo.markProcessed(practiceId, ids.get('D1')!, clock.now());
  });

  it('parses --since as an ISO date, date-time or age', () => {
    const now = new Date('2026-06-01T12:00:00Z');
    assert.deepEqual(parseWhen('24h', now), new Date('2026-05-31T12:00:00Z'));
    assert.deepEqual(parseWhen('7d', now), new Date('2026-05-25T12:00:00Z'));
    assert.deepEqual(parseWhen('90m', now), new Date('2026-06-01T10:30:00Z'));
    assert.deepEqual(parseWhen('2026-05-01', now), new Date('2026-05-01T00:00:00Z'));
    assert.deepEqual(parseWhen('2026-05-01T08:00:00-04:00', now), new Date('2026-05-01T12:00:00Z'));
    assert.equal(parseWhen('soon', now), undefined);
  });

  it('lists what waits to be processed, oldest first, across practices', async () => {
    const pending = await new Hl7MessageRepository(db().pool).pending(100);
    assert.deepEqual(pending.map((m) => m.controlId), ['D7', 'D8', 'D9', 'D10', 'D11', 'A0', 'A1', 'A2', 'D0'], 'D0 is the other practice (received a day ago)');
    assert.ok(pending.every((m) => m.status === 'received' && m.raw.startsWith('MSH')));
    assert.equal((await new Hl7MessageRepository(db().pool).pending(2)).length, 2);
  });

  it('metrics: settle_hl7_messages by connector and status, read at scrape time', async () => {
    const registry = new Registry();
    registerHl7Metrics(registry, db());
    const text = await registry.metrics();
    // Both practices: pm-hl7v2 holds 16 + 1.
    assert.match(text, /settle_hl7_messages\{connector="pm-hl7v2",status="processed"\} 6/);
    assert.match(text, /settle_hl7_messages\{connector="pm-hl7v2",status="failed"\} 1/);
    assert.match(text, /settle_hl7_messages\{connector="pm-hl7v2",status="received"\} 9/);
    assert.match(text, /settle_hl7_messages\{connector="other-feed",status="processed"\} 1/);
    assert.match(text, /settle_hl7_messages\{connector="other-feed",status="failed"\} 0/);
    const broken = new Registry();
    registerHl7Metrics(broken, { pool: { query: () => Promise.reject(new Error('down')) } as never });
    assert.match(await broken.metrics(), /# TYPE settle_hl7_messages gauge/);
  });

  it('retention: deletes only processed messages older than each connector retention, reports and audits it', async () => {
    const repo = new Hl7MessageRepository(db().pool);
    const lines: Array<Record<string, unknown>> = [];
    const logger = silentLogger();
    logger.info = ((message: string, meta: Record<string, unknown>) => {
      lines.push({ message, ...meta });
      return logger;
    }) as typeof logger.info;
    // pm-hl7v2 keeps 30 days: D0-D5 (processed, 40 days old) go; D6 (failed) and D7-D11 (received) stay.
    // other-feed keeps 365 days: X1 (200 days) stays. A connector no longer configured is never pruned.
    const connectors = [connector('pm-hl7v2', 30), connector('other-feed', 365)];
    const job = hl7RetentionJob({ db: db(), clock, logger, connectors });
    assert.equal(job.name, 'hl7.retention');
    const reports = await runHl7Retention({ db: db(), clock, logger, connectors });
    assert.deepEqual(reports.map((r) => [r.connector, r.count]), [['pm-hl7v2', 6], ['other-feed', 0]]);
    assert.deepEqual(reports[0].practices, [{ practiceId, count: 6 }]);
    assert.deepEqual(reports[0].cutoff, new Date('2026-05-02T12:00:00Z'));
    for (let i = 0; i < 6; i++) assert.equal(await repo.findById(practiceId, ids.get(`D${i}`)!), undefined);
    assert.equal((await repo.findById(practiceId, ids.get('D6')!))?.status, 'failed');
    assert.equal((await repo.findById(practiceId, ids.get('D7')!))?.status, 'received');
    assert.ok(await repo.findById(practiceId, ids.get('X1')!));
    assert.equal((await repo.findByControlId(otherPracticeId, 'pm-hl7v2', 'D0')).length, 1, 'received in the other practice: kept');
    const pruned = (await new AuditLog(db(), clock).list(practiceId)).filter((e) => e.action === 'hl7.message.prune');
    assert.equal(pruned.length, 1);
    assert.deepEqual(pruned[0].detail, { connector: 'pm-hl7v2', count: 6, retentionDays: 30, receivedBefore: '2026-05-02T12:00:00.000Z' });
    assert.equal(pruned[0].actor, 'system');
    assert.deepEqual(lines.filter((l) => l.message === 'hl7 retention').map((l) => [l.connector, l.pruned]), [['pm-hl7v2', 6], ['other-feed', 0]]);

    // Everything processed, a year later, in small batches: all of them go, the rest stays.
    for (const id of [ids.get('D7')!, ids.get('D8')!, ids.get('D9')!]) await repo.markProcessed(practiceId, id, clock.now());
    const later = new ManualClock(new Date(clock.now().getTime() + 400 * day));
    const admin = new Hl7MessageAdmin(db().pool);
    assert.deepEqual(await admin.pruneProcessed('pm-hl7v2', later.now(), 2), [{ practiceId, count: 3 }]);
    await job.run({}, { jobId: 'x', failures: 0 });
    assert.equal((await admin.search(practiceId, { connector: 'pm-hl7v2' }, { limit: 100 })).items.length, 6);
  });

  it('CLI: settle hl7 retention runs the job over the configured connectors', async () => {
    const configDir = mkdtempSync(join(tmpdir(), 'settle-hl7-cfg-'));
    mkdirSync(join(configDir, 'connectors'));
    writeFileSync(
      join(configDir, 'connectors', 'other-feed.json'),
      JSON.stringify({ ...connector('other-feed', 100), description: 'test feed', listen: { host: '127.0.0.1', port: 2575 } }),
    );
    let output = '';
    const program = new Command('settle').exitOverride();
    program.addCommand(
      hl7Command({
        withDatabase: (work) => work(db(), { configDir } as Settings),
        out: (text) => (output += text),
        exitError: (code, message) => Object.assign(new Error(message), { exitCode: code }),
        clock,
        logger: silentLogger(),
        practiceFor: practiceBySlug,
      }),
    );
    await program.parseAsync(['node', 'settle', 'hl7', 'retention']);
    assert.match(output, /other-feed: 1 processed messages received before 2026-02-21T12:00:00.000Z deleted \(retention 100 days\)/);
  });
});
