/**
 * Outreach email end to end: nodemailer talks to a real SMTP server started in the test (`smtp-server`), the
 * unsubscribe link is followed over real HTTP against the real API, and the opt-out it records is found by
 * planning's guards (by blind index) so the next email is suppressed.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, it } from 'node:test';
import { SMTPServer } from 'smtp-server';
import { createApi } from '../../src/api/app.ts';
import { EngineMetrics } from '../../src/api/metrics.ts';
import { silentLogger } from '../../src/config/logger.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import type { LedgerLine } from '../../src/domain/ledger.ts';
import { parseMoney } from '../../src/domain/money.ts';
import type { Language } from '../../src/domain/outreach.ts';
import { loadMappings } from '../../src/mapping/load.ts';
import type { OutboundMessage } from '../../src/outreach/channel.ts';
import { classifySmtpError, deliveryBounceBook, EmailChannel, emailChannelFromEnv } from '../../src/outreach/email-channel.ts';
import { planOutreach } from '../../src/outreach/plan.ts';
import { defaultTemplates, renderMessage, selectTemplate } from '../../src/outreach/templates.ts';
import { signUnsubscribeToken, unsubscribeKey, unsubscribeUrlFor, verifyUnsubscribeToken } from '../../src/outreach/unsubscribe-token.ts';
import { withTransaction } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { OutreachRepository } from '../../src/store/outreach.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { ROOT } from '../support/cli.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { balance as outreachBalance, defaultPolicy } from '../domain/outreach-fixtures.ts';

const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
// Tuesday 2026-04-07 10:00 in Chicago: inside sending hours.
const NOW = new Date('2026-04-07T15:00:00Z');

/* ---------------------------------------------------------------- a real SMTP server */

interface Received {
  rcptTo: string[];
  raw: string;
}

