import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, it } from 'node:test';
import { SMTPServer } from 'smtp-server';
import { ManualClock } from '../../src/domain/clock.ts';
import { buildChannels, type ChannelMap } from '../../src/outreach/channels.ts';
import { deliverDue } from '../../src/outreach/deliver.ts';
import { OutreachRepository } from '../../src/store/outreach.ts';
import { StaffTaskRepository } from '../../src/store/staff-tasks.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { startTwilioFake, type TwilioFake } from '../support/twilio-fake/server.ts';
import { twilioSpecMissing } from '../support/twilio-fake/spec.ts';
import { attemptsOf, cipher, createPerson, createPractice, DAY0_10H, DAY7_11H, logger, outboxOf, payLinkFor, plan, PUBLIC_URL, serveWebhooks, type Person } from './twilio-fixtures.ts';

/** A real SMTP server on loopback, recording what it accepts. */
async function startSmtp(): Promise<{ url: string; received: { to: string[]; raw: string }[]; close(): Promise<void> }> {
  const received: { to: string[]; raw: string }[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        received.push({ to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString('utf8') });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.server.address() as AddressInfo).port;
  return { url: `smtp://127.0.0.1:${port}`, received, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

const INBOUND = `${PUBLIC_URL}/webhooks/twilio/inbound`;
const missing = twilioSpecMissing();
if (missing) {
  it('Twilio webhooks', { skip: missing }, () => {});
} else {
  describeOnEachDatabase('Twilio webhooks: status callbacks and replies, signed, end to end with the SDK and the fake', (db) => {
    const clock = new ManualClock(DAY0_10H);
    let fake: TwilioFake;
    let smtp: Awaited<ReturnType<typeof startSmtp>>;
    let webhooks: Awaited<ReturnType<typeof serveWebhooks>>;
    let channels: ChannelMap;
    let practiceId = '';
    let maria: Person;
    let bob: Person;
    let wakes = 0;
    const deliver = () => deliverDue({ db: db(), cipher, clock, logger, channels, payLinkFor: payLinkFor(db(), clock) });
    const smsOf = async (person: Person, state?: string) => (await outboxOf(db(), person.balanceId)).filter((r) => r.channel === 'sms' && (!state || r.state === state));

    before(async () => {
      fake = await startTwilioFake();
      smtp = await startSmtp();
      practiceId = await createPractice(db(), 'twilio-webhooks');
      maria = await createPerson(db(), clock, practiceId, 'P1', {
        name: { given: ['Maria'], family: 'Gonzalez' }, phones: ['(617) 555-0134'], email: 'maria@example.com', language: 'en',
      });
      bob = await createPerson(db(), clock, practiceId, 'P2', { name: { given: ['Bob'] }, phones: ['312-555-0188'], email: 'bob@example.net' }, { amount: '80.00' });
      channels = buildChannels(
        {
          publicUrl: PUBLIC_URL,
          twilio: { accountSid: fake.accountSid, authToken: fake.authToken, messagingServiceSid: fake.messagingServiceSid },
          env: { SETTLE_SMTP_URL: smtp.url, SETTLE_EMAIL_FROM: 'Riverside Billing <billing@riverside.example>' },
        },
        { db: db(), cipher, clock },
        { twilioHttpClient: fake.httpClient() },
      );
      webhooks = await serveWebhooks({
        db: db(), cipher, clock, logger, authToken: fake.authToken, publicUrl: PUBLIC_URL, payLinkFor: payLinkFor(db(), clock), wakeDelivery: () => void wakes++,
      });
      fake.deliverTo = (url) => url.replace(PUBLIC_URL, webhooks.url);
    });
    after(async () => {
      await webhooks.close();
      await fake.close();
      await smtp.close();
    });

    it('day 0: planned texts and emails are delivered through Twilio and SMTP', async () => {
      await plan(db(), clock, practiceId);
      const result = await deliver();
      assert.equal(result.sent, 4, JSON.stringify(result));
      assert.equal(fake.messages.length, 2);
      assert.equal(smtp.received.length, 2);
      assert.deepEqual(fake.requests.flatMap((r) => r.problems), []);
    });

    it('a status callback with a tampered signature is refused with 403 and changes nothing', async () => {
      const [sms] = await smsOf(maria);
      const answer = await fake.postStatus(sms!.provider_message_id!, 'undelivered', '30006', { tamper: true });
      assert.equal(answer.status, 403);
      assert.match(answer.body, /invalid_signature/);
      assert.equal((await smsOf(maria))[0]!.state, 'sent');
      assert.equal((await attemptsOf(db(), maria.balanceId)).find((a) => a.channel === 'sms')!.status, 'sent');
      // An unsigned one too.
      const unsigned = await fetch(`${webhooks.url}/webhooks/twilio/status`, {
        method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `MessageSid=${sms!.provider_message_id}&MessageStatus=delivered`,
      });
      assert.equal(unsigned.status, 403);
      assert.equal((await smsOf(maria))[0]!.state, 'sent');
    });

    it('a delivered status callback marks the outbox row and the attempt delivered', async () => {
      const [sms] = await smsOf(maria);
      for (const status of ['sent', 'delivered']) assert.equal((await fake.postStatus(sms!.provider_message_id!, status)).status, 200);
      assert.equal((await smsOf(maria))[0]!.state, 'delivered');
      const attempt = (await attemptsOf(db(), maria.balanceId)).find((a) => a.channel === 'sms')!;
      assert.equal(attempt.status, 'delivered');
      assert.equal(attempt.message_id, sms!.provider_message_id);
      // A late "sent" does not undo delivery.
      await fake.postStatus(sms!.provider_message_id!, 'sent');
      assert.equal((await smsOf(maria))[0]!.state, 'delivered');
    });

    it('STOP (any case, with other words) opts the number out at once with one confirmation; a retried webhook is handled once', async () => {
      const tampered = await fake.postInbound(INBOUND, '+13125550188', 'stop', { tamper: true });
      assert.equal(tampered.status, 403);
      assert.equal((await new OutreachRepository(db().pool, cipher, clock).listOptOuts(practiceId)).length, 0, 'nothing stored on 403');
      const answer = await fake.postInbound(INBOUND, '+13125550188', 'Please stop texting me', { messageSid: 'SM00000000000000000000000000000001' });
      assert.equal(answer.status, 200);
      assert.match(answer.body, /^<\?xml.*<Response><Message>Riverside Family Medicine: You are unsubscribed.*Reply START to resubscribe\.<\/Message><\/Response>$/s);
      const again = await fake.postInbound(INBOUND, '+13125550188', 'Please stop texting me', { messageSid: 'SM00000000000000000000000000000001' });
      assert.equal(again.body.includes('<Message>'), false, 'no second confirmation');
      const optOuts = await new OutreachRepository(db().pool, cipher, clock).listOptOuts(practiceId);
      assert.equal(optOuts.length, 1);
      assert.equal(optOuts[0]!.source, 'sms-reply:STOP');
    });

    it('day 7: the opted-out number is suppressed; the other text goes out', async () => {
      clock.set(DAY7_11H);
      await plan(db(), clock, practiceId);
      const bobAttempts = (await attemptsOf(db(), bob.balanceId)).filter((a) => a.step_id === 'first-reminder');
      assert.deepEqual(bobAttempts.map((a) => [a.channel, a.status, a.rule]), [['sms', 'suppressed', 'opt-out']]);
      const before = fake.messages.length;
      assert.equal((await deliver()).sent, 1);
      assert.equal(fake.messages.length, before + 1);
      assert.equal(fake.messages.at(-1)!.to, '+16175550134');
    });

    it('30006 in a status callback marks the number undeliverable and the email channel is tried next', async () => {
      const day7 = (await smsOf(maria, 'sent'))[0]!;
      const emailsBefore = smtp.received.length;
      const answer = await fake.postStatus(day7.provider_message_id!, 'undelivered', '30006');
      assert.equal(answer.status, 200);
      assert.match(answer.body, /"outcome":"undeliverable"/);
      assert.equal(wakes, 1, 'delivery woken for the fallback');
      const rows = await outboxOf(db(), maria.balanceId);
      assert.equal(rows.find((r) => r.id === day7.id)!.state, 'undeliverable');
      const fallback = rows.find((r) => r.fallback_of === day7.id)!;
      assert.equal(fallback.channel, 'email');
      assert.equal((await deliver()).sent, 1);
      assert.equal(smtp.received.length, emailsBefore + 1);
      assert.deepEqual(smtp.received.at(-1)!.to, ['maria@example.com']);
      assert.match(smtp.received.at(-1)!.raw, /reminder/i);
      const attempts = (await attemptsOf(db(), maria.balanceId)).filter((a) => a.step_id === 'first-reminder');
      assert.deepEqual(attempts.map((a) => [a.channel, a.status]), [['sms', 'failed'], ['email', 'sent']]);
      assert.match(attempts[0]!.reason!, /^30006/);
      // The number is not texted again.
      assert.equal(await import('../../src/store/outreach-delivery.ts').then((m) => new m.OutreachDeliveryStore(db().pool, cipher, clock).isUndeliverable(practiceId, 'sms', '617-555-0134')), true);
    });

    it('PAY sends the pay link again (the same link as the messages), HELP the practice phone, START opts back in', async () => {
      const pay = await fake.postInbound(INBOUND, '+16175550134', 'PAY');
      const link = /(https:\/\/settle\.example\.org\/p\/[A-Za-z0-9_-]+)/.exec(pay.body)?.[1];
      assert.ok(link, pay.body);
      assert.ok(fake.messages.find((m) => m.to === '+16175550134')!.body.includes(link), 'same link as the first text');
      const help = await fake.postInbound(INBOUND, '+16175550134', 'help?');
      assert.match(help.body, /call \(555\) 010-0199/);
      const start = await fake.postInbound(INBOUND, '+13125550188', 'START');
      assert.match(start.body, /resubscribed/);
      const [optOut] = await new OutreachRepository(db().pool, cipher, clock).listOptOuts(practiceId);
      assert.ok(optOut!.optedBackInAt);
    });

    it('a text that is not a keyword goes to staff, with no automatic answer', async () => {
      const answer = await fake.postInbound(INBOUND, '+16175550134', 'I already paid at the front desk');
      assert.equal(answer.body.includes('<Message>'), false);
      const tasks = await new StaffTaskRepository(db().pool, clock).list(practiceId, { kind: 'other' });
      assert.equal(tasks.length, 1);
      assert.equal(tasks[0]!.guarantorId, maria.guarantorId);
    });

    it('STOP from a number no practice knows is still recorded', async () => {
      const answer = await fake.postInbound(INBOUND, '+14155550100', 'UNSUBSCRIBE');
      assert.match(answer.body, /unsubscribed/);
      const rules = await new OutreachRepository(db().pool, cipher, clock).contactRules(practiceId, { sms: '(415) 555-0100' });
      assert.equal(rules.optOuts.length, 1);
    });
  });
}

if (!missing) {
  describeOnEachDatabase('Twilio webhooks as the engine serves them (createApi)', (db) => {
    it('are public, verified with TWILIO_AUTH_TOKEN over SETTLE_PUBLIC_URL, listed in the OpenAPI document, and answer 500 when unconfigured', async () => {
      const { createApi } = await import('../../src/api/app.ts');
      const { EngineMetrics } = await import('../../src/api/metrics.ts');
      const { loadMappings } = await import('../../src/mapping/load.ts');
      const { ROOT } = await import('../support/cli.ts');
      const clock = new ManualClock(DAY0_10H);
      const practiceId = await createPractice(db(), 'engine-webhooks');
      const fake = await startTwilioFake();
      const serve = async (twilioAuthToken: string | undefined) => {
        const api = createApi({
          configDir: ROOT, cipher, mappings: loadMappings(ROOT), db: db(), clock, logger, metrics: new EngineMetrics(), version: 'test', publicUrl: PUBLIC_URL, twilioAuthToken,
          readiness: { database: async () => ({ ok: true, detail: '' }), migrations: async () => ({ ok: true, detail: '' }), scheduler: () => ({ ok: true, detail: '' }) },
        });
        const server = api.app.listen(0, '127.0.0.1');
        await new Promise((resolve) => server.once('listening', resolve));
        return { api, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }) };
      };
      const configured = await serve(fake.authToken);
      const unconfigured = await serve(undefined);
      try {
        const paths = (configured.api.document as { paths: Record<string, unknown> }).paths;
        assert.ok(paths['/webhooks/twilio/status'] && paths['/webhooks/twilio/inbound']);
        fake.deliverTo = (url) => url.replace(PUBLIC_URL, configured.url);
        const answer = await fake.postInbound(INBOUND, '+16175550199', 'STOP');
        assert.equal(answer.status, 200);
        assert.match(answer.body, /unsubscribed/);
        assert.equal((await new OutreachRepository(db().pool, cipher, clock).listOptOuts(practiceId)).length, 1);
        assert.equal((await fake.postInbound(INBOUND, '+16175550199', 'START', { tamper: true })).status, 403);
        fake.deliverTo = (url) => url.replace(PUBLIC_URL, unconfigured.url);
        const refused = await fake.postInbound(INBOUND, '+16175550199', 'START');
        assert.equal(refused.status, 500);
        assert.match(refused.body, /webhook_not_configured/);
      } finally {
        await configured.close();
        await unconfigured.close();
        await fake.close();
      }
    });
  });
}
