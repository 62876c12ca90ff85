import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { StaffTaskRepository } from '../../src/store/staff-tasks.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { seedHousehold, type Household } from '../payments/webhook-fixtures.ts';

describeOnEachDatabase('StaffTaskRepository', (db) => {
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  let h: Household;
  let tasks: StaffTaskRepository;

  before(async () => {
    h = await seedHousehold(db(), clock, 'staff-tasks');
    tasks = new StaffTaskRepository(db().pool, clock);
  });

  it('opens a dispute on a balance, lists it open first, and resolves it once', async () => {
    const task = await tasks.open({ practiceId: h.practiceId, kind: 'dispute', balanceId: h.olderBalanceId, guarantorId: h.guarantorId, note: 'I paid this at the desk' });
    clock.advance(60_000);
    const resolvedEarlier = await tasks.open({ practiceId: h.practiceId, kind: 'assistance', balanceId: h.olderBalanceId });
    assert.equal(await tasks.resolve(h.practiceId, resolvedEarlier.id, 'staff:front-desk', 'approved 50% discount'), true);
    const listed = await tasks.list(h.practiceId);
    assert.deepEqual(listed.map((t) => [t.kind, t.status]), [['dispute', 'open'], ['assistance', 'resolved']]);
    assert.deepEqual((await tasks.list(h.practiceId, { status: 'open' })).map((t) => t.id), [task.id]);
    assert.equal(await tasks.resolve(h.practiceId, resolvedEarlier.id, 'staff:other', 'again'), false, 'a resolved task stays as first resolved');
    const stored = await tasks.get(h.practiceId, resolvedEarlier.id);
    assert.equal(stored?.resolvedBy, 'staff:front-desk');
    assert.equal(stored?.resolution, 'approved 50% discount');
  });

  it('pages open tasks newest first with limit and offset', async () => {
    const paging = (await new PracticeRepository(db().pool).create({ slug: 'staff-tasks-paging', name: 'Paging' })).id;
    const opened = [];
    for (let i = 0; i < 5; i++) {
      clock.advance(1_000);
      opened.push(await tasks.open({ practiceId: paging, kind: 'other', note: `task ${i}` }));
    }
    const newestFirst = opened.map((t) => t.id).reverse();
    assert.deepEqual((await tasks.list(paging, { status: 'open', limit: 2 })).map((t) => t.id), newestFirst.slice(0, 2));
    assert.deepEqual((await tasks.list(paging, { status: 'open', limit: 2, offset: 2 })).map((t) => t.id), newestFirst.slice(2, 4));
    assert.deepEqual((await tasks.list(paging, { status: 'open', limit: 2, offset: 4 })).map((t) => t.id), newestFirst.slice(4));
  });

  it('keeps each practice to its own tasks and refuses an unknown kind', async () => {
    const other = (await new PracticeRepository(db().pool).create({ slug: 'staff-tasks-other', name: 'Other' })).id;
    const task = await tasks.open({ practiceId: h.practiceId, kind: 'other', note: 'call back' });
    assert.equal(await tasks.get(other, task.id), undefined);
    assert.equal(await tasks.resolve(other, task.id, 'staff:x', 'no'), false);
    await assert.rejects(tasks.open({ practiceId: h.practiceId, kind: 'gossip' as never }), /staff_tasks_kind_check|check constraint/);
  });
});