/** An SMTP server on a loopback port: 550 for `bounce…` recipients, 451 for `busy…`, accepts the rest. */
async function startSmtp(): Promise<{ url: string; received: Received[]; close(): Promise<void> }> {
  const received: Received[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onRcptTo(address, _session, callback) {
      if (address.address.startsWith('bounce')) {
        return callback(Object.assign(new Error(`5.1.1 <${address.address}>: Recipient address rejected: User unknown`), { responseCode: 550 }));
      }
      if (address.address.startsWith('busy')) {
        return callback(Object.assign(new Error(`4.7.1 <${address.address}>: Greylisted, try again later`), { responseCode: 451 }));
      }
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        received.push({ rcptTo: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString('utf8') });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.server.address() as AddressInfo).port;
  return { url: `smtp://127.0.0.1:${port}`, received, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/* ---------------------------------------------------------------- reading what arrived */

const unfold = (headers: string) => headers.replace(/\r?\n[ \t]+/g, ' ');
const header = (headers: string, name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'im').exec(unfold(headers))?.[1]?.trim();
const decodeQp = (s: string) => Buffer.from(s.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8');

/** Splits a message into its headers and decoded leaf parts (text/plain, text/html). */
function parseMail(raw: string): { headers: string; parts: Map<string, string> } {
  const split = raw.indexOf('\r\n\r\n');
  const headers = raw.slice(0, split);
  const parts = new Map<string, string>();
  const walk = (head: string, body: string) => {
    const type = header(head, 'Content-Type') ?? 'text/plain';
    const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1];
    if (boundary) {
      for (const chunk of body.split(`--${boundary}`).slice(1)) {
        if (chunk.startsWith('--')) break;
        const at = chunk.indexOf('\r\n\r\n');
        walk(chunk.slice(0, at).replace(/^\r\n/, ''), chunk.slice(at + 4));
      }
      return;
    }
    const encoding = (header(head, 'Content-Transfer-Encoding') ?? '7bit').toLowerCase();
    const decoded = encoding === 'quoted-printable' ? decodeQp(body) : encoding === 'base64' ? Buffer.from(body, 'base64').toString('utf8') : body;
    parts.set(type.split(';')[0]!.trim().toLowerCase(), decoded);
  };
  walk(headers, raw.slice(split + 4));
  return { headers: unfold(headers), parts };
}

/* ---------------------------------------------------------------- the suite */

describeOnEachDatabase('email through SMTP, unsubscribe and bounces', (db) => {
  const clock = new ManualClock(NOW);
  let smtp: Awaited<ReturnType<typeof startSmtp>>;
  let http: Server;
  let apiUrl = '';
  let practiceId = '';
  let balanceId = '';
  let channel: EmailChannel;

  /** Renders the day-0 email for an address and puts it in the outbox, as planning does. */
  const outboxEmail = async (to: string, language: Language = 'en'): Promise<OutboundMessage> => {
    const rendered = renderMessage(selectTemplate(defaultTemplates, 'statement-ready', 'email', language)!, {
      practiceName: 'Riverside Family Medicine', practicePhone: '(555) 010-0199', firstName: 'Maria', amountDueCents: 15000,
      statementDate: '2026-04-06', payLink: 'https://pay.example.org/p/7Hq2xK9m',
    });
    const outboxId = await new OutreachRepository(db().pool, cipher, clock).addToOutbox({
      practiceId, balanceId, channel: 'email', recipient: to, subject: rendered.subject ?? null, body: rendered.text, html: rendered.html ?? null,
      language: rendered.language, template: rendered.template,
    });
    return { outboxId, practiceId, balanceId, channel: 'email', to, subject: rendered.subject ?? null, body: rendered.text, html: rendered.html ?? null, language };
  };
  const emailOptOuts = async (address: string) =>
    (await new OutreachRepository(db().pool, cipher, clock).contactRules(practiceId, { email: address })).optOuts.filter((o) => o.channel === 'email');

  before(async () => {
    smtp = await startSmtp();
    practiceId = (await new PracticeRepository(db().pool).create({ slug: 'email-test', name: 'Riverside Family Medicine', timeZone: 'America/Chicago', phone: '(555) 010-0199' })).id;
    const ledger = new LedgerRepository(db().pool, cipher, clock);
    const patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: 'E1' }, { name: { given: ['Maria'], family: 'Gonzalez' }, email: 'maria@example.com' });
    const guarantorId = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
    const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: 'A-E1' }, patientId });
    const charge: LedgerLine = { lineKey: 'c1', kind: 'charge', amount: parseMoney('150.00', 'USD'), serviceDate: '2026-03-20', payer: 'patient', serviceCode: null, description: null };
    balanceId = (await withTransaction(db(), (tx) => ledger.on(tx).postSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 'inv-E1', versionId: '1', lastUpdated: null }, { accountId, guarantorId, patientId }, [charge]))).balanceIds[0]!;

    const { app } = createApi({
      configDir: ROOT, cipher, mappings: loadMappings(ROOT), db: db(), clock, logger: silentLogger(), metrics: new EngineMetrics(), version: 'test',
      readiness: { database: async () => ({ ok: true, detail: '' }), migrations: async () => ({ ok: true, detail: '' }), scheduler: () => ({ ok: true, detail: '' }) },
    });
    http = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => http.once('listening', resolve));
    apiUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    channel = emailChannelFromEnv(
      { SETTLE_SMTP_URL: smtp.url, SETTLE_EMAIL_FROM: 'Riverside Billing <billing@riverside.example>', SETTLE_EMAIL_UNSUBSCRIBE_MAILTO: 'unsubscribe@riverside.example' },
      { db: db(), cipher, clock, publicUrl: apiUrl },
    )!;
  });

  after(async () => {
    await channel?.close();
    await smtp?.close();
    http?.closeAllConnections();
    await new Promise((resolve) => http?.close(resolve));
  });

  it('is not configured without SETTLE_SMTP_URL, and needs a sender with it', () => {
    assert.equal(emailChannelFromEnv({}, { db: db(), cipher, clock }), undefined);
    assert.throws(() => emailChannelFromEnv({ SETTLE_SMTP_URL: smtp.url }, { db: db(), cipher, clock }), /SETTLE_EMAIL_FROM is required/);
  });

  it('delivers a text and an HTML part, List-Unsubscribe headers and an unsubscribe link in the footer', async () => {
    const message = await outboxEmail('maria@example.com');
    const result = await channel.send(message);
    assert.equal(result.status, 'sent');
    assert.ok(result.status === 'sent' && /@/.test(result.providerMessageId), 'the Message-ID');
    const mail = smtp.received.at(-1)!;
    assert.deepEqual(mail.rcptTo, ['maria@example.com']);
    const { headers, parts } = parseMail(mail.raw);
    assert.match(header(headers, 'Subject')!, /Your statement from Riverside Family Medicine is ready/);
    assert.match(header(headers, 'From')!, /billing@riverside\.example/);
    const listUnsubscribe = header(headers, 'List-Unsubscribe')!;
    const url = /<(http[^>]+)>/.exec(listUnsubscribe)?.[1];
    assert.ok(url?.startsWith(`${apiUrl}/u/`), `an https unsubscribe URL on the engine (${listUnsubscribe})`);
    assert.match(listUnsubscribe, /<mailto:unsubscribe@riverside\.example\?subject=unsubscribe>/);
    assert.equal(header(headers, 'List-Unsubscribe-Post'), 'List-Unsubscribe=One-Click');
    assert.doesNotMatch(url!, /maria|example\.com/i, 'no address in the URL');
    const text = parts.get('text/plain')!;
    const html = parts.get('text/html')!;
    assert.match(text, /Hi Maria,/);
    assert.match(text, /\$150\.00/);
    assert.ok(text.includes(`To stop these emails, visit: ${url}`), 'the text footer carries the link');
    assert.match(html, /<p>Hi Maria,<\/p>/);
    assert.match(html, /<a href="https:\/\/pay\.example\.org\/p\/7Hq2xK9m">/);
    assert.ok(html.includes(`<a href="${url}">To stop these emails, unsubscribe here</a>`), 'the HTML footer carries the link');
  });

  it('the unsubscribe link works over HTTP: GET asks and changes nothing, POST records the opt-out, and planning suppresses the next email', async () => {
    const message = await outboxEmail('maria@example.com');
    const url = channel.unsubscribeUrl(message)!;
    const policy = defaultPolicy();
    const plan = async () => {
      const rules = await new OutreachRepository(db().pool, cipher, clock).contactRules(practiceId, { email: 'maria@example.com' });
      const input = outreachBalance({ balanceId, firstStatementDate: '2026-04-07', consents: rules.consents, optOuts: rules.optOuts, destinations: { email: 'maria@example.com', letter: false }, timeZone: 'America/Chicago' });
      return planOutreach(policy, { ...input, consents: [{ channel: 'email', source: 'intake-form', at: new Date('2026-04-01T12:00:00Z') }] }, clock.now(), { practiceTimeZone: 'America/Chicago' })
        .sends.find((s) => s.channel === 'email')!.record.decision;
    };
    assert.equal((await plan()).verdict, 'allow', 'before unsubscribing, the day-0 email is allowed');

    const page = await fetch(url);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type')!, /text\/html/);
    const body = await page.text();
    assert.match(body, /Stop billing emails from Riverside Family Medicine\?/);
    assert.match(body, /<form method="post"/);
    assert.equal((await emailOptOuts('maria@example.com')).length, 0, 'GET changes nothing (link scanners)');

    const spanish = await (await fetch(`${url}?lang=es`)).text();
    assert.match(spanish, /¿Dejar de recibir correos de facturación de Riverside Family Medicine\?/);

    const confirmed = await fetch(url, { method: 'POST' });
    assert.equal(confirmed.status, 200);
    assert.match(await confirmed.text(), /You are unsubscribed/);
    const optOuts = await emailOptOuts('maria@example.com');
    assert.equal(optOuts.length, 1);
    assert.equal(optOuts[0]!.source, 'email:unsubscribe');
    const raw = JSON.stringify((await db().pool.query('SELECT * FROM opt_outs')).rows);
    assert.doesNotMatch(raw, /maria@/i, 'the address is stored only encrypted and as a blind index');

    const decision = await plan();
    assert.equal(decision.verdict, 'suppress');
    assert.ok(decision.verdict === 'suppress' && decision.rule === 'opt-out');
    assert.match(decision.verdict === 'suppress' ? decision.reason : '', /email:unsubscribe/);
  });

  it('a one-click POST from a mail provider unsubscribes (any case of the address), and repeating it changes nothing', async () => {
    const message = await outboxEmail('Jose@Example.net', 'es');
    const url = channel.unsubscribeUrl(message)!;
    for (let i = 0; i < 2; i++) {
      const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
      assert.equal(response.status, 200);
      assert.match(await response.text(), /Su suscripción fue cancelada/, 'the page is in the email language');
    }
    assert.equal((await emailOptOuts('jose@example.net')).length, 1);
  });

  it('refuses a forged, altered or unknown token with a 404 page', async () => {
    const message = await outboxEmail('ana@example.org');
    const token = /\/u\/(.+)$/.exec(channel.unsubscribeUrl(message)!)![1]!;
    assert.deepEqual(verifyUnsubscribeToken(unsubscribeKey(cipher), token), { outboxId: message.outboxId });
    const altered = `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`;
    const otherKey = signUnsubscribeToken(randomBytes(32), message.outboxId);
    const unknownRow = signUnsubscribeToken(unsubscribeKey(cipher), '00000000-0000-4000-8000-000000000000');
    for (const bad of [altered, otherKey, unknownRow, 'short']) {
      const response = await fetch(`${apiUrl}/u/${bad}`, { method: 'POST' });
      assert.equal(response.status, 404, bad);
      assert.match(await response.text(), /This link is not valid/);
    }
    assert.equal((await emailOptOuts('ana@example.org')).length, 0);
  });

  it('a 550 on RCPT TO is a hard bounce: undeliverable, recorded, and the address is not emailed again', async () => {
    const before = smtp.received.length;
    const message = await outboxEmail('bounce.maria@example.com');
    const result = await channel.send(message);
    assert.equal(result.status, 'failed');
    assert.ok(result.status === 'failed');
    assert.equal(result.code, '550');
    assert.equal(result.undeliverable, true);
    assert.equal(result.transient, false);
    assert.match(result.reason, /hard bounce.*550 5\.1\.1/);
    assert.doesNotMatch(result.reason, /bounce\.maria|example\.com/, 'the server reply quoting the address is not passed on');
    assert.equal(await deliveryBounceBook(db(), cipher, clock).isBounced(practiceId, 'Bounce.Maria@example.com'), true, 'recorded by blind index');
    const raw = JSON.stringify((await db().pool.query('SELECT * FROM undeliverable_contacts')).rows);
    assert.doesNotMatch(raw, /bounce\.maria/i);

    let connections = 0;
    const again = await new EmailChannel({
      smtp: { sendMail: async () => { connections++; return {}; }, close() {} } as never,
      from: 'billing@riverside.example', bounces: deliveryBounceBook(db(), cipher, clock),
    }).send(await outboxEmail('bounce.maria@example.com'));
    assert.ok(again.status === 'failed' && again.undeliverable && again.code === 'bounced');
    assert.equal(connections, 0, 'the mail server is not contacted for a bounced address');
    assert.equal(smtp.received.length, before, 'nothing was delivered');
  });

  it('a 451 is transient: retried later, nothing recorded', async () => {
    const result = await channel.send(await outboxEmail('busy.jo@example.com'));
    assert.ok(result.status === 'failed');
    assert.equal(result.code, '451');
    assert.equal(result.transient, true);
    assert.notEqual(result.undeliverable, true);
    assert.doesNotMatch(result.reason, /busy\.jo/);
    assert.equal(await deliveryBounceBook(db(), cipher, clock).isBounced(practiceId, 'busy.jo@example.com'), false);
  });

  it('an unreachable mail server is transient; a malformed address is undeliverable without a connection', async () => {
    const closed = await startSmtp();
    await closed.close();
    const down = new EmailChannel({ smtp: closed.url, from: 'billing@riverside.example' });
    const result = await down.send(await outboxEmail('maria@example.com'));
    await down.close();
    assert.ok(result.status === 'failed');
    assert.equal(result.transient, true);
    assert.match(result.code, /ECONN|ESOCKET/);
    const malformed = await channel.send({ ...(await outboxEmail('maria@example.com')), to: 'not an email' });
    assert.ok(malformed.status === 'failed' && malformed.undeliverable && malformed.code === 'invalid-address');
  });

  it('classifies refusals of credentials or content without blaming the address', () => {
    const auth = classifySmtpError({ code: 'EAUTH', responseCode: 535, command: 'AUTH PLAIN', response: '535 5.7.8 Authentication failed' });
    assert.ok(auth.transient && !auth.undeliverable);
    const spam = classifySmtpError({ code: 'EMESSAGE', responseCode: 554, command: 'DATA', response: '554 5.7.1 Message rejected as spam' });
    assert.ok(!spam.transient && !spam.undeliverable);
    assert.equal(unsubscribeUrlFor(cipher, 'https://settle.example.org/', '00000000-0000-4000-8000-000000000001').length, 'https://settle.example.org/u/'.length + 39);
  });
});
