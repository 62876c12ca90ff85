import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadSettings, SettingsError } from '../../src/config/settings.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { buildChannels } from '../../src/outreach/channels.ts';
import { toE164, twilioFailure } from '../../src/outreach/twilio-channel.ts';
import type { Database } from '../../src/store/database.ts';
import { cipher } from './twilio-fixtures.ts';

const SID = `AC${'a1'.repeat(16)}`;
const TOKEN = 'f'.repeat(32);
const SERVICE = `MG${'b2'.repeat(16)}`;

describe('Twilio settings and channel', () => {
  it('needs all three TWILIO_* settings or none, naming what is missing and never echoing the token', () => {
    assert.equal(loadSettings({}).twilio, undefined);
    assert.throws(() => loadSettings({ TWILIO_AUTH_TOKEN: TOKEN }), (error: unknown) => {
      assert.ok(error instanceof SettingsError);
      assert.deepEqual(error.problems.map((p) => p.variable).sort(), ['TWILIO_ACCOUNT_SID', 'TWILIO_MESSAGING_SERVICE_SID']);
      assert.doesNotMatch(error.message, new RegExp(TOKEN));
      return true;
    });
    assert.throws(() => loadSettings({ TWILIO_ACCOUNT_SID: 'AC123', TWILIO_AUTH_TOKEN: TOKEN, TWILIO_MESSAGING_SERVICE_SID: SERVICE }), /TWILIO_ACCOUNT_SID: must match/);
    const settings = loadSettings({ TWILIO_ACCOUNT_SID: SID, TWILIO_AUTH_TOKEN: TOKEN, TWILIO_MESSAGING_SERVICE_SID: SERVICE });
    assert.deepEqual(settings.twilio, { accountSid: SID, authToken: TOKEN, messagingServiceSid: SERVICE });
  });

  it('configures the sms channel only with Twilio settings (letters are always queued for printing)', () => {
    const deps = { db: {} as Database, cipher, clock: new ManualClock(new Date('2026-04-07T15:00:00Z')) };
    assert.deepEqual(Object.keys(buildChannels({}, deps)), ['letter']);
    const channels = buildChannels({ twilio: { accountSid: SID, authToken: TOKEN, messagingServiceSid: SERVICE }, publicUrl: 'https://settle.example.org' }, deps);
    assert.equal(channels.sms?.kind, 'sms');
  });

  it('writes numbers as E.164 and refuses what cannot be one', () => {
    assert.equal(toE164('(617) 555-0134'), '+16175550134');
    assert.equal(toE164('1-617-555-0134'), '+16175550134');
    assert.equal(toE164('+44 20 7946 0958'), '+442079460958');
    assert.equal(toE164('555-0134'), undefined);
    assert.equal(toE164('call me'), undefined);
  });

  it('maps Twilio refusals: 21610 opted out, 30003/30005/30006 undeliverable, 429 and 5xx transient, others final', () => {
    assert.deepEqual(twilioFailure('21610', 400), { status: 'failed', code: '21610', reason: 'the number has opted out of texts from this sender (STOP)', transient: false, optedOut: true });
    for (const code of ['30003', '30005', '30006']) assert.equal((twilioFailure(code, 400) as { undeliverable?: boolean }).undeliverable, true, code);
    assert.equal((twilioFailure('20429', 429) as { transient: boolean }).transient, true);
    assert.equal((twilioFailure(undefined, 503) as { transient: boolean }).transient, true);
    assert.equal((twilioFailure('21408', 400) as { transient: boolean }).transient, false);
  });
});
