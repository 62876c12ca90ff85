import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../../src/domain/clock.ts';
import {
  decodePayLink, issuePayLink, PAY_LINK_TOKEN_LENGTH, parsePayLinkKeys, payLinkKeyRing, PayLinkKeyError, payLinkUrl, verifyPayLink,
  type PayLinkRecord,
} from '../../src/domain/pay-link.ts';

const key1 = Buffer.alloc(32, 1);
const key2 = Buffer.alloc(32, 2);
const ring = payLinkKeyRing(1, [[1, key1]]);
const DAY = 86_400;

function setup(guarantorId = 'g_7f3a9c') {
  const clock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
  const issued = issuePayLink({ guarantorId, ttlSeconds: 30 * DAY, clock, keyRing: ring });
  const rows = new Map<string, PayLinkRecord>([[issued.linkId, { guarantorId }]]);
  const lookup = (id: string) => rows.get(id);
  return { clock, issued, rows, lookup };
}

describe('pay links', () => {
  it('are 32 url-safe characters and fit one SMS segment with the message', () => {
    const { issued } = setup();
    assert.equal(issued.token.length, PAY_LINK_TOKEN_LENGTH);
    assert.match(issued.token, /^[A-Za-z0-9_-]{32}$/);
    const url = payLinkUrl('https://pay.example-clinic.com/', issued.token);
    assert.equal(url, `https://pay.example-clinic.com/p/${issued.token}`);
    const sms = `Hi Ana, Example Clinic: you have a balance of $1,234.56. Pay or set up a plan: ${url}`;
    assert.ok(sms.length <= 160, `${sms.length} characters`);
    assert.equal(issued.linkId.length, 18);
    assert.equal(issued.expiresAt.toISOString(), '2026-03-31T12:00:00.000Z');
  });

  it('verify for the guarantor of the link row until they expire', async () => {
    const { clock, issued, lookup } = setup();
    const ok = await verifyPayLink(issued.token, { clock, keyRing: ring, lookup });
    assert.deepEqual(ok, { ok: true, linkId: issued.linkId, guarantorId: 'g_7f3a9c', expiresAt: issued.expiresAt, keyId: 1 });
    clock.set(new Date(issued.expiresAt.getTime() - 1));
    assert.equal((await verifyPayLink(issued.token, { clock, keyRing: ring, lookup })).ok, true);
    clock.set(issued.expiresAt);
    assert.deepEqual(await verifyPayLink(issued.token, { clock, keyRing: ring, lookup }), { ok: false, reason: 'expired', linkId: issued.linkId });
  });

  it('say why they are refused: malformed, unknown link, revoked, bad signature', async () => {
    const { clock, issued, rows, lookup } = setup();
    const opts = { clock, keyRing: ring, lookup };
    for (const bad of [undefined, '', 'short', `${issued.token}x`, `${issued.token.slice(0, 31)}!`, 42]) {
      assert.deepEqual(await verifyPayLink(bad, opts), { ok: false, reason: 'malformed' });
    }
    assert.equal((await verifyPayLink(issued.token, { ...opts, lookup: () => undefined })).ok === false, true);
    assert.equal(((await verifyPayLink(issued.token, { ...opts, lookup: () => undefined })) as { reason: string }).reason, 'unknown-link');
    rows.set(issued.linkId, { guarantorId: 'g_7f3a9c', revoked: true });
    assert.equal(((await verifyPayLink(issued.token, opts)) as { reason: string }).reason, 'revoked');
    // The row re-pointed to another guarantor: the MAC binds the link to the guarantor it was issued for.
    rows.set(issued.linkId, { guarantorId: 'g_other' });
    assert.equal(((await verifyPayLink(issued.token, opts)) as { reason: string }).reason, 'bad-signature');
  });

  it('refuse any single-character change (tampered expiry reads as bad signature, not expired)', async () => {
    const { clock, issued, lookup } = setup();
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 31 }), fc.integer({ min: 0, max: 63 }), async (pos, ch) => {
        const c = alphabet[ch]!;
        fc.pre(issued.token[pos] !== c);
        const tampered = issued.token.slice(0, pos) + c + issued.token.slice(pos + 1);
        const result = await verifyPayLink(tampered, { clock, keyRing: ring, lookup });
        assert.equal(result.ok, false);
        assert.ok(['malformed', 'unknown-key', 'unknown-link', 'bad-signature'].includes((result as { reason: string }).reason));
      }),
      { numRuns: 300 },
    );
    // Expiry bytes are 10..13 (chars ~13..18): move the expiry forward by a day, keep the MAC.
    const raw = Buffer.from(issued.token, 'base64url');
    raw.writeUInt32BE(raw.readUInt32BE(10) + DAY, 10);
    const extended = raw.toString('base64url');
    assert.equal(((await verifyPayLink(extended, { clock, keyRing: ring, lookup })) as { reason: string }).reason, 'bad-signature');
  });

  it('rotate keys: new links use the current key, old links verify while their key stays in the ring', async () => {
    const { clock, issued, lookup } = setup();
    const rotated = payLinkKeyRing(2, [[2, key2], [1, key1]]);
    const fresh = issuePayLink({ guarantorId: 'g_7f3a9c', ttlSeconds: DAY, clock, keyRing: rotated });
    assert.equal(fresh.keyId, 2);
    assert.equal(decodePayLink(fresh.token)?.keyId, 2);
    assert.equal((await verifyPayLink(issued.token, { clock, keyRing: rotated, lookup })).ok, true);
    const retired = payLinkKeyRing(2, [[2, key2]]);
    assert.equal(((await verifyPayLink(issued.token, { clock, keyRing: retired, lookup })) as { reason: string }).reason, 'unknown-key');
    // A link signed by key 1 but claiming key 2 fails.
    const raw = Buffer.from(issued.token, 'base64url');
    raw[0] = 2;
    assert.equal(((await verifyPayLink(raw.toString('base64url'), { clock, keyRing: rotated, lookup })) as { reason: string }).reason, 'bad-signature');
  });

  it('parse key rings from text and refuse weak keys', () => {
    const text = `2:${key2.toString('base64url')},1:${key1.toString('base64url')}`;
    const parsed = parsePayLinkKeys(text);
    assert.equal(parsed.current, 2);
    assert.deepEqual([...parsed.keys.keys()], [2, 1]);
    assert.throws(() => parsePayLinkKeys('1:c2hvcnQ'), PayLinkKeyError);
    assert.throws(() => parsePayLinkKeys('nonsense'), PayLinkKeyError);
    assert.throws(() => payLinkKeyRing(3, [[1, key1]]), PayLinkKeyError);
    assert.throws(() => payLinkKeyRing(300, [[300, key1]]), PayLinkKeyError);
  });

  it('use random link ids (distinct across many issues)', () => {
    const clock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
    const ids = new Set<string>();
    for (let i = 0; i < 2000; i++) ids.add(issuePayLink({ guarantorId: 'g', ttlSeconds: 60, clock, keyRing: ring }).linkId);
    assert.equal(ids.size, 2000);
  });

  it('round-trip any guarantor id and ttl', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ minLength: 1, maxLength: 64 }), fc.integer({ min: 1, max: 400 * DAY }), async (guarantorId, ttl) => {
        const clock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
        const issued = issuePayLink({ guarantorId, ttlSeconds: ttl, clock, keyRing: ring });
        const result = await verifyPayLink(issued.token, { clock, keyRing: ring, lookup: async () => ({ guarantorId }) });
        assert.equal(result.ok, true);
      }),
      { numRuns: 200 },
    );
  });
});
