import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  ageItems, agingBucket, oldestOpenDate, automaticStatus, balanceEffect, compareVersions, outreachEligible, planPosting, statusChangeProblem, type ActiveEntry, type LedgerLine,
} from '../../src/domain/ledger.ts';

describe('aging', () => {
  it('buckets by days since the date', () => {
    const cases: [string, string][] = [['2026-03-01', '0-30'], ['2026-01-30', '0-30'], ['2026-01-29', '31-60'], ['2025-12-31', '31-60'], ['2025-12-30', '61-90'], ['2025-12-01', '61-90'], ['2025-11-30', '91-120'], ['2025-11-01', '91-120'], ['2025-10-31', '120+'], ['2026-04-01', '0-30']];
    for (const [date, bucket] of cases) assert.equal(agingBucket(date, '2026-03-01'), bucket, date);
    assert.equal(agingBucket('2025-11-01', '2026-03-01'), '91-120', '120 days');
  });

  it('ages first-in first-out: payments pay off the oldest charges first', () => {
    const aging = ageItems([{ date: '2025-10-01', effect: 100 }, { date: '2026-02-20', effect: 50 }, { date: '2026-02-25', effect: -120 }], '2026-03-01');
    assert.deepEqual(aging, { oldestOpenDate: '2026-02-20', bucket: '0-30', buckets: { '0-30': 30, '31-60': 0, '61-90': 0, '91-120': 0, '120+': 0 } });
    assert.deepEqual(ageItems([{ date: '2025-10-01', effect: 100 }, { date: '2025-10-02', effect: -100 }], '2026-03-01').oldestOpenDate, null);
  });

  it('the buckets always add up to the positive part of the balance', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ day: fc.integer({ min: 0, max: 400 }), effect: fc.integer({ min: -10000, max: 10000 }) }), { maxLength: 30 }), (items) => {
        const dated = items.map((i) => ({ date: new Date(Date.UTC(2025, 0, 1 + i.day)).toISOString().slice(0, 10), effect: i.effect }));
        const aging = ageItems(dated, '2026-03-01');
        const total = dated.reduce((s, i) => s + i.effect, 0);
        const inBuckets = Object.values(aging.buckets).reduce((a, b) => a + b, 0);
        const debits = dated.filter((i) => i.effect > 0).reduce((s, i) => s + i.effect, 0);
        assert.equal(inBuckets, debits === 0 ? 0 : Math.max(0, Math.min(debits, total)));
      }),
    );
  });

  it('finds the oldest open date as aging does, whatever the day it is aged on', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ day: fc.integer({ min: 0, max: 400 }), effect: fc.integer({ min: -10000, max: 10000 }) }), { maxLength: 30 }), (items) => {
        const dated = items.map((i) => ({ date: new Date(Date.UTC(2025, 0, 1 + i.day)).toISOString().slice(0, 10), effect: i.effect }));
        assert.equal(oldestOpenDate(dated), ageItems(dated, '2026-03-01').oldestOpenDate);
      }),
    );
  });
});

describe('versions and posting plans', () => {
  it('orders by lastUpdated, then numeric version ids, and counts opaque ids as newer', () => {
    const at = (s: string) => new Date(s);
    assert.ok(compareVersions({ versionId: 'a', lastUpdated: at('2026-01-01') }, { versionId: 'b', lastUpdated: at('2026-01-02') }) < 0);
    assert.ok(compareVersions({ versionId: '10', lastUpdated: null }, { versionId: '9', lastUpdated: null }) > 0);
    assert.equal(compareVersions({ versionId: '3', lastUpdated: null }, { versionId: '3', lastUpdated: at('2026-01-01') }), 0);
    assert.ok(compareVersions({ versionId: 'x', lastUpdated: null }, { versionId: 'y', lastUpdated: null }) > 0);
  });

  const line = (lineKey: string, amount: number): LedgerLine => ({
    lineKey, kind: 'charge', amount: { amount, currency: 'USD' }, serviceDate: '2026-01-01', payer: 'patient', serviceCode: null, description: null,
  });
  const entry = (id: string, lineKey: string, amount: number): ActiveEntry => ({
    id, lineKey, kind: 'charge', amount, currency: 'USD', serviceDate: '2026-01-01', payer: 'patient', serviceCode: null, description: null, accountId: 'a', guarantorId: 'g',
  });

  it('posts only the difference', () => {
    const plan = planPosting([entry('1', 'l1', 100), entry('2', 'l2', 200), entry('3', 'l3', 300)], [line('l1', 100), line('l2', 250), line('l4', 400)], 'a', 'g');
    assert.deepEqual(plan.unchanged.map((e) => e.id), ['1']);
    assert.deepEqual(plan.reverse.map((e) => e.id), ['2', '3']);
    assert.deepEqual(plan.post.map((l) => l.lineKey), ['l2', 'l4']);
    assert.equal(planPosting([entry('1', 'l1', 100)], [line('l1', 100)], 'a', 'other').reverse.length, 1, 'a new guarantor moves the line');
  });

  it('after any sequence of versions the active lines equal the last version', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.integer({ min: 1, max: 5 }), { maxLength: 5 }), { minLength: 1, maxLength: 6 }), (versions) => {
        let active: ActiveEntry[] = [];
        let next = 0;
        let balance = 0;
        for (const amounts of versions) {
          const lines = amounts.map((a, i) => line(`l${i}`, a * 100));
          const plan = planPosting(active, lines, 'a', 'g');
          for (const r of plan.reverse) balance -= balanceEffect(r.kind, r.amount);
          for (const p of plan.post) balance += balanceEffect(p.kind, p.amount.amount);
          const reversed = new Set(plan.reverse.map((e) => e.id));
          active = [...active.filter((e) => !reversed.has(e.id)), ...plan.post.map((p) => entry(String(next++), p.lineKey, p.amount.amount))];
        }
        assert.equal(balance, versions.at(-1)!.reduce((s, a) => s + a * 100, 0));
      }),
    );
  });
});

describe('status rules', () => {
  it('pays off and reopens by itself, and leaves holds to people', () => {
    assert.equal(automaticStatus('open', 0), 'paid');
    assert.equal(automaticStatus('in_plan', -5), 'paid');
    assert.equal(automaticStatus('paid', 100), 'open');
    assert.equal(automaticStatus('on_hold', 0), 'on_hold');
    assert.equal(automaticStatus('disputed', 100), 'disputed');
    assert.equal(balanceEffect('payment', 500), -500);
    assert.equal(balanceEffect('adjustment', 0), 0);
  });
  it('checks status changes', () => {
    assert.match(statusChangeProblem({ status: 'on_hold', actor: 'u' }) ?? '', /needs a reason/);
    assert.equal(statusChangeProblem({ status: 'on_hold', holdReason: 'bankruptcy', actor: 'u' }), undefined);
    assert.match(statusChangeProblem({ status: 'open', holdReason: 'staff', actor: 'u' }) ?? '', /only for on_hold/);
    assert.match(statusChangeProblem({ status: 'open', actor: ' ' }) ?? '', /actor/);
  });
  it('no outreach below the small-balance threshold', () => {
    assert.equal(outreachEligible('open', 499, 500), false);
    assert.equal(outreachEligible('open', 500, 500), true);
    assert.equal(outreachEligible('on_hold', 5000, 500), false);
  });
});
