import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import Stripe from 'stripe';
import { ManualClock } from '../../src/domain/clock.ts';
import {
  parseStripeSignatureHeader, signStripePayload, verifyStripeWebhook, WebhookVerificationError, type WebhookFailure,
} from '../../src/payments/stripe-webhook.ts';

const stripe = new Stripe('sk_test_settle');
const secret = 'whsec_test_secret_1';
const newSecret = 'whsec_test_secret_2';
const T = 1_780_000_000;
const payload = JSON.stringify({ id: 'evt_1', object: 'event', type: 'checkout.session.completed', data: { object: { id: 'cs_1', metadata: { settle_payment_id: 'pay_1' } } } }, null, 2);
const clockAt = (seconds: number) => new ManualClock(new Date(seconds * 1000));

function failure(fn: () => unknown): WebhookFailure {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof WebhookVerificationError, String(error));
    return error.code;
  }
  assert.fail('expected a WebhookVerificationError');
}

/** What Stripe's own SDK says, at the same instant: 'ok' or 'error'. */
function sdk(body: string | Buffer, header: string, secretUsed: string, nowSeconds: number, tolerance = 300): 'ok' | 'error' {
  try {
    stripe.webhooks.constructEvent(body, header, secretUsed, tolerance, undefined, nowSeconds * 1000);
    return 'ok';
  } catch {
    return 'error';
  }
}

describe('Stripe webhook verification', () => {
  it('accepts what the SDK signs, over the raw body, as a string or a Buffer', () => {
    const header = stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp: T });
    const event = verifyStripeWebhook(payload, header, { secrets: secret, clock: clockAt(T + 10) });
    assert.equal(event.id, 'evt_1');
    assert.equal(event.type, 'checkout.session.completed');
    assert.equal(verifyStripeWebhook(Buffer.from(payload), header, { secrets: secret, clock: clockAt(T) }).id, 'evt_1');
    assert.equal(sdk(payload, header, secret, T + 10), 'ok');
  });

  it('signs the way the SDK verifies', () => {
    const header = signStripePayload(payload, T, secret);
    assert.equal(header, stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp: T }));
    assert.equal(sdk(payload, header, secret, T), 'ok');
  });

  it('names the reason: missing header, malformed header, bad signature, stale, no secret, invalid payload', () => {
    const header = signStripePayload(payload, T, secret);
    const opts = { secrets: secret, clock: clockAt(T) };
    assert.equal(failure(() => verifyStripeWebhook(payload, undefined, opts)), 'missing-header');
    assert.equal(failure(() => verifyStripeWebhook(payload, '', opts)), 'missing-header');
    assert.equal(failure(() => verifyStripeWebhook(payload, 'v1=abc', opts)), 'malformed-header');
    assert.equal(failure(() => verifyStripeWebhook(payload, `t=${T}`, opts)), 'malformed-header');
    assert.equal(failure(() => verifyStripeWebhook(payload, `t=${T},v0=${'0'.repeat(64)}`, opts)), 'malformed-header');
    assert.equal(failure(() => verifyStripeWebhook(payload.replace('pay_1', 'pay_2'), header, opts)), 'bad-signature');
    assert.equal(failure(() => verifyStripeWebhook(JSON.stringify(JSON.parse(payload)), header, opts)), 'bad-signature', 're-serialised JSON does not verify');
    assert.equal(failure(() => verifyStripeWebhook(payload, header, { ...opts, secrets: 'whsec_other' })), 'bad-signature');
    assert.equal(failure(() => verifyStripeWebhook(payload, header, { ...opts, clock: clockAt(T + 301) })), 'stale');
    assert.equal(failure(() => verifyStripeWebhook(payload, header, { ...opts, secrets: [] })), 'no-secret');
    const notJson = 'hello';
    assert.equal(failure(() => verifyStripeWebhook(notJson, signStripePayload(notJson, T, secret), opts)), 'invalid-payload');
    const noId = '{"type":"x"}';
    assert.equal(failure(() => verifyStripeWebhook(noId, signStripePayload(noId, T, secret), opts)), 'invalid-payload');
  });

  it('applies the tolerance to the injected clock, at exactly the SDK boundary', () => {
    const header = signStripePayload(payload, T, secret);
    assert.equal(verifyStripeWebhook(payload, header, { secrets: secret, clock: clockAt(T + 300) }).id, 'evt_1');
    assert.equal(sdk(payload, header, secret, T + 300), 'ok');
    assert.equal(sdk(payload, header, secret, T + 301), 'error');
    assert.equal(verifyStripeWebhook(payload, header, { secrets: secret, clock: clockAt(T + 30), toleranceSeconds: 60 }).id, 'evt_1');
    assert.equal(failure(() => verifyStripeWebhook(payload, header, { secrets: secret, clock: clockAt(T + 61), toleranceSeconds: 60 })), 'stale');
    assert.equal(verifyStripeWebhook(payload, header, { secrets: secret, clock: clockAt(T + 10 ** 7), toleranceSeconds: 0 }).id, 'evt_1');
  });

  it('accepts any of several v1 signatures (Stripe rolling its secret) and any of several secrets (Settle rotating)', () => {
    const both = signStripePayload(payload, T, ['whsec_old', secret]);
    assert.equal(parseStripeSignatureHeader(both)?.v1.length, 2);
    assert.equal(verifyStripeWebhook(payload, both, { secrets: secret, clock: clockAt(T) }).id, 'evt_1');
    assert.equal(sdk(payload, both, secret, T), 'ok');
    const withV0 = `${signStripePayload(payload, T, newSecret)},v0=deadbeef`;
    assert.equal(verifyStripeWebhook(payload, withV0, { secrets: [secret, newSecret], clock: clockAt(T) }).id, 'evt_1');
  });

  it('agrees with stripe.webhooks.constructEvent on random bodies, headers, secrets and clocks (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 200 }),
        fc.constantFrom(secret, newSecret),
        fc.constantFrom(secret, newSecret),
        fc.integer({ min: -50, max: 700 }),
        fc.constantFrom<'sdk' | 'ours' | 'tamper' | 'extra-v1' | 'garbage'>('sdk', 'ours', 'tamper', 'extra-v1', 'garbage'),
        (text, signWith, verifyWith, age, shape) => {
          const body = JSON.stringify({ id: 'evt_x', type: 'payment_intent.succeeded', note: text });
          let header: string;
          if (shape === 'sdk') header = stripe.webhooks.generateTestHeaderString({ payload: body, secret: signWith, timestamp: T });
          else if (shape === 'ours') header = signStripePayload(body, T, signWith);
          else if (shape === 'tamper') header = signStripePayload(`${body} `, T, signWith);
          else if (shape === 'extra-v1') header = `t=${T},v1=${'a'.repeat(64)},${signStripePayload(body, T, signWith).split(',')[1]}`;
          else header = `t=${T},v1=${text.replace(/[,=]/g, '')}`;
          const theirs = sdk(body, header, verifyWith, T + age);
          let ours: 'ok' | 'error' = 'ok';
          try {
            verifyStripeWebhook(body, header, { secrets: verifyWith, clock: clockAt(T + age) });
          } catch (error) {
            assert.ok(error instanceof WebhookVerificationError);
            ours = 'error';
          }
          assert.equal(ours, theirs, `${shape} age ${age}`);
        },
      ),
      { numRuns: 400 },
    );
  });
});
