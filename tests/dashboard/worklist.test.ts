import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, it } from 'node:test';
import type { SourceRecord } from '../../src/domain/source-record.ts';
import { ingestRecord } from '../../src/ingest/pipeline.ts';
import { loadMappings } from '../../src/mapping/load.ts';
import { AuditLog } from '../../src/store/audit.ts';
import { withTransaction } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { QuarantineRepository } from '../../src/store/quarantine.ts';
import { SourceRecordRepository } from '../../src/store/source-records.ts';
import { StaffTaskRepository } from '../../src/store/staff-tasks.ts';
import { ROOT } from '../support/cli.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { cipher, pendingPayment } from '../payments/webhook-fixtures.ts';
import { money } from '../../src/domain/money.ts';
import { PaymentRepository } from '../../src/store/payments.ts';
import { startDashboard, Visitor, type DashboardFixture } from './support.ts';

const invoice = JSON.parse(readFileSync(`${ROOT}node_modules/hl7.fhir.r4.examples/Invoice-example.json`, 'utf8')) as Record<string, unknown>;

describeOnEachDatabase('Staff dashboard worklist', (db) => {
  let f: DashboardFixture;
  let staff: Visitor;
  before(async () => {
    f = await startDashboard(db(), 'dash-worklist');
    staff = new Visitor(f.url);
    assert.equal((await staff.signIn(f.keys.staff.secret)).status, 303);
  });
  after(() => f.close());

  const tasks = () => new StaffTaskRepository(db().pool, f.clock);

  it('lists open tasks 25 to a page with previous/next links, and audits who saw which', async () => {
    for (let i = 0; i < 27; i++) await tasks().open({ practiceId: f.household.practiceId, kind: 'undeliverable', note: `returned letter ${i}` });
    const first = await (await staff.request('/dashboard/worklist?kind=undeliverable')).text();
    assert.equal((first.match(/returned letter \d+/g) ?? []).length, 25);
    assert.match(first, /returned letter 26/, 'newest first');
    assert.match(first, /href="\/dashboard\/worklist\?kind=undeliverable&amp;offset=25" rel="next"/);
    const second = await (await staff.request('/dashboard/worklist?kind=undeliverable&offset=25')).text();
    assert.deepEqual(second.match(/returned letter \d+/g), ['returned letter 1', 'returned letter 0']);
    assert.match(second, /rel="prev"/);
    assert.doesNotMatch(second, /rel="next"/);
    const views = (await new AuditLog(db(), f.clock).list(f.household.practiceId)).filter((e) => e.action === 'worklist.view');
    assert.equal((views.at(-1)!.detail.tasks as string[]).length, 2);
    for (const task of await tasks().list(f.household.practiceId, { kind: 'undeliverable', status: 'open', limit: 100 })) {
      await tasks().resolve(f.household.practiceId, task.id, 'test', 'cleanup');
    }
  });

  it('resolves a dispute with "Lift hold and resolve": the balance is open again, the task resolved, both recorded', async () => {
    const ledger = new LedgerRepository(db().pool, cipher, f.clock);
    await ledger.setStatus(f.household.newerBalanceId, { status: 'on_hold', holdReason: 'dispute', actor: 'patient:paylink' });
    const task = await tasks().open({ practiceId: f.household.practiceId, kind: 'dispute', balanceId: f.household.newerBalanceId, note: 'never had this visit' });
    const csrf = await staff.csrf('/dashboard/worklist');
    const done = await staff.request(`/dashboard/worklist/${task.id}/resolve`, { form: { csrf, action: 'lift-hold', note: 'visit confirmed with patient' } });
    assert.equal(done.status, 303);
    assert.equal(done.headers.get('location'), '/dashboard/worklist?notice=hold-lifted');
    assert.match(await (await staff.request(done.headers.get('location')!)).text(), /the hold is lifted/);
    const balance = await ledger.getBalance(f.household.newerBalanceId);
    assert.deepEqual([balance!.status, balance!.holdReason], ['open', null]);
    const resolved = await tasks().get(f.household.practiceId, task.id);
    assert.deepEqual([resolved!.status, resolved!.resolvedBy, resolved!.resolution], ['resolved', `apikey:${f.keys.staff.id}`, 'visit confirmed with patient']);
    const event = (await new AuditLog(db(), f.clock).list(f.household.practiceId)).find((e) => e.action === 'staff_task.resolve' && e.entityId === task.id);
    assert.deepEqual(event!.detail, { via: 'dashboard', kind: 'dispute', balanceId: f.household.newerBalanceId, balanceStatus: 'open' });
    const again = await staff.request(`/dashboard/worklist/${task.id}/resolve`, { form: { csrf, action: 'lift-hold' } });
    assert.equal(again.headers.get('location'), '/dashboard/worklist?notice=already-resolved');
  });

  it('reprocesses a quarantined record through the API\'s own reprocess: still failing stays listed, fixed posts to the ledger', async () => {
    const { subject: _subject, ...noPatient }: Record<string, unknown> = { ...invoice, id: 'inv-dashboard' };
    const record: SourceRecord = {
      practiceId: f.household.practiceId, connector: 'ehr', transport: 'fhir-r4', resourceType: 'Invoice', sourceId: 'inv-dashboard', versionId: '1',
      lastUpdated: null, contentHash: 'a'.repeat(64), body: noPatient,
    };
    await new SourceRecordRepository(db().pool, f.clock).storeMany(db().pool, [record]);
    const mapping = loadMappings(ROOT).get('generic-fhir-invoice')!;
    const result = await withTransaction(db(), (tx) => ingestRecord(tx, record, mapping, { cipher, clock: f.clock }));
    assert.equal(result.status, 'quarantined');
    const [entry] = await new QuarantineRepository(db().pool, f.clock).list(f.household.practiceId);
    const page = await (await staff.request('/dashboard/worklist')).text();
    assert.match(page, /Invoice inv-dashboard/);
    assert.match(page, new RegExp(`action="/dashboard/quarantine/${entry!.id}/reprocess"`));

    const csrf = await staff.csrf('/dashboard/worklist');
    const still = await staff.request(`/dashboard/quarantine/${entry!.id}/reprocess`, { form: { csrf } });
    assert.equal(still.headers.get('location'), '/dashboard/worklist?notice=still-quarantined#quarantine');
    assert.equal((await new QuarantineRepository(db().pool, f.clock).list(f.household.practiceId)).length, 1);

    // The EHR's record is corrected at the source (same version, as a mapping fix would see it).
    await db().pool.query("UPDATE source_records SET body = $2::jsonb WHERE practice_id = $1 AND source_id = 'inv-dashboard'", [
      f.household.practiceId, JSON.stringify({ ...invoice, id: 'inv-dashboard' }),
    ]);
    const fixed = await staff.request(`/dashboard/quarantine/${entry!.id}/reprocess`, { form: { csrf } });
    assert.equal(fixed.headers.get('location'), '/dashboard/worklist?notice=reprocessed#quarantine');
    assert.deepEqual(await new QuarantineRepository(db().pool, f.clock).list(f.household.practiceId), []);
    const posted = await new LedgerRepository(db().pool, cipher, f.clock).entriesOfSource(f.household.practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 'inv-dashboard' });
    assert.ok(posted.length > 0, 'the record is in the ledger');
    assert.match(await (await staff.request('/dashboard/worklist')).text(), /Nothing is quarantined/);
  });

  it('answers 404 for a task or quarantine entry of another practice, changing nothing', async () => {
    const other = await startDashboard(db(), 'dash-worklist-other');
    try {
      const foreign = await tasks().open({ practiceId: other.household.practiceId, kind: 'assistance' });
      const csrf = await staff.csrf('/dashboard/worklist');
      assert.equal((await staff.request(`/dashboard/worklist/${foreign.id}/resolve`, { form: { csrf, action: 'resolve' } })).status, 404);
      assert.equal((await tasks().get(other.household.practiceId, foreign.id))!.status, 'open');
    } finally {
      await other.close();
    }
  });

  it('lists a dead write-back with what the EHR said, and replays it (audited); replaying again says there is nothing to replay', async () => {
    const payments = new PaymentRepository(db().pool, f.clock);
    const payment = await pendingPayment(db(), f.clock, f.household, money(2_500, 'USD'));
    await payments.enqueueWriteback({
      practiceId: f.household.practiceId, paymentId: payment.id, kind: 'payment', writebackId: `payment-${payment.id}`, amount: money(2_500, 'USD'),
      allocations: [{ balanceId: f.household.olderBalanceId, amountMinor: 2_500 }],
    });
    const row = (await payments.writebacks(f.household.practiceId, payment.id))[0]!;
    await payments.claimDueWritebacks({ limit: 10, leaseMs: 60_000, practiceIds: [f.household.practiceId] });
    await payments.finishWriteback(row.id, { status: 'dead', target: 'ehr', error: 'HTTP 422: Account A-1 is closed' });

    const page = await (await staff.request('/dashboard/worklist')).text();
    assert.match(page, new RegExp(`payment-${payment.id}`));
    assert.match(page, /HTTP 422: Account A-1 is closed/);
    assert.match(page, /\$25\.00/);
    const csrf = await staff.csrf('/dashboard/worklist');
    const replayed = await staff.request(`/dashboard/writebacks/${row.id}/replay`, { form: { csrf } });
    assert.equal(replayed.headers.get('location'), '/dashboard/worklist?notice=replayed#writebacks');
    assert.equal((await payments.getWriteback(f.household.practiceId, row.id))!.status, 'pending');
    const event = (await new AuditLog(db(), f.clock).list(f.household.practiceId)).find((e) => e.action === 'writeback.replay' && e.entityId === row.id);
    assert.equal(event?.actor, `apikey:${f.keys.staff.id}`);
    const again = await staff.request(`/dashboard/writebacks/${row.id}/replay`, { form: { csrf } });
    assert.equal(again.headers.get('location'), '/dashboard/worklist?notice=not-replayable#writebacks');
  });
});
