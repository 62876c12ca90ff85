import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { before, it } from 'node:test';
import { silentLogger } from '../../src/config/logger.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { parseMoney } from '../../src/domain/money.ts';
import { parsePolicy } from '../../src/domain/policy.ts';
import { planPractice } from '../../src/outreach/run.ts';
import { withTransaction } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { OutreachRepository } from '../../src/store/outreach.ts';
import { payLinkKeyRing } from '../../src/domain/pay-link.ts';
import { OutreachDeliveryStore } from '../../src/store/outreach-delivery.ts';
import { PlanningWrites } from '../../src/store/outreach-planning.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { withoutIds } from '../support/phi.ts';

const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
const policy = parsePolicy(JSON.parse(readFileSync(new URL('../../policies/default.json', import.meta.url), 'utf8')) as Record<string, unknown>);

describeOnEachDatabase('OutreachRepository', (db) => {
  const clock = new ManualClock(new Date('2026-04-07T15:00:00Z'));
  let practiceId = '';
  let otherPracticeId = '';
  let balanceId = '';
  let store: OutreachRepository;
  let outbox: OutreachDeliveryStore;

  before(async () => {
    const practices = new PracticeRepository(db().pool);
    practiceId = (await practices.create({ slug: 'or-store', name: 'Store Clinic', timeZone: 'America/Chicago', phone: '555-0100' })).id;
    otherPracticeId = (await practices.create({ slug: 'or-other', name: 'Other Clinic' })).id;
    store = new OutreachRepository(db().pool, cipher, clock);
    outbox = new OutreachDeliveryStore(db().pool, cipher, clock);
    const ledger = new LedgerRepository(db().pool, cipher, clock);
    const patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: 'S1' }, { name: { given: ['Ana'] }, phones: ['617-555-0134'], email: 'ana@example.com' });
    const guarantorId = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
    const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: 'S1' }, patientId });
    const posted = await withTransaction(db(), (tx) => ledger.on(tx).postSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 's1', versionId: '1', lastUpdated: null },
      { accountId, guarantorId, patientId }, [{ lineKey: 'c', kind: 'charge', amount: parseMoney('42.00', 'USD'), serviceDate: '2026-04-01', payer: 'patient', serviceCode: null, description: null }]));
    balanceId = posted.balanceIds[0]!;
  });

  it('keeps consents and opt-outs by blind index only, and hands them back with the caller\'s address filled in', async () => {
    const at = new Date('2026-04-01T00:00:00Z');
    await store.recordConsent(practiceId, { channel: 'sms', address: '(617) 555-0134', source: 'intake-form', at });
    await store.recordConsent(practiceId, { channel: 'email', source: 'portal', at }); // channel-wide
    await store.recordConsent(practiceId, { channel: 'sms', address: '312-555-0199', source: 'intake-form', at }); // someone else
    await store.recordConsent(otherPracticeId, { channel: 'sms', address: '617-555-0134', source: 'intake-form', at }); // another practice
    await store.recordOptOut(practiceId, { channel: 'sms', address: '+16175550134', source: 'keyword:STOP', at: new Date('2026-04-02T00:00:00Z') });
    const rules = await store.contactRules(practiceId, { sms: '617.555.0134', email: 'ana@example.com' });
    assert.deepEqual(rules.consents.map((c) => [c.channel, c.address, c.source]), [['sms', '617.555.0134', 'intake-form'], ['email', undefined, 'portal']]);
    assert.deepEqual(rules.optOuts.map((o) => [o.channel, o.address, o.source, o.optedBackInAt]), [['sms', '617.555.0134', 'keyword:STOP', undefined]]);
    const raw = JSON.stringify((await db().pool.query('SELECT * FROM contact_consents')).rows) + JSON.stringify((await db().pool.query('SELECT * FROM opt_outs')).rows);
    assert.doesNotMatch(withoutIds(raw), /555|0134|ana@/);

    assert.equal(await store.optBackIn(practiceId, 'sms', '617 555 0134', new Date('2026-04-03T00:00:00Z')), 1);
    assert.ok((await store.contactRules(practiceId, { sms: '6175550134' })).optOuts[0]!.optedBackInAt);
    assert.equal(await store.revokeConsents(practiceId, 'sms', '617-555-0134', new Date('2026-04-04T00:00:00Z')), 1);
    assert.ok((await store.contactRules(practiceId, { sms: '6175550134' })).consents.find((c) => c.channel === 'sms')!.revokedAt);
    const listed = await store.listOptOuts(practiceId);
    assert.equal(listed[0]!.address, '+16175550134');
    assert.deepEqual(await store.listOptOuts(otherPracticeId), []);
  });

  it('records a day of registration consents at once, each found by its own address', async () => {
    const at = new Date('2026-04-05T00:00:00Z');
    assert.deepEqual(await store.recordConsents(practiceId, []), []);
    const ids = await store.recordConsents(practiceId, [
      { channel: 'sms', address: '(508) 555-0101', source: 'registration', at },
      { channel: 'email', address: 'lee@example.com', source: 'registration', at },
      { channel: 'sms', address: '508-555-0102', source: 'registration', at },
    ]);
    assert.equal(new Set(ids).size, 3);
    const { rows } = await db().pool.query<{ id: string; channel: string }>('SELECT id, channel FROM contact_consents WHERE id = ANY($1::uuid[])', [ids]);
    assert.deepEqual(ids.map((id) => rows.find((r) => r.id === id)?.channel), ['sms', 'email', 'sms'], 'ids in the order given');
    const first = await store.contactRules(practiceId, { sms: '508.555.0101', email: 'lee@example.com' });
    const registration = (c: { source: string }) => c.source === 'registration'; // the earlier test left a channel-wide email consent
    assert.deepEqual(first.consents.filter(registration).map((c) => [c.channel, c.address]), [['sms', '508.555.0101'], ['email', 'lee@example.com']]);
    assert.deepEqual((await store.contactRules(practiceId, { sms: '5085550102' })).consents.filter(registration).map((c) => c.channel), ['sms']);
  });

  it('encrypts outbox recipients, and refuses a second attempt of one step on one channel', async () => {
    const outboxId = await store.addToOutbox({ practiceId, balanceId, channel: 'sms', recipient: '617-555-0134', body: 'hi', language: 'en', template: 't' });
    const { rows } = await db().pool.query('SELECT recipient_enc FROM outbox WHERE id = $1', [outboxId]);
    assert.match(rows[0].recipient_enc, /^v1\.k1\./);
    assert.equal((await outbox.list(practiceId))[0]!.recipient, '617-555-0134');
    assert.deepEqual(await outbox.list(otherPracticeId), []);
    const attempt = { practiceId, balanceId, stepId: 'manual', channel: 'sms' as const, plannedAt: clock.now(), status: 'sent' as const, outboxId };
    const recorded = await store.recordAttempt(attempt);
    assert.equal(recorded.outboxId, outboxId);
    await assert.rejects(store.recordAttempt(attempt));
    assert.deepEqual((await store.cadenceAttempts(balanceId)).map((a) => [a.stepId, a.outcome]), [['manual', 'sent']]);
    assert.equal(await store.cadenceStart(practiceId, balanceId, '2026-04-07'), '2026-04-07');
    assert.equal(await store.cadenceStart(practiceId, balanceId, '2026-05-01'), '2026-04-07', 'day 0 is kept');
  });

  it('two planners at once send each step once', async () => {
    await db().pool.query('DELETE FROM outreach_attempts WHERE balance_id = $1', [balanceId]);
    await db().pool.query('DELETE FROM outbox WHERE balance_id = $1', [balanceId]);
    await store.recordConsent(practiceId, { channel: 'sms', address: '617-555-0134', source: 'intake-form', at: new Date('2026-04-05T00:00:00Z') });
    await store.recordOptOut(practiceId, { channel: 'email', source: 'staff:test', at: new Date('2026-04-05T00:00:00Z') }); // every email address
    const payLinkKeys = payLinkKeyRing(1, [[1, Buffer.alloc(32, 7)]]);
    const run = () => planPractice({ db: db(), cipher, clock, logger: silentLogger(), practiceId, policy, payLinkKeys });
    const results = await Promise.all([run(), run(), run()]);
    assert.equal(results.reduce((n, r) => n + r.sent.length, 0), 1, 'one text');
    assert.equal(results.reduce((n, r) => n + r.suppressed.length, 0), 1, 'one email suppression');
    assert.equal(results.flatMap((r) => r.suppressed)[0]!.rule, 'opt-out');
    assert.equal((await outbox.list(practiceId, { balanceId })).length, 1);
  });
  it('keeps each balance\'s attempted steps when a day of attempts is written in one statement', async () => {
    const ledger = new LedgerRepository(db().pool, cipher, clock);
    const balances: string[] = [];
    for (const n of [1, 2, 3]) {
      const patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: `A${n}` });
      const guarantorId = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
      const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: `A${n}` }, patientId });
      const posted = await withTransaction(db(), (tx) => ledger.on(tx).postSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: `a${n}`, versionId: '1', lastUpdated: null },
        { accountId, guarantorId, patientId }, [{ lineKey: 'c', kind: 'charge', amount: parseMoney('30.00', 'USD'), serviceDate: '2026-04-01', payer: 'patient', serviceCode: null, description: null }]));
      balances.push(posted.balanceIds[0]!);
    }
    const [a, b, c] = balances as [string, string, string];
    await db().pool.query(
      `INSERT INTO outreach_balances (balance_id, practice_id, first_statement_date, created_at) SELECT id, $2, '2026-04-01', now() FROM unnest($1::uuid[]) AS id`,
      [balances, practiceId],
    );
    const attempted = async () => {
      const { rows } = await db().pool.query<{ balance_id: string; attempted: string[] }>('SELECT balance_id, attempted FROM outreach_balances WHERE balance_id = ANY($1::uuid[])', [balances]);
      return Object.fromEntries(balances.map((id) => [id, [...(rows.find((r) => r.balance_id === id)?.attempted ?? [])].sort()]));
    };
    const write = async (rows: [string, string, 'sms' | 'email' | 'letter', 'sent' | 'suppressed' | 'planned' | 'deferred' | 'failed'][]) => {
      const writes = new PlanningWrites(cipher, clock);
      const ids = rows.map(([balanceId, stepId, channel, status]) => writes.attempt({ practiceId, balanceId, stepId, channel, plannedAt: clock.now(), status }));
      await withTransaction(db(), (tx) => writes.flush(tx));
      return ids;
    };
    await write([[a, 'day-0', 'sms', 'sent'], [a, 'day-0', 'email', 'suppressed'], [b, 'day-0', 'sms', 'deferred'], [b, 'day-7', 'sms', 'planned'], [b, 'day-30', 'letter', 'sent'], [c, 'day-0', 'email', 'failed']]);
    assert.deepEqual(await attempted(), { [a]: ['day-0 email', 'day-0 sms'], [b]: ['day-30 letter'], [c]: ['day-0 email'] }, 'counted statuses only (not planned or deferred)');
    const [later] = await write([[a, 'day-30', 'letter', 'sent'], [b, 'day-0', 'email', 'sent']]);
    assert.deepEqual(await attempted(), { [a]: ['day-0 email', 'day-0 sms', 'day-30 letter'], [b]: ['day-0 email', 'day-30 letter'], [c]: ['day-0 email'] }, 'added to what each held, once');
    await db().pool.query(`UPDATE outreach_attempts SET status = 'deferred' WHERE id = $1`, [later]);
    await db().pool.query(`DELETE FROM outreach_attempts WHERE balance_id = $1`, [c]);
    assert.deepEqual(await attempted(), { [a]: ['day-0 email', 'day-0 sms'], [b]: ['day-0 email', 'day-30 letter'], [c]: [] }, 'updates and deletes still recompute');
  });

  it('keeps outbox messages and attempts tied to their practice and balance, checked once per statement (0037)', async () => {
    const unknown = '00000000-0000-4000-8000-00000000abcd';
    const refused = (table: string, column: string) => (error: { code?: string; constraint?: string }) => {
      assert.deepEqual([error.code, error.constraint], ['23503', `${table}_${column}_fkey`], `${table}.${column}`);
      return true;
    };
    const run = (sql: string, ...values: unknown[]) => db().pool.query(sql, values);
    const flush = (queue: (writes: PlanningWrites) => void) => {
      const writes = new PlanningWrites(cipher, clock);
      queue(writes);
      return withTransaction(db(), (tx) => writes.flush(tx));
    };
    const message = (practice: string, balance: string) => ({ practiceId: practice, balanceId: balance, channel: 'sms' as const, recipient: '617-555-0134', body: 'hi', language: 'en' as const, template: 'fk' });
    const attempt = (practice: string, balance: string, stepId: string) => ({ practiceId: practice, balanceId: balance, stepId, channel: 'letter' as const, plannedAt: clock.now(), status: 'suppressed' as const });
    // A statement naming an existing and a missing practice or balance is refused whole.
    await assert.rejects(flush((w) => { w.outbox(message(practiceId, balanceId)); w.outbox(message(unknown, balanceId)); }), refused('outbox', 'practice_id'));
    await assert.rejects(flush((w) => { w.outbox(message(practiceId, balanceId)); w.outbox(message(practiceId, unknown)); }), refused('outbox', 'balance_id'));
    await assert.rejects(flush((w) => { w.attempt(attempt(practiceId, balanceId, 'fk-1')); w.attempt(attempt(unknown, balanceId, 'fk-2')); }), refused('outreach_attempts', 'practice_id'));
    await assert.rejects(flush((w) => { w.attempt(attempt(practiceId, balanceId, 'fk-1')); w.attempt(attempt(practiceId, unknown, 'fk-2')); }), refused('outreach_attempts', 'balance_id'));
    await assert.rejects(store.addToOutbox(message(practiceId, unknown)), refused('outbox', 'balance_id'));
    await assert.rejects(store.recordAttempt(attempt(unknown, balanceId, 'fk-3')), refused('outreach_attempts', 'practice_id'));
    assert.equal((await run("SELECT 1 FROM outreach_attempts WHERE step_id LIKE 'fk-%' UNION ALL SELECT 1 FROM outbox WHERE template = 'fk'")).rowCount, 0, 'nothing of a refused statement is kept');
    // An attempt still names an outbox message that exists.
    await assert.rejects(store.recordAttempt({ ...attempt(practiceId, balanceId, 'fk-4'), status: 'sent', outboxId: unknown }), refused('outreach_attempts', 'outbox_id'));
    const outboxId = await store.addToOutbox(message(practiceId, balanceId));
    const recorded = await store.recordAttempt({ ...attempt(practiceId, balanceId, 'fk-4'), channel: 'sms', status: 'sent', outboxId });
    // Rows keep their practice and balance; balances are kept; a practice with messages or attempts stays.
    const other = (await new PracticeRepository(db().pool).create({ slug: 'or-fk-other', name: 'Other', timeZone: 'UTC' })).id;
    await assert.rejects(run('UPDATE outbox SET practice_id = $1 WHERE id = $2', other, outboxId), /keeps its practice_id/);
    await assert.rejects(run('UPDATE outbox SET balance_id = $1 WHERE id = $2', unknown, outboxId), /keeps its balance_id/);
    await assert.rejects(run('UPDATE outreach_attempts SET practice_id = $1 WHERE id = $2', other, recorded.id), /keeps its practice_id/);
    await assert.rejects(run('UPDATE outreach_attempts SET balance_id = $1 WHERE id = $2', unknown, recorded.id), /keeps its balance_id/);
    await assert.rejects(run('DELETE FROM balances WHERE id = $1', balanceId), /never deleted/);
    const held = await new PracticeRepository(db().pool).create({ slug: 'or-fk-held', name: 'Held', timeZone: 'UTC' });
    const heldBy = async (table: 'outbox' | 'outreach_attempts') => {
      await (table === 'outbox' ? store.addToOutbox(message(held.id, balanceId)) : store.recordAttempt(attempt(held.id, balanceId, 'fk-held')));
      await assert.rejects(run('DELETE FROM practices WHERE id = $1', held.id), (error: { code?: string; constraint?: string; message: string }) =>
        error.code === '23503' && error.constraint === `${table}_practice_id_fkey` && new RegExp(`still has ${table} rows`).test(error.message));
      await assert.rejects(run('UPDATE practices SET id = $1 WHERE id = $2', unknown, held.id), new RegExp(`still has ${table} rows`));
      await run(`DELETE FROM ${table} WHERE practice_id = $1`, held.id);
    };
    await heldBy('outbox');
    await heldBy('outreach_attempts');
    await run("UPDATE practices SET name = 'Held renamed' WHERE id = $1", held.id);
    assert.equal((await run('DELETE FROM practices WHERE id = $1', held.id)).rowCount, 1, 'a practice without messages or attempts is not held');
    assert.equal((await run('DELETE FROM practices WHERE id = $1', other)).rowCount, 1);
  });

  it('analyzes attempts and outbox messages without statistics on their verdicts, texts and recipients, which no query searches by (0037)', async () => {
    await db().pool.query('ANALYZE outreach_attempts');
    await db().pool.query('ANALYZE outbox');
    const { rows } = await db().pool.query<{ tablename: string; attname: string }>(
      `SELECT tablename, attname FROM pg_stats WHERE schemaname = current_schema() AND tablename IN ('outreach_attempts', 'outbox')`,
    );
    const analyzed = new Set(rows.map((r) => `${r.tablename}.${r.attname}`));
    for (const column of ['outreach_attempts.balance_id', 'outreach_attempts.status', 'outbox.balance_id', 'outbox.channel']) assert.ok(analyzed.has(column), column);
    for (const column of ['outreach_attempts.verdicts', 'outbox.recipient_enc', 'outbox.subject', 'outbox.body', 'outbox.html']) assert.ok(!analyzed.has(column), column);
  });
});
