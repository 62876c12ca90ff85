import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTwilioFake, type TwilioFake } from '../support/twilio-fake/server.ts';
import { matchTwilioOperation, twilioResponseValidator, twilioSpecMissing } from '../support/twilio-fake/spec.ts';

const MESSAGES = (sid: string) => `/2010-04-01/Accounts/${sid}/Messages.json`;

describe('the Twilio fake checks requests against twilio_api_v2010.json', { skip: twilioSpecMissing() }, () => {
  let fake: TwilioFake;
  before(async () => {
    fake = await startTwilioFake();
  });
  after(() => fake.close());

  const post = (form: Record<string, string>, options: { sid?: string; token?: string } = {}) =>
    fetch(`${fake.url}${MESSAGES(options.sid ?? fake.accountSid)}`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${options.sid ?? fake.accountSid}:${options.token ?? fake.authToken}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams(form).toString(),
    });

  it('accepts a valid create and answers with a message that matches the spec schema', async () => {
    const response = await post({ To: '+16175550134', MessagingServiceSid: fake.messagingServiceSid, Body: 'Hello', StatusCallback: 'https://settle.example.org/webhooks/twilio/status' });
    assert.equal(response.status, 201);
    const body = (await response.json()) as Record<string, unknown>;
    assert.match(String(body.sid), /^SM[0-9a-f]{32}$/);
    const validate = twilioResponseValidator(matchTwilioOperation('POST', MESSAGES(fake.accountSid))!, 201)!;
    assert.ok(validate(body), JSON.stringify(validate.errors));
  });

  it('refuses unknown parameters, a To that is not E.164, a bad callback URL, and a create without sender or body', async () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ To: '+16175550134', MessagingServiceSid: fake.messagingServiceSid, Body: 'x', PatientName: 'Maria' }, /PatientName is not a parameter/],
      [{ To: '(617) 555-0134', MessagingServiceSid: fake.messagingServiceSid, Body: 'x' }, /To must match format "phone-number"/],
      [{ To: '+16175550134', MessagingServiceSid: fake.messagingServiceSid, Body: 'x', StatusCallback: 'not a url' }, /StatusCallback must match format "uri"/],
      [{ To: '+16175550134', MessagingServiceSid: 'MG123', Body: 'x' }, /MessagingServiceSid must/],
      [{ To: '+16175550134', Body: 'x' }, /one of From, MessagingServiceSid is required/],
      [{ To: '+16175550134', MessagingServiceSid: fake.messagingServiceSid }, /one of Body, MediaUrl, ContentSid is required/],
      [{ To: '+16175550134', MessagingServiceSid: fake.messagingServiceSid, Body: 'x', ValidityPeriod: 'soon' }, /ValidityPeriod must be integer/],
    ];
    for (const [form, problem] of cases) {
      const response = await post(form);
      assert.equal(response.status, 400, JSON.stringify(form));
      assert.match(String(((await response.json()) as { message: string }).message), problem);
    }
  });

  it('refuses wrong credentials (401, code 20003) and unknown paths (404)', async () => {
    assert.equal((await post({ To: '+16175550134', Body: 'x' }, { token: 'wrong' })).status, 401);
    const unknown = await fetch(`${fake.url}/2010-04-01/Accounts/${fake.accountSid}/Nope.json`, { method: 'POST' });
    assert.equal(unknown.status, 404);
  });
});
