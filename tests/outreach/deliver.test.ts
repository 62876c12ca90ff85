import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { buildChannels, type ChannelMap } from '../../src/outreach/channels.ts';
import { deliverDue, outreachDeliverJob, retryDelayMs } from '../../src/outreach/deliver.ts';
import { OutreachDeliveryStore } from '../../src/store/outreach-delivery.ts';
import { OutreachRepository } from '../../src/store/outreach.ts';
import { StaffTaskRepository } from '../../src/store/staff-tasks.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { startTwilioFake, type TwilioFake } from '../support/twilio-fake/server.ts';
import { twilioSpecMissing } from '../support/twilio-fake/spec.ts';
import { attemptsOf, cipher, createPerson, createPractice, DAY0_10H, logger, outboxOf, plan, PUBLIC_URL, type Person } from './twilio-fixtures.ts';

describe('delivery retry schedule', () => {
  it('doubles from 30 s with jitter between half and the whole delay, capped at 30 min', () => {
    assert.equal(retryDelayMs(1, () => 0), 15_000);
    assert.equal(retryDelayMs(1, () => 1), 30_000);
    assert.equal(retryDelayMs(3, () => 1), 120_000);
    assert.equal(retryDelayMs(20, () => 1), 30 * 60_000);
    assert.equal(retryDelayMs(20, () => 0), 15 * 60_000);
  });
});

