/**
 * Bounces after sending, end to end on both databases: an email is planned and delivered through a real SMTP
 * server (`smtp-server`), the relay's bounce (Postfix, Exim, Exchange samples carrying the real Message-ID) is
 * posted to the real API, and the address, the outbox row, the next channel and the balance timeline show it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, it } from 'node:test';
import { SMTPServer } from 'smtp-server';
import { createApi } from '../../src/api/app.ts';
import { EngineMetrics } from '../../src/api/metrics.ts';
import { createLogger } from '../../src/config/logger.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { deliverDue } from '../../src/outreach/deliver.ts';
import { secretMatches } from '../../src/outreach/email-bounce-routes.ts';
import { EmailChannel, emailChannelFromEnv } from '../../src/outreach/email-channel.ts';
import { loadMappings } from '../../src/mapping/load.ts';
import { ApiKeyRepository } from '../../src/store/api-keys.ts';
import { OutreachDeliveryStore } from '../../src/store/outreach-delivery.ts';
import { OutreachRepository } from '../../src/store/outreach.ts';
import { ROOT, runCli } from '../support/cli.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { attemptsOf, cipher, createPerson, createPractice, DAY0_10H, outboxOf, plan, type Person } from './twilio-fixtures.ts';

const SECRET = randomBytes(24).toString('base64url');
const SAMPLE_ID = '<3f1c2a9e-7b4d-4e0a-9c1f-2d8e6b5a4c3f@riverside.example>';
const SAMPLE_ADDRESS = 'maria.gonzalez@example.com';

/** A bounce sample about the message Settle really sent (its Message-ID and address). */
const bounceOf = (name: string, messageId: string, address: string) =>
  readFileSync(new URL(`./fixtures/${name}.eml`, import.meta.url), 'utf8').replaceAll(SAMPLE_ID, messageId).replaceAll(SAMPLE_ADDRESS, address);

