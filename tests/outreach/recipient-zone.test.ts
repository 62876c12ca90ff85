/**
 * Quiet hours in the recipient's local time, at planning AND right before sending: a practice in New York, a
 * guarantor with a California address. 08:30 in New York is 05:30 in Los Angeles: the text waits for 08:00 there.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { buildChannels, type ChannelMap } from '../../src/outreach/channels.ts';
import { deliverDue } from '../../src/outreach/deliver.ts';
import { addressTimeZone } from '../../src/outreach/recipient-zone.ts';
import { OutreachDeliveryStore } from '../../src/store/outreach-delivery.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { startTwilioFake, type TwilioFake } from '../support/twilio-fake/server.ts';
import { twilioSpecMissing } from '../support/twilio-fake/spec.ts';
import { cipher, createPerson, logger, outboxOf, plan, PUBLIC_URL, type Person } from './twilio-fixtures.ts';

describe('the recipient zone from a mailing address', () => {
  it('a US ZIP code gives its zone, placing the towns of split states', () => {
    assert.equal(addressTimeZone({ city: 'El Paso', state: 'TX', postalCode: '79901' }), 'America/Denver');
    assert.equal(addressTimeZone({ city: 'Houston', state: 'TX', postalCode: '77001-1234' }), 'America/Chicago');
    assert.equal(addressTimeZone({ city: 'Pensacola', state: 'FL', postalCode: '32501', country: 'US' }), 'America/Chicago');
    assert.equal(addressTimeZone({ city: 'Miami', state: 'FL', postalCode: '33101' }), 'America/New_York');
    assert.equal(addressTimeZone({ state: 'NY', postalCode: '00000' }), 'America/New_York', 'an unknown ZIP falls back to the state');
    assert.equal(addressTimeZone({ postalCode: '79901', country: 'MX' }), undefined, 'a ZIP-like code abroad says nothing');
  });

  it('without a known ZIP, a state in one zone gives its zone; a split state, another country or no state gives none', () => {
    assert.equal(addressTimeZone({ lines: ['1 Main St'], city: 'Fresno', state: 'CA', postalCode: '93650' }), 'America/Los_Angeles');
    assert.equal(addressTimeZone({ state: ' ny ', country: 'USA' }), 'America/New_York');
    assert.equal(addressTimeZone({ state: 'AZ', country: 'U.S.' }), 'America/Phoenix');
    assert.equal(addressTimeZone({ state: 'HI' }), 'Pacific/Honolulu');
    assert.equal(addressTimeZone({ state: 'TX' }), undefined, 'El Paso keeps Mountain time');
    assert.equal(addressTimeZone({ state: 'CA', country: 'MX' }), undefined, 'Baja California is not California');
    assert.equal(addressTimeZone({ city: 'Chicago' }), undefined);
    assert.equal(addressTimeZone(undefined), undefined);
  });
});

// New York and Los Angeles are on daylight time in April 2026 (UTC-4 and UTC-7).
const NY_0830 = new Date('2026-04-08T12:30:00Z'); // Wed 08:30 in New York, 05:30 in Los Angeles
const LA_0800 = new Date('2026-04-08T15:00:00Z');
const LA_0900 = new Date('2026-04-08T16:00:00Z');
const NEXT_NY_0830 = new Date('2026-04-09T12:30:00Z');
const NEXT_LA_0800 = new Date('2026-04-09T15:00:00Z');

const missing = twilioSpecMissing();
if (missing) {
  it('quiet hours in the recipient zone through the Twilio fake', { skip: missing }, () => {});
} else {
  describeOnEachDatabase('quiet hours in the recipient zone (practice in New York, guarantor in California)', (db) => {
    const clock = new ManualClock(NY_0830);
    let fake: TwilioFake;
    let practiceId = '';
    let california: Person;
    let newYork: Person;
    let channels: ChannelMap;
    const deliver = () => deliverDue({ db: db(), cipher, clock, logger, channels, random: () => 0.5, quietHours: { start: '21:00', end: '08:00' } });

    before(async () => {
      fake = await startTwilioFake();
      practiceId = (await new PracticeRepository(db().pool).create({ slug: 'zone-test', name: 'Hudson Valley Medical', timeZone: 'America/New_York', phone: '(555) 010-0150' })).id;
      california = await createPerson(db(), clock, practiceId, 'CA1', {
        name: { given: ['Rosa'] }, phones: ['(559) 555-0134'], address: { lines: ['12 Olive Ave'], city: 'Fresno', state: 'CA', postalCode: '93650' },
      });
      newYork = await createPerson(db(), clock, practiceId, 'NY1', {
        name: { given: ['Sam'] }, phones: ['(518) 555-0101'], address: { lines: ['3 State St'], city: 'Albany', state: 'NY', postalCode: '12207' },
      });
      channels = buildChannels(
        { publicUrl: PUBLIC_URL, twilio: { accountSid: fake.accountSid, authToken: fake.authToken, messagingServiceSid: fake.messagingServiceSid } },
        { db: db(), cipher, clock },
        { twilioHttpClient: fake.httpClient() },
      );
    });
    after(async () => {
      await fake.close();
    });

    it('planning at 08:30 New York time defers the Californian text until 08:00 in Los Angeles and sends the New Yorker\'s', async () => {
      const planned = await plan(db(), clock, practiceId);
      const waits = planned.deferred.filter((d) => d.balanceId === california.balanceId);
      assert.deepEqual(waits.map((d) => [d.channel, d.rule, d.until.toISOString()]), [['sms', 'quiet-hours', LA_0800.toISOString()]]);
      assert.match(waits[0]!.reason, /05:30 in America\/Los_Angeles/);
      assert.deepEqual(planned.sent.filter((s) => s.balanceId === newYork.balanceId).map((s) => s.channel), ['sms']);
      assert.equal((await outboxOf(db(), california.balanceId)).length, 0, 'nothing written, nothing dropped');
    });

    it('planned at 09:00 in Los Angeles, the text keeps the recipient zone on its outbox row', async () => {
      clock.set(LA_0900);
      const planned = await plan(db(), clock, practiceId);
      assert.deepEqual(planned.sent.filter((s) => s.balanceId === california.balanceId).map((s) => s.channel), ['sms']);
      const store = new OutreachDeliveryStore(db().pool, cipher, clock);
      const [row] = await store.list(practiceId, { balanceId: california.balanceId });
      assert.equal(row!.recipientTimeZone, 'America/Los_Angeles');
      assert.equal((await store.list(practiceId, { balanceId: newYork.balanceId }))[0]!.recipientTimeZone, 'America/New_York');
    });

    it('sent the next morning at 08:30 New York time, the text is deferred until 08:00 in Los Angeles, not sent and not dropped', async () => {
      clock.set(NEXT_NY_0830);
      const result = await deliver();
      assert.equal(result.sent, 1, 'the New Yorker\'s text goes: 08:30 is allowed in New York');
      assert.equal(result.deferred, 1, JSON.stringify(result));
      assert.deepEqual(fake.messages.map((m) => m.to), ['+15185550101']);
      const [row] = await new OutreachDeliveryStore(db().pool, cipher, clock).list(practiceId, { balanceId: california.balanceId });
      assert.equal(row!.state, 'queued');
      assert.equal(row!.nextAttemptAt!.toISOString(), NEXT_LA_0800.toISOString(), '08:00 in Los Angeles');
      assert.equal(row!.deliveryAttempts, 0, 'a wait is not a send');

      clock.set(NEXT_LA_0800);
      assert.equal((await deliver()).sent, 1);
      assert.deepEqual(fake.messages.map((m) => m.to), ['+15185550101', '+15595550134']);
    });
  });
}
