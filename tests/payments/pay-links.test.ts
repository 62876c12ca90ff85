import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { loadPayLinkKeys } from '../../src/payments/pay-link-keys.ts';
import { payLinkForGuarantor } from '../../src/store/guarantor-pay-links.ts';
import { decodePayLink, PAY_LINK_TOKEN_LENGTH, verifyPayLink } from '../../src/domain/pay-link.ts';
import { AuditLog } from '../../src/store/audit.ts';
import { PayLinkRepository } from '../../src/store/pay-links.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { seedPayHousehold, silentLogger, testKeys, type PayHousehold } from './pay-fixtures.ts';

const PUBLIC = 'https://pay.example-clinic.com';
const DAY = 24 * 60 * 60 * 1000;

describeOnEachDatabase('pay links: issued, reused, revoked, opened', (db) => {
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  const keys = testKeys();
  let h: PayHousehold;
  let other: PayHousehold;
  const deps = () => ({ db: db(), clock, keys, publicUrl: PUBLIC });

  before(async () => {
    h = await seedPayHousehold(db(), clock, 'links-a');
    other = await seedPayHousehold(db(), clock, 'links-b');
  });

  it('gives a URL short enough to share one SMS segment with a short message', async () => {
    const url = await payLinkForGuarantor(deps(), { practiceId: h.practiceId, guarantorId: h.guarantorId });
    assert.match(url, /^https:\/\/pay\.example-clinic\.com\/p\/[A-Za-z0-9_-]{32}$/);
    assert.equal(url.split('/p/')[1]!.length, PAY_LINK_TOKEN_LENGTH);
    const text = `Riverside Family Clinic: Alex, you have a balance of $1,234.56. Pay securely: ${url}`;
    assert.ok(text.length <= 160, `${text.length} characters`);
    assert.ok(/^[A-Za-z0-9 :,.$/_-]+$/.test(text), 'GSM-7 characters only');
  });

  it('sends the same link again while it has more than a week left, then a new one', async () => {
    const first = await payLinkForGuarantor(deps(), { practiceId: h.practiceId, guarantorId: h.guarantorId });
    assert.equal(await payLinkForGuarantor(deps(), { practiceId: h.practiceId, guarantorId: h.guarantorId }), first);
    clock.advance(22 * DAY);
    assert.equal(await payLinkForGuarantor(deps(), { practiceId: h.practiceId, guarantorId: h.guarantorId }), first, '8 days left: reused');
    clock.advance(2 * DAY);
    const renewed = await payLinkForGuarantor(deps(), { practiceId: h.practiceId, guarantorId: h.guarantorId });
    assert.notEqual(renewed, first, '6 days left: a new link');
    const otherLink = await payLinkForGuarantor(deps(), { practiceId: other.practiceId, guarantorId: other.guarantorId });
    assert.notEqual(otherLink, renewed, 'each guarantor has their own link');
  });

  it('issues a new link once the old one is revoked, and the revoked one no longer verifies', async () => {
    const links = new PayLinkRepository(db(), clock);
    const url = await payLinkForGuarantor(deps(), { practiceId: h.practiceId, guarantorId: h.guarantorId });
    const token = url.split('/p/')[1]!;
    const linkId = decodePayLink(token)!.linkId;
    const lookup = async (id: string) => {
      const row = await links.get(id);
      return row && { guarantorId: row.guarantorId, revoked: row.revokedAt !== null };
    };
    const ok = await verifyPayLink(token, { clock, keyRing: keys, lookup });
    assert.ok(ok.ok && ok.guarantorId === h.guarantorId);
    assert.equal(await links.revoke(other.practiceId, linkId), false, 'another practice cannot revoke it');
    assert.equal(await links.revoke(h.practiceId, linkId), true);
    assert.deepEqual(await verifyPayLink(token, { clock, keyRing: keys, lookup }), { ok: false, reason: 'revoked', linkId });
    assert.notEqual(await payLinkForGuarantor(deps(), { practiceId: h.practiceId, guarantorId: h.guarantorId }), url);
  });

  it('refuses a guarantor of another practice', async () => {
    await assert.rejects(payLinkForGuarantor(deps(), { practiceId: h.practiceId, guarantorId: other.guarantorId }), /not a guarantor of practice/);
  });

  it('counts every open and audits it with the link id only', async () => {
    const links = new PayLinkRepository(db(), clock);
    const url = await payLinkForGuarantor(deps(), { practiceId: h.practiceId, guarantorId: h.guarantorId });
    const linkId = decodePayLink(url.split('/p/')[1])!.linkId;
    const link = (await links.get(linkId))!;
    await links.recordOpen(link, { verified: false });
    await links.recordOpen(link, { verified: true });
    const after = (await links.get(linkId))!;
    assert.equal(after.openCount, link.openCount + 2);
    const events = (await new AuditLog(db(), clock).list(h.practiceId)).filter((e) => e.action === 'paylink.open' && e.entityId === linkId);
    assert.equal(events.length, 2);
    assert.equal(events[0]!.actor, `patient:${linkId}`);
    assert.ok(!JSON.stringify(events).includes(h.guarantorId), 'the audit event does not name the guarantor');
    assert.equal(await new AuditLog(db(), clock).verify(h.practiceId), undefined, 'the audit chain holds');
  });

  it('keeps the identity-check state of each link', async () => {
    const links = new PayLinkRepository(db(), clock);
    const url = await payLinkForGuarantor(deps(), { practiceId: other.practiceId, guarantorId: other.guarantorId });
    const linkId = decodePayLink(url.split('/p/')[1])!.linkId;
    const until = clock.now().getTime() + DAY;
    await links.saveAttempt({ linkId, practiceId: other.practiceId }, { failures: [1, 2, 3, 4, 5], lockedUntil: until }, 'locked');
    const row = (await links.get(linkId))!;
    assert.deepEqual(row.attempts, { failures: [1, 2, 3, 4, 5], lockedUntil: until });
    await links.saveAttempt({ linkId, practiceId: other.practiceId }, { failures: [], lockedUntil: null }, 'verified');
    const verified = (await links.get(linkId))!;
    assert.deepEqual(verified.attempts, { failures: [], lockedUntil: null });
    assert.ok(verified.verifiedAt);
  });
});

