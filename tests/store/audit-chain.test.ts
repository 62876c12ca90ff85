import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, mock } from 'node:test';
import pg from 'pg';
import { ManualClock } from '../../src/domain/clock.ts';
import { AuditLog, type AuditEvent } from '../../src/store/audit.ts';
import { openDatabase, type Database } from '../../src/store/database.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { ROOT, runCli } from '../support/cli.ts';
import { describeOnEachDatabase } from '../support/databases.ts';

/** Runs SQL on audit_events with its append-only triggers off, as someone with superuser access could. */
async function tamper(db: Database, sql: string, values: unknown[]): Promise<void> {
  const client = await db.pool.connect();
  try {
    await client.query('ALTER TABLE audit_events DISABLE TRIGGER USER');
    await client.query(sql, values);
  } finally {
    await client.query('ALTER TABLE audit_events ENABLE TRIGGER USER');
    client.release();
  }
}

describeOnEachDatabase('The audit chain', (db) => {
  const clock = new ManualClock(new Date('2026-05-01T12:00:00Z'));
  let n = 0;
  /** A fresh practice with five events. */
  const practiceWithEvents = async (): Promise<{ practiceId: string; events: AuditEvent[]; audit: AuditLog }> => {
    n += 1;
    const practiceId = (await new PracticeRepository(db().pool).create({ slug: `audit-${n}`, name: 'Audit Clinic' })).id;
    const audit = new AuditLog(db(), clock);
    const events: AuditEvent[] = [];
    for (let i = 0; i < 5; i += 1) {
      clock.advance(60_000);
      events.push(await audit.append({ practiceId, actor: 'apikey:k1', action: 'balance.view', entityType: 'balance', entityId: `b${i}`, detail: { i } }));
    }
    return { practiceId, events, audit };
  };

  it('an untouched chain checks out, and the database refuses to change or delete an event', async () => {
    const { practiceId, events, audit } = await practiceWithEvents();
    assert.deepEqual(await audit.check(practiceId), { events: 5, lastEventId: events[4]!.id });
    await assert.rejects(db().pool.query("UPDATE audit_events SET actor = 'x' WHERE id = $1", [events[1]!.id]), /append-only/);
    await assert.rejects(db().pool.query('DELETE FROM audit_events WHERE id = $1', [events[1]!.id]), /append-only/);
  });

  it('a segment appends its events in order after the chain, each chained as a single append would, in one statement', async () => {
    const { practiceId, events, audit } = await practiceWithEvents();
    clock.advance(60_000);
    const queries = mock.method(db().pool, 'query');
    const segment = await audit.appendSegment([0, 1, 2].map((i) => ({ practiceId, actor: 'system', action: 'writeback.delivered', entityType: 'writeback', entityId: `w${i}`, detail: { i } })));
    assert.equal(queries.mock.callCount(), 1, 'one statement for the whole segment');
    queries.mock.restore();
    assert.deepEqual(segment.map((e) => e.entityId), ['w0', 'w1', 'w2']);
    assert.equal(segment[0]!.prevHash, events[4]!.hash, 'the segment continues the chain');
    assert.equal(segment[1]!.prevHash, segment[0]!.hash);
    assert.ok(BigInt(segment[0]!.id) < BigInt(segment[2]!.id));
    assert.deepEqual(await audit.check(practiceId), { events: 8, lastEventId: segment[2]!.id });
    assert.deepEqual(await audit.appendSegment([]), []);
    await assert.rejects(audit.appendSegment([segment[0]!, { ...segment[1]!, practiceId: events[0]!.id }]), /one practice/);
  });

  it('names an event changed directly in the database (triggers disabled)', async () => {
    const { practiceId, events, audit } = await practiceWithEvents();
    await tamper(db(), `UPDATE audit_events SET detail = '{"i": 99}' WHERE id = $1`, [events[2]!.id]);
    const check = await audit.check(practiceId);
    assert.deepEqual(check.broken, { eventId: events[2]!.id, reason: 'its content does not match its hash (altered)' });
    assert.equal(check.events, 2);
    assert.deepEqual(await audit.verify(practiceId), check.broken);
  });

  it('finds a deleted event from the one after it', async () => {
    const { practiceId, events, audit } = await practiceWithEvents();
    await tamper(db(), 'DELETE FROM audit_events WHERE id = $1', [events[1]!.id]);
    const broken = (await audit.check(practiceId)).broken;
    assert.equal(broken?.eventId, events[2]!.id);
    assert.match(broken!.reason, new RegExp(`events between ${events[0]!.id} and it were deleted`));
  });

  it('finds the newest events deleted, and an event appended after such a deletion', async () => {
    const { practiceId, events, audit } = await practiceWithEvents();
    await tamper(db(), 'DELETE FROM audit_events WHERE id = ANY($1::bigint[])', [[events[3]!.id, events[4]!.id]]);
    const tail = (await audit.check(practiceId)).broken;
    assert.equal(tail?.eventId, events[4]!.id);
    assert.match(tail!.reason, /2 event\(s\) after .* were deleted/);
    const later = await audit.append({ practiceId, actor: 'system', action: 'hl7.message.prune', entityType: 'hl7_message' });
    assert.equal((await audit.check(practiceId)).broken?.eventId, later.id, 'the next event still chains to the deleted one');
  });

  it('finds the first event deleted, and every event deleted', async () => {
    const first = await practiceWithEvents();
    await tamper(db(), 'DELETE FROM audit_events WHERE id = $1', [first.events[0]!.id]);
    assert.equal((await first.audit.check(first.practiceId)).broken?.eventId, first.events[1]!.id);
    const all = await practiceWithEvents();
    await tamper(db(), 'DELETE FROM audit_events WHERE practice_id = $1', [all.practiceId]);
    assert.equal((await all.audit.check(all.practiceId)).broken?.eventId, all.events[4]!.id);
  });

  it('records a configuration change only when the data files changed, naming what changed', async () => {
    const { practiceId, audit } = await practiceWithEvents();
    const files = [{ file: 'policies/default.json', data: { name: 'default', steps: [1, 2] } }, { file: 'mappings/a.json', data: { name: 'a' } }];
    const first = await audit.recordConfiguration(practiceId, files);
    assert.deepEqual([first?.action, first?.detail.added, first?.detail.changed, first?.detail.removed], ['config.change', ['mappings/a.json', 'policies/default.json'], [], []]);
    assert.equal(await audit.recordConfiguration(practiceId, [...files].reverse()), undefined, 'the same files again: nothing to record');
    const next = await audit.recordConfiguration(practiceId, [{ file: 'policies/default.json', data: { steps: [1, 2, 3], name: 'default' } }]);
    assert.deepEqual([next?.detail.added, next?.detail.changed, next?.detail.removed], [[], ['policies/default.json'], ['mappings/a.json']]);
    assert.equal((await audit.check(practiceId)).broken, undefined);
  });

  it('keeps appends made at once one line, from a practice\'s first event on (ids in chain order)', async () => {
    n += 1;
    const practiceId = (await new PracticeRepository(db().pool).create({ slug: `audit-${n}`, name: 'Audit Clinic' })).id;
    const audit = new AuditLog(db(), clock);
    const events = await Promise.all(Array.from({ length: 8 }, (_, i) => audit.append({ practiceId, actor: 'system', action: 'balance.view', entityType: 'balance', detail: { i } })));
    const newest = String(Math.max(...events.map((e) => Number(e.id))));
    assert.deepEqual(await audit.check(practiceId), { events: 8, lastEventId: newest });
    const more = await Promise.all(Array.from({ length: 4 }, () => audit.append({ practiceId, actor: 'system', action: 'balance.view', entityType: 'balance' })));
    assert.deepEqual(await audit.check(practiceId), { events: 12, lastEventId: String(Math.max(...more.map((e) => Number(e.id)))) });
  });

  it('appends in one statement, its hash made in SQL over any text as the check recomputes it in Node', async () => {
    const { practiceId, audit } = await practiceWithEvents();
    const query = mock.method(pg.Client.prototype, 'query');
    let event: AuditEvent;
    try {
      event = await audit.append({
        practiceId, actor: 'apikey:ü', action: 'balance.view', entityType: 'balance', entityId: 'ça-1',
        detail: { note: 'Ünïcode — 🦷 "quoted"\nnew line \\ tab\t', nested: { b: [1, 'é', null], a: true } },
      });
      assert.equal(query.mock.callCount(), 1);
    } finally {
      query.mock.restore();
    }
    assert.deepEqual(await audit.check(practiceId), { events: 6, lastEventId: event.id });
  });

  it('keeps each practice its own chain', async () => {
    const a = await practiceWithEvents();
    const b = await practiceWithEvents();
    await tamper(db(), `UPDATE audit_events SET actor = 'someone-else' WHERE id = $1`, [a.events[0]!.id]);
    assert.equal((await a.audit.check(a.practiceId)).broken?.eventId, a.events[0]!.id);
    assert.equal((await b.audit.check(b.practiceId)).broken, undefined);
  });
});