const missing = twilioSpecMissing();
if (missing) {
  it('outreach delivery through the Twilio fake', { skip: missing }, () => {});
} else {
  describeOnEachDatabase('outreach delivery (outbox → Twilio SDK → fake validated against the Twilio spec)', (db) => {
    const clock = new ManualClock(DAY0_10H);
    let fake: TwilioFake;
    let practiceId = '';
    let maria: Person;
    let landline: Person;
    let channels: ChannelMap;
    const deliver = (over: ChannelMap = channels) => deliverDue({ db: db(), cipher, clock, logger, channels: over, random: () => 0.5, quietHours: { start: '21:00', end: '08:00' } });

    before(async () => {
      fake = await startTwilioFake();
      practiceId = await createPractice(db(), 'delivery-test');
      maria = await createPerson(db(), clock, practiceId, 'P1', {
        name: { given: ['Maria'], family: 'Gonzalez' }, phones: ['(617) 555-0134'], email: 'maria@example.com', language: 'en',
      });
      // Text consent but no email and no address: when texts cannot reach them, nobody else can either.
      landline = await createPerson(db(), clock, practiceId, 'P2', { name: { given: ['Ann'] }, phones: ['(312) 555-0100'] }, { amount: '40.00' });
      channels = buildChannels(
        { publicUrl: PUBLIC_URL, twilio: { accountSid: fake.accountSid, authToken: fake.authToken, messagingServiceSid: fake.messagingServiceSid } },
        { db: db(), cipher, clock },
        { twilioHttpClient: fake.httpClient() },
      );
    });
    after(async () => {
      await fake.close();
    });

    it('with no Twilio credentials, planned texts stay in the outbox as held and nothing reaches Twilio', async () => {
      const planned = await plan(db(), clock, practiceId);
      assert.ok(planned.sent.length >= 3, `planned ${planned.sent.length}`);
      const result = await deliver({});
      assert.ok(result.held >= 3);
      assert.equal(result.sent, 0);
      assert.equal(fake.requests.length, 0);
      const rows = await outboxOf(db(), maria.balanceId);
      assert.deepEqual(rows.map((r) => [r.channel, r.state]).sort(), [['email', 'held-no-channel'], ['sms', 'held-no-channel']]);
      // The outbox stays visible with its state.
      const listed = await new OutreachDeliveryStore(db().pool, cipher, clock).list(practiceId, { state: 'held-no-channel' });
      assert.equal(listed.length, result.held);
    });

    it('once Twilio is configured, held texts are sent with the Messaging Service and status callback; emails stay held', async () => {
      const result = await deliver();
      assert.equal(result.released, 2, 'the two texts');
      assert.equal(result.sent, 2);
      const creates = fake.requests.filter((r) => r.method === 'POST');
      assert.equal(creates.length, 2);
      for (const request of creates) {
        assert.deepEqual(request.problems, [], 'valid against twilio_api_v2010.json');
        assert.equal(request.status, 201);
        assert.equal(request.params.MessagingServiceSid, fake.messagingServiceSid);
        assert.equal(request.params.StatusCallback, `${PUBLIC_URL}/webhooks/twilio/status`);
        assert.equal(request.params.From, undefined, 'the Messaging Service picks the sender');
      }
      const toMaria = fake.messages.find((m) => m.to === '+16175550134')!;
      assert.match(toMaria.body, /Maria/);
      assert.match(toMaria.body, new RegExp(`${PUBLIC_URL}/p/`));
      const rows = await outboxOf(db(), maria.balanceId);
      const sms = rows.find((r) => r.channel === 'sms')!;
      assert.equal(sms.state, 'sent');
      assert.equal(sms.provider_message_id, toMaria.sid);
      assert.equal(rows.find((r) => r.channel === 'email')!.state, 'held-no-channel');
      const attempt = (await attemptsOf(db(), maria.balanceId)).find((a) => a.channel === 'sms')!;
      assert.equal(attempt.status, 'sent');
      assert.equal(attempt.message_id, toMaria.sid);
      // Nothing to do on a second run: nobody is texted twice.
      assert.equal((await deliver()).sent, 0);
      assert.equal(fake.requests.length, 2);
    });

    it('a rate limit (429) is retried later with backoff, then sent', async () => {
      const store = new OutreachDeliveryStore(db().pool, cipher, clock);
      const original = (await outboxOf(db(), maria.balanceId)).find((r) => r.channel === 'sms')!;
      const row = (await store.get(original.id))!;
      const retryId = await store.addFallback(row, { channel: 'sms', recipient: '(617) 555-0134', subject: null, body: 'Riverside Family Medicine: test', html: null, language: 'en', template: 'friendly-reminder' });
      fake.refuseNext(1, { status: 429, code: 20429 });
      const first = await deliver();
      assert.equal(first.retried, 1);
      const waiting = (await store.get(retryId))!;
      assert.equal(waiting.state, 'queued');
      assert.equal(waiting.lastErrorCode, '20429');
      assert.equal(waiting.nextAttemptAt!.getTime() - clock.now().getTime(), 22_500, 'half of 30 s plus half the jitter range');
      assert.equal((await deliver()).sent, 0, 'not before its time');
      clock.advance(23_000);
      const second = await deliver();
      assert.equal(second.sent, 1);
      assert.equal((await store.get(retryId))!.state, 'sent');
      assert.equal((await store.get(retryId))!.deliveryAttempts, 2);
    });

    it('21610 from Twilio records the opt-out; the row and its attempt fail; later texts to the number are not sent', async () => {
      const store = new OutreachDeliveryStore(db().pool, cipher, clock);
      const row = (await store.list(practiceId, { balanceId: maria.balanceId })).find((r) => r.channel === 'sms' && r.state === 'sent')!;
      fake.refuse('+16175550134', { status: 400, code: 21610 });
      const id = await store.addFallback(row, { channel: 'sms', recipient: '617-555-0134', subject: null, body: 'Riverside Family Medicine: again', html: null, language: 'en', template: 'friendly-reminder' });
      const result = await deliver();
      assert.equal(result.optedOut, 1);
      const refused = (await store.get(id))!;
      assert.equal(refused.state, 'failed');
      assert.equal(refused.lastErrorCode, '21610');
      const optOuts = await new OutreachRepository(db().pool, cipher, clock).listOptOuts(practiceId);
      assert.equal(optOuts.length, 1);
      assert.equal(optOuts[0]!.source, 'provider:21610');
      // The next row to that number is checked right before sending and never reaches Twilio.
      const before = fake.requests.length;
      const next = await store.addFallback(row, { channel: 'sms', recipient: '+1 617 555 0134', subject: null, body: 'Riverside Family Medicine: third', html: null, language: 'en', template: 'friendly-reminder' });
      await deliver();
      assert.equal(fake.requests.length, before);
      assert.equal((await store.get(next))!.lastErrorCode, 'opted-out');
    });

    it('an undeliverable number with no other channel opens an undeliverable staff task', async () => {
      const store = new OutreachDeliveryStore(db().pool, cipher, clock);
      const row = (await store.list(practiceId, { balanceId: landline.balanceId })).find((r) => r.channel === 'sms')!;
      assert.equal(row.state, 'sent');
      // Twilio reports 30006 (landline) in the status callback; the webhook calls applyRefusal, as here.
      const { applyRefusal } = await import('../../src/outreach/deliver.ts');
      const outcome = await applyRefusal({ db: db(), cipher, clock, logger }, row, { status: 'failed', code: '30006', reason: 'landline', transient: false, undeliverable: true });
      assert.equal(outcome.undeliverable, true);
      assert.equal(outcome.fallbackOutboxId, undefined);
      const tasks = await new StaffTaskRepository(db().pool, clock).list(practiceId, { kind: 'undeliverable' });
      assert.equal(tasks.length, 1);
      assert.equal(tasks[0]!.balanceId, landline.balanceId);
      assert.doesNotMatch(tasks[0]!.note ?? '', /555|Ann/, 'no phone or name in the task note');
      assert.equal((await store.get(row.id))!.state, 'undeliverable');
      assert.equal(await store.isUndeliverable(practiceId, 'sms', '+13125550100'), true);
    });

    it('texts wait outside quiet hours (21:00–08:00 in the practice zone) instead of being sent or dropped', async () => {
      const store = new OutreachDeliveryStore(db().pool, cipher, clock);
      const row = (await store.list(practiceId, { balanceId: maria.balanceId })).find((r) => r.channel === 'sms' && r.state === 'sent')!;
      clock.set(new Date('2026-04-08T03:30:00Z')); // 22:30 in Chicago
      assert.equal(await new OutreachRepository(db().pool, cipher, clock).optBackIn(practiceId, 'sms', '6175550134', clock.now()), 1, 'START');
      const id = await store.addFallback(row, { channel: 'sms', recipient: '(617) 555-0134', subject: null, body: 'Riverside Family Medicine: night', html: null, language: 'en', template: 'friendly-reminder' });
      const result = await deliver();
      assert.equal(result.deferred, 1, JSON.stringify(result));
      const waiting = (await store.get(id))!;
      assert.equal(waiting.state, 'queued');
      assert.equal(waiting.nextAttemptAt!.toISOString(), '2026-04-08T13:00:00.000Z', '08:00 in Chicago');
      assert.equal(waiting.deliveryAttempts, 0);
    });

    it('the job is outreach.deliver', () => {
      assert.equal(outreachDeliverJob({ db: db(), cipher, clock, logger, channels }).name, 'outreach.deliver');
    });
  });
}