describe('pay-link keys', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'settle-paykeys-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('generates a development key once into the data directory, readable only by its owner', async () => {
    const warnings: string[] = [];
    const logger = { warn: (m: string) => void warnings.push(m) } as unknown as typeof silentLogger;
    const first = await loadPayLinkKeys({ keys: undefined, dataDir: dir, shared: false, logger });
    const again = await loadPayLinkKeys({ keys: undefined, dataDir: dir, shared: false, logger });
    assert.deepEqual(again.keys.get(again.current), first.keys.get(first.current));
    assert.equal(warnings.length, 1, 'warned once, when generated');
    assert.equal((await stat(join(dir, 'pay-link-keys.json'))).mode & 0o777, 0o600);
    assert.match(await readFile(join(dir, 'pay-link-keys.json'), 'utf8'), /"SETTLE_PAY_LINK_KEYS": "1:/);
  });

  it('refuses to start without SETTLE_PAY_LINK_KEYS on a shared server database, generating nothing', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'settle-paylink-shared-'));
    await assert.rejects(loadPayLinkKeys({ keys: undefined, dataDir: empty, shared: true, logger: silentLogger }), /SETTLE_PAY_LINK_KEYS is required when DATABASE_URL is set/);
    await assert.rejects(stat(join(empty, 'pay-link-keys.json')), /ENOENT/, 'no per-process key was written');
  });

  it('reads SETTLE_PAY_LINK_KEYS, current key first, and names the setting (never the key) when it is malformed', async () => {
    const ring = await loadPayLinkKeys({ keys: `3:${'A'.repeat(43)},2:${'B'.repeat(43)}`, dataDir: dir, shared: true, logger: silentLogger });
    assert.equal(ring.current, 3);
    assert.deepEqual([...ring.keys.keys()].sort(), [2, 3]);
    const short = 'c2hvcnQta2V5';
    await assert.rejects(loadPayLinkKeys({ keys: `1:${short}`, dataDir: dir, shared: true, logger: silentLogger }), (error: Error) => {
      assert.match(error.message, /^SETTLE_PAY_LINK_KEYS: .*at least 32 are required/);
      assert.ok(!error.message.includes(short));
      return true;
    });
  });
});