describe('settle audit verify', () => {
  it('exits 0 on an intact trail, and 1 naming the first broken event after a row was changed in the database', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'settle-audit-'));
    const env = { DATABASE_URL: undefined, SETTLE_ENCRYPTION_KEYS: undefined, SETTLE_BLIND_INDEX_KEY: undefined, SETTLE_CONFIG_DIR: ROOT, SETTLE_DATA_DIR: dataDir };
    try {
      // Creating and revoking keys are audited events.
      const created = await runCli(['apikey', 'create', '--role', 'staff', '--name', 'Front desk', '--json'], env);
      assert.equal(created.code, 0, created.stderr);
      const { id } = JSON.parse(created.stdout) as { id: string };
      assert.equal((await runCli(['apikey', 'revoke', id], env)).code, 0);
      const intact = await runCli(['audit', 'verify'], env);
      assert.equal(intact.code, 0, intact.stderr);
      assert.match(intact.stdout, /^default: 2 event\(s\), chain intact$/m);

      const db = await openDatabase({ dataDir, poolSize: 1 });
      let eventId = '';
      try {
        eventId = (await db.pool.query<{ id: string }>("SELECT id::text FROM audit_events WHERE action = 'apikey.create'")).rows[0]!.id;
        await tamper(db, "UPDATE audit_events SET actor = 'cli-someone-else' WHERE id = $1", [eventId]);
      } finally {
        await db.close();
      }
      const broken = await runCli(['audit', 'verify', '--practice', 'default'], env);
      assert.equal(broken.code, 1);
      assert.match(broken.stdout, new RegExp(`^default: BROKEN at event ${eventId}: its content does not match its hash \\(altered\\)`, 'm'));
      assert.match(broken.stderr, /The audit trail was altered/);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