/** An SMTP server on loopback that accepts everything (the relay bounces later). */
async function startSmtp(): Promise<{ url: string; received: string[][]; close(): Promise<void> }> {
  const received: string[][] = [];
  const server = new SMTPServer({
    authOptional: true, disabledCommands: ['STARTTLS', 'AUTH'], logger: false,
    onData(stream, session, callback) {
      stream.on('data', () => {});
      stream.on('end', () => {
        received.push(session.envelope.rcptTo.map((r) => r.address));
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `smtp://127.0.0.1:${(server.server.address() as AddressInfo).port}`, received, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describeOnEachDatabase('email bounces after sending (DSN webhook)', (db, engine) => {
  const clock = new ManualClock(DAY0_10H);
  const logStream = new PassThrough();
  let logText = '';
  logStream.on('data', (chunk: Buffer) => (logText += chunk.toString('utf8')));
  const logger = createLogger({ level: 'info', stream: logStream });
  let smtp: Awaited<ReturnType<typeof startSmtp>>;
  let http: Server;
  let apiUrl = '';
  let staffKey = '';
  let practiceId = '';
  let maria: Person;
  let channel: EmailChannel;

  const post = (body: string, init: { secret?: string | null; query?: string; type?: string } = {}) =>
    fetch(`${apiUrl}/webhooks/email/bounces${init.query ?? ''}`, {
      method: 'POST',
      headers: { 'content-type': init.type ?? 'message/rfc822', ...(init.secret === null ? {} : { 'x-settle-bounce-secret': init.secret ?? SECRET }) },
      body,
    });
  const isUndeliverable = (address: string) => new OutreachDeliveryStore(db().pool, cipher, clock).isUndeliverable(practiceId, 'email', address);
  const undeliverableCount = async () => Number((await db().pool.query<{ n: string }>('SELECT count(*) AS n FROM undeliverable_contacts')).rows[0]!.n);

  /** An email sent now through the real SMTP server (outbox row `sent` under its Message-ID). */
  const sendEmail = async (to: string) => {
    const outboxId = await new OutreachRepository(db().pool, cipher, clock).addToOutbox({
      practiceId, balanceId: maria.balanceId, channel: 'email', recipient: to, subject: 'Your statement from Riverside Family Medicine is ready',
      body: 'Hi Maria, your statement is ready.', html: null, language: 'en', template: 'statement-ready',
    });
    const result = await channel.send({ outboxId, practiceId, balanceId: maria.balanceId, channel: 'email', to, subject: 'Your statement', body: 'Hi Maria', html: null, language: 'en' });
    assert.ok(result.status === 'sent');
    await new OutreachDeliveryStore(db().pool, cipher, clock).markSent(outboxId, result.providerMessageId);
    return { outboxId, messageId: result.providerMessageId };
  };
  const stateOf = async (outboxId: string) => (await new OutreachDeliveryStore(db().pool, cipher, clock).get(outboxId))!;

  before(async () => {
    smtp = await startSmtp();
    practiceId = await createPractice(db(), 'bounce-test');
    // An email and a postal address, no phone: when the email bounces, a letter is next.
    maria = await createPerson(db(), clock, practiceId, 'B1', {
      name: { given: ['Maria'], family: 'Gonzalez' }, email: 'maria.gonzalez@example.com', language: 'en',
      address: { lines: ['12 Elm St'], city: 'Springfield', state: 'IL', postalCode: '62704', country: 'US' },
    });
    staffKey = (await new ApiKeyRepository(db().pool, clock).create(practiceId, 'staff key', 'staff')).secret;
    const { app } = createApi({
      configDir: ROOT, cipher, mappings: loadMappings(ROOT), db: db(), clock, logger, metrics: new EngineMetrics(), version: 'test', emailBounceSecret: SECRET,
      readiness: { database: async () => ({ ok: true, detail: '' }), migrations: async () => ({ ok: true, detail: '' }), scheduler: () => ({ ok: true, detail: '' }) },
    });
    http = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => http.once('listening', resolve));
    apiUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    channel = emailChannelFromEnv({ SETTLE_SMTP_URL: smtp.url, SETTLE_EMAIL_FROM: 'Riverside Billing <billing@riverside.example>' }, { db: db(), cipher, clock, publicUrl: apiUrl })!;
  });

  after(async () => {
    await channel?.close();
    await smtp?.close();
    http?.closeAllConnections();
    await new Promise((resolve) => http?.close(resolve));
  });

  it('compares secrets in constant time whatever their lengths', () => {
    assert.equal(secretMatches(SECRET, SECRET), true);
    assert.equal(secretMatches(`${SECRET}x`, SECRET), false);
    assert.equal(secretMatches('', SECRET), false);
  });

  it('refuses a bounce without the secret (401) or with a wrong one (403), and stores nothing', async () => {
    const { outboxId, messageId } = await sendEmail('wrong.secret@example.com');
    const bounce = bounceOf('dsn-postfix', messageId, 'wrong.secret@example.com');
    const missing = await post(bounce, { secret: null });
    assert.equal(missing.status, 401);
    assert.equal(((await missing.json()) as { code: string }).code, 'missing_secret');
    for (const response of [await post(bounce, { secret: 'x'.repeat(32) }), await post(bounce, { secret: null, query: '?token=not-the-secret' })]) {
      assert.equal(response.status, 403);
      assert.match(response.headers.get('content-type')!, /application\/problem\+json/);
      assert.equal(((await response.json()) as { code: string }).code, 'invalid_secret');
    }
    assert.equal((await stateOf(outboxId)).state, 'sent');
    assert.equal(await isUndeliverable('wrong.secret@example.com'), false);
  });

  it('without SETTLE_EMAIL_BOUNCE_SECRET the webhook is not configured (500) and stores nothing', async () => {
    const { app } = createApi({
      configDir: ROOT, cipher, mappings: loadMappings(ROOT), db: db(), clock, logger, metrics: new EngineMetrics(), version: 'test',
      readiness: { database: async () => ({ ok: true, detail: '' }), migrations: async () => ({ ok: true, detail: '' }), scheduler: () => ({ ok: true, detail: '' }) },
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      const before = await undeliverableCount();
      const response = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/email/bounces`, {
        method: 'POST', headers: { 'content-type': 'message/rfc822', 'x-settle-bounce-secret': SECRET }, body: bounceOf('dsn-postfix', '<x@y.example>', 'maria.gonzalez@example.com'),
      });
      assert.equal(response.status, 500);
      assert.equal(((await response.json()) as { code: string }).code, 'webhook_not_configured');
      assert.equal(await undeliverableCount(), before);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('a body that is not a DSN is a 400 naming what is missing; a wrong media type is a 415; nothing stored', async () => {
    const before = await undeliverableCount();
    const response = await post(readFileSync(new URL('./fixtures/not-a-dsn.eml', import.meta.url), 'utf8'), { type: 'text/plain' });
    assert.equal(response.status, 400);
    const problem = (await response.json()) as { code: string; detail: string; errors: { path: string }[] };
    assert.equal(problem.code, 'not_a_dsn');
    assert.match(problem.detail, /message\/delivery-status/);
    assert.deepEqual(problem.errors.map((e) => e.path), ['message/delivery-status']);
    const json = await fetch(`${apiUrl}/webhooks/email/bounces`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-settle-bounce-secret': SECRET }, body: '{}' });
    assert.equal(json.status, 415);
    assert.equal(await undeliverableCount(), before);
  });

  it('a delay warning (4.7.1, delayed) changes nothing', async () => {
    const { outboxId, messageId } = await sendEmail('slow.inbox@example.com');
    const response = await post(bounceOf('dsn-postfix-delayed', messageId, 'slow.inbox@example.com'));
    assert.equal(response.status, 200);
    const body = (await response.json()) as { matchedMessage: boolean; recipients: { outcome: string; status: string }[] };
    assert.equal(body.matchedMessage, true);
    assert.deepEqual(body.recipients.map((r) => [r.status, r.outcome]), [['4.7.1', 'ignored']]);
    assert.equal((await stateOf(outboxId)).state, 'sent');
    assert.equal(await isUndeliverable('slow.inbox@example.com'), false);
  });

  for (const [sample, status, auth] of [['dsn-exim', '5.0.0', 'header'], ['dsn-exchange', '5.1.10', 'token']] as const) {
    it(`${sample}: the row it names becomes undeliverable and the address is not emailed again (secret as ${auth})`, async () => {
      const address = `${sample}.user@example.net`;
      const { outboxId, messageId } = await sendEmail(address);
      const bounce = bounceOf(sample, messageId, address);
      const response = auth === 'header' ? await post(bounce) : await post(bounce, { secret: null, query: `?token=${SECRET}`, type: 'text/plain' });
      assert.equal(response.status, 200);
      const body = (await response.json()) as { recipients: { outcome: string; status: string; outboxId: string }[] };
      assert.deepEqual(body.recipients.map((r) => [r.status, r.outcome, r.outboxId]), [[status, 'undeliverable', outboxId]]);
      assert.doesNotMatch(JSON.stringify(body), /@example/, 'the answer carries no address');
      const row = await stateOf(outboxId);
      assert.equal(row.state, 'undeliverable');
      assert.equal(row.lastErrorCode, status);
      assert.equal(await isUndeliverable(address.toUpperCase()), true, 'recorded by blind index');
      const again = await channel.send({ outboxId, practiceId, balanceId: maria.balanceId, channel: 'email', to: address, subject: 's', body: 'b', html: null, language: 'en' });
      assert.ok(again.status === 'failed' && again.code === 'bounced' && again.undeliverable);
      // Posting the same bounce again changes nothing.
      const replay = (await (await post(bounce)).json()) as { recipients: { outcome: string }[] };
      assert.deepEqual(replay.recipients.map((r) => r.outcome), ['unchanged']);
    });
  }

  it('a bounce for a message Settle does not know marks the address in the practice that has it as a contact', async () => {
    await createPerson(db(), clock, practiceId, 'B2', { name: { given: ['Jo'] }, email: 'jo.contact@example.org' });
    const response = await post(bounceOf('dsn-postfix', '<not-ours@elsewhere.example>', 'jo.contact@example.org'));
    const body = (await response.json()) as { matchedMessage: boolean; recipients: { outcome: string; outboxId: string | null }[] };
    assert.equal(body.matchedMessage, false);
    assert.deepEqual(body.recipients.map((r) => [r.outcome, r.outboxId]), [['address-recorded', null]]);
    assert.equal(await isUndeliverable('jo.contact@example.org'), true);
    const stranger = (await (await post(bounceOf('dsn-postfix', '<not-ours@elsewhere.example>', 'nobody@example.org'))).json()) as { recipients: { outcome: string }[] };
    assert.deepEqual(stranger.recipients.map((r) => r.outcome), ['unknown-recipient']);
  });

  it('settle email bounces FILE... applies saved bounces and refuses files that are not DSNs', { skip: engine === 'pglite' ? 'the command line reaches only a PostgreSQL server database here' : false }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'settle-bounces-'));
    try {
      const bounce = join(dir, 'bounce.eml');
      const notDsn = join(dir, 'auto-reply.eml');
      writeFileSync(bounce, bounceOf('dsn-exchange', '<not-ours@elsewhere.example>', 'nobody.known@example.org'));
      writeFileSync(notDsn, readFileSync(new URL('./fixtures/not-a-dsn.eml', import.meta.url)));
      const env = {
        DATABASE_URL: String(db().connection.connectionString), SETTLE_DATA_DIR: dir, SETTLE_CONFIG_DIR: undefined,
        SETTLE_PAY_LINK_KEYS: `1:${Buffer.alloc(32, 9).toString('base64url')}`,
        SETTLE_ENCRYPTION_KEYS: `k1:${randomBytes(32).toString('base64')}`, SETTLE_BLIND_INDEX_KEY: randomBytes(32).toString('base64'),
      };
      const ok = await runCli(['email', 'bounces', '--json', bounce], env);
      assert.equal(ok.code, 0, ok.stderr);
      const line = JSON.parse(ok.stdout.trim()) as { file: string; matchedMessage: boolean; recipients: { status: string; outcome: string }[] };
      assert.equal(line.matchedMessage, false);
      assert.deepEqual(line.recipients.map((r) => [r.status, r.outcome]), [['5.1.10', 'unknown-recipient']]);
      assert.doesNotMatch(ok.stdout + ok.stderr, /nobody\.known/, 'no address printed');
      const mixed = await runCli(['email', 'bounces', bounce, notDsn], env);
      assert.equal(mixed.code, 1);
      assert.match(mixed.stdout, /auto-reply\.eml: not a DSN \(.*message\/delivery-status/);
      assert.match(mixed.stderr, /1 of 2 file\(s\) were not delivery status notifications/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('end to end: planned, delivered over SMTP, bounced by the relay → address and row undeliverable, a letter queued, the timeline shows it', async () => {
    await plan(db(), clock, practiceId);
    const delivered = await deliverDue({ db: db(), cipher, clock, logger, channels: { email: channel }, random: () => 0.5 });
    assert.ok(delivered.sent >= 1);
    assert.ok(smtp.received.some((rcpt) => rcpt.includes('maria.gonzalez@example.com')), 'the email reached the SMTP server');
    const planned = (await attemptsOf(db(), maria.balanceId)).find((a) => a.channel === 'email' && a.outbox_id !== null);
    assert.ok(planned, 'planning made the day-0 email attempt');
    const email = (await outboxOf(db(), maria.balanceId)).find((r) => r.id === planned.outbox_id)!;
    assert.equal(email.state, 'sent');
    assert.match(email.provider_message_id!, /^<.+@.+>$/, 'the Message-ID Settle sent is kept');

    logText = '';
    const response = await post(bounceOf('dsn-postfix', email.provider_message_id!, 'maria.gonzalez@example.com'));
    assert.equal(response.status, 200);
    const body = (await response.json()) as { recipients: { outcome: string; outboxId: string; fallbackOutboxId?: string }[] };
    assert.equal(body.recipients[0]!.outcome, 'undeliverable');
    assert.equal(body.recipients[0]!.outboxId, email.id);
    assert.ok(body.recipients[0]!.fallbackOutboxId, 'the next channel was queued');

    assert.equal(await isUndeliverable('maria.gonzalez@example.com'), true);
    const rows = await outboxOf(db(), maria.balanceId);
    assert.equal(rows.find((r) => r.id === email.id)!.state, 'undeliverable');
    const letter = rows.find((r) => r.id === body.recipients[0]!.fallbackOutboxId)!;
    assert.equal(letter.channel, 'letter');
    assert.equal(letter.state, 'queued');
    assert.equal(letter.fallback_of, email.id);

    const timeline = await fetch(`${apiUrl}/balances/${maria.balanceId}/timeline`, { headers: { authorization: `Bearer ${staffKey}` } });
    assert.equal(timeline.status, 200);
    const events = ((await timeline.json()) as { events: { channel: string; status: string; reason: string | null; outboxId: string | null }[] }).events;
    const bounced = events.find((e) => e.outboxId === email.id)!;
    assert.equal(bounced.status, 'failed');
    assert.match(bounced.reason!, /5\.1\.1.*returned the message after accepting it/);
    const next = events.find((e) => e.outboxId === letter.id)!;
    assert.equal(next.channel, 'letter');
    assert.match(next.reason!, /next channel after email was undeliverable \(5\.1\.1\)/);

    assert.match(logText, /email\.bounce/);
    assert.doesNotMatch(logText, /maria\.gonzalez|example\.com/i, 'the log carries no address');
    const raw = JSON.stringify((await db().pool.query('SELECT * FROM undeliverable_contacts')).rows);
    assert.doesNotMatch(raw, /maria/i, 'stored as a blind index only');
  });
});
