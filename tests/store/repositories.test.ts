import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { ApiKeyRepository } from '../../src/store/api-keys.ts';
import { AuditLog } from '../../src/store/audit.ts';
import { CheckpointRepository } from '../../src/store/checkpoints.ts';
import { withTransaction } from '../../src/store/database.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { describeOnEachDatabase } from '../support/databases.ts';

describeOnEachDatabase('foundation repositories', (db) => {
  const clock = new ManualClock(new Date('2026-03-01T15:00:00Z'));

  it('creates a practice once, however many processes ensure it', async () => {
    const practices = new PracticeRepository(db().pool);
    const [a, b] = await Promise.all([
      practices.ensure({ slug: 'riverside', name: 'Riverside Pediatrics' }),
      practices.ensure({ slug: 'riverside', name: 'Riverside Pediatrics' }),
    ]);
    assert.equal(a.id, b.id);
    assert.equal(a.timeZone, 'America/New_York');
    await assert.rejects(practices.create({ slug: 'riverside', name: 'Again' }), /duplicate key/);
    await assert.rejects(practices.create({ slug: 'Not A Slug', name: 'Bad' }), /check constraint/);
  });

  it('gives an API key once, stores only its hash, and stops accepting it once revoked', async () => {
    const practice = await new PracticeRepository(db().pool).ensure({ slug: 'keys', name: 'Keys Clinic' });
    const keys = new ApiKeyRepository(db().pool, clock);
    const { key, secret } = await keys.create(practice.id, 'front desk', 'staff');
    assert.match(secret, /^settle_[A-Za-z0-9_-]{12}_[A-Za-z0-9_-]{43}$/);
    assert.ok(secret.startsWith(key.prefix));
    const stored = await db().pool.query('SELECT * FROM api_keys WHERE id = $1', [key.id]);
    assert.ok(!JSON.stringify(stored.rows).includes(secret.slice(20)), 'the secret is not stored');

    const principal = await keys.authenticate(secret);
    assert.deepEqual(principal, { keyId: key.id, practiceId: practice.id, name: 'front desk', role: 'staff' });
    assert.equal(await keys.authenticate(secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A')), undefined);
    assert.equal(await keys.authenticate('not a key'), undefined);
    assert.ok((await keys.list(practice.id))[0].lastUsedAt, 'last use recorded');

    const other = await new PracticeRepository(db().pool).ensure({ slug: 'other', name: 'Other Clinic' });
    assert.equal(await keys.revoke(key.id, other.id), undefined, 'another practice cannot revoke it');
    assert.ok(await keys.authenticate(secret));
    const revoked = await keys.revoke(key.prefix);
    assert.ok(revoked?.revokedAt);
    assert.equal(await keys.authenticate(secret), undefined);
    assert.equal(await keys.revoke('settle_doesnotexist'), undefined);
  });

  it('keeps the audit trail append-only and detects an event altered behind its back', async () => {
    const practice = await new PracticeRepository(db().pool).ensure({ slug: 'audit', name: 'Audit Clinic' });
    const audit = new AuditLog(db(), clock);
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        audit.append({ practiceId: practice.id, actor: 'cli', action: 'apikey.create', entityType: 'api_key', entityId: String(i), detail: { role: 'staff', n: i } }),
      ),
    );
    const events = await audit.list(practice.id);
    assert.equal(events.length, 10);
    assert.equal(await audit.verify(practice.id), undefined);
    await assert.rejects(db().pool.query('UPDATE audit_events SET actor = $1', ['mallory']), /append-only/);
    await assert.rejects(db().pool.query('DELETE FROM audit_events'), /append-only/);

    // Someone with superuser rights disables the guard and edits a row directly.
    await withTransaction(db(), async (tx) => {
      await tx.query('ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update');
      await tx.query("UPDATE audit_events SET detail = '{\"role\":\"admin\"}' WHERE id = $1", [events[4].id]);
      await tx.query('ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update');
    });
    assert.deepEqual(await audit.verify(practice.id), { eventId: events[4].id, reason: 'its content does not match its hash (altered)' });
  });

  it('moves connector checkpoints only with the transaction that stored the page', async () => {
    const practice = await new PracticeRepository(db().pool).ensure({ slug: 'sync', name: 'Sync Clinic' });
    const checkpoints = new CheckpointRepository(db().pool, clock);
    assert.equal(await checkpoints.get(practice.id, 'epic', 'Invoice'), undefined);
    await checkpoints.set(practice.id, 'epic', 'Invoice', '2026-02-01T00:00:00Z');
    await assert.rejects(
      withTransaction(db(), async (tx) => {
        await new CheckpointRepository(tx, clock).set(practice.id, 'epic', 'Invoice', '2026-02-02T00:00:00Z');
        throw new Error('page failed to store');
      }),
      /page failed/,
    );
    assert.equal((await checkpoints.get(practice.id, 'epic', 'Invoice'))?.position, '2026-02-01T00:00:00Z');
    await checkpoints.set(practice.id, 'epic', 'Account', 'cursor-9');
    assert.deepEqual((await checkpoints.list(practice.id, 'epic')).map((c) => c.resourceType), ['Account', 'Invoice']);
    assert.equal(await checkpoints.reset(practice.id, 'epic'), 2);
  });
});
