import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { collectionRateByMonth, MEASURE_NAMES, returnOnInvestment, runMeasure } from '../../src/analytics/index.ts';
import { refreshAllRollups, refreshRollup } from '../../src/analytics/rollup.ts';
import { parseMoney } from '../../src/domain/money.ts';
import { withTransaction } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { PaymentRepository } from '../../src/store/payments.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { buildDataset, cipher, PERIOD, type Dataset } from './dataset.ts';
import { seedAnalyticsPractice } from './seed.ts';
import { DEFINITIONS } from './definitions/index.ts';

/** Periods that cut months, days and the data in different places. */
const PERIODS = [
  PERIOD,
  { from: '2025-11-01', to: '2026-12-31' },
  { from: '2026-01-11', to: '2026-02-20' },
  { from: '2026-02-06', to: '2026-03-15' },
  { from: '2026-03-02', to: '2026-03-02' },
  { from: '2026-03-21', to: '2026-04-30' },
  { from: '2024-01-01', to: '2025-12-31' },
];

describeOnEachDatabase('Analytics rollup', (db) => {
  let data: Dataset;
  before(async () => {
    data = await buildDataset(db());
  });

  /** Every rollup-backed measure, for every period and each practice, against its definition over the live tables. */
  async function assertSameAsDefinitions(label: string, practiceIds = [data.practiceId, data.crowdPracticeId], periods = PERIODS): Promise<void> {
    for (const practiceId of practiceIds) {
      for (const dates of periods) {
        const period = { practiceId, ...dates, currency: 'USD' };
        for (const name of MEASURE_NAMES) {
          const definition = DEFINITIONS[name];
          if (!definition) continue;
          const expected = await definition(db().pool, period);
          const actual = await runMeasure(name, db().pool, period);
          assert.deepEqual(actual.rows, expected.rows, `${label}: ${name} ${dates.from}…${dates.to} (${practiceId === data.practiceId ? 'main' : 'crowd'})`);
        }
      }
    }
  }

  it('gives exactly the numbers of the definitions over the live tables, for any period', async () => {
    await refreshAllRollups(db().pool);
    await assertSameAsDefinitions('fixed dataset');
  });

  it('gives the same numbers on a synthetic practice of 2,000 balances (patients with several, paid and open, Settle payments)', async () => {
    const practiceId = await seedAnalyticsPractice(db(), 2000);
    await refreshRollup(db().pool, practiceId);
    await assertSameAsDefinitions('synthetic practice', [practiceId], [
      { from: '2025-07-01', to: '2026-06-30' }, { from: '2024-07-01', to: '2026-07-31' }, { from: '2025-02-14', to: '2025-03-20' },
    ]);
  });

  it('answers as of the last refresh, says when, and shows a new payment once refreshed', async () => {
    const period = { practiceId: data.practiceId, ...PERIOD };
    const before = await collectionRateByMonth(db().pool, period);
    const roiBefore = await returnOnInvestment(db().pool, period);
    const { rows: [refreshed] } = await db().pool.query<{ as_of: Date }>('SELECT as_of FROM analytics_refreshes WHERE practice_id = $1', [data.practiceId]);
    assert.equal(before.asOf, refreshed!.as_of.toISOString());

    // B1's guarantor pays 10.00 through Settle on 2026-03-30: the payment row and its ledger entry, as the webhook posts them.
    data.clock.set(new Date('2026-03-30T16:00:00Z'));
    const { rows: [b1] } = await db().pool.query<{ patient_id: string; guarantor_id: string; account_id: string }>(
      'SELECT patient_id, guarantor_id, account_id FROM balances WHERE id = $1', [data.balances.b1]);
    const payments = new PaymentRepository(db().pool, data.clock);
    const payment = await payments.createPending({ practiceId: data.practiceId, guarantorId: b1!.guarantor_id, balanceIds: [data.balances.b1], amount: { amount: 1000, currency: 'USD' } });
    await payments.update(data.practiceId, payment.id, { status: 'succeeded', succeeded: true, allocations: [{ balanceId: data.balances.b1, amountMinor: 1000 }] });
    const ledger = new LedgerRepository(db().pool, cipher, data.clock);
    await withTransaction(db(), (tx) => ledger.on(tx).postSource(
      data.practiceId, { connector: 'settle', resourceType: 'Payment', sourceId: `${payment.id}/${data.balances.b1}`, versionId: '1', lastUpdated: null },
      { patientId: b1!.patient_id, guarantorId: b1!.guarantor_id, accountId: b1!.account_id },
      [{ lineKey: 'payment', kind: 'payment', payer: 'patient', amount: parseMoney('10.00', 'USD'), serviceDate: '2026-03-30', serviceCode: null, description: null }],
    ));

    const stale = await collectionRateByMonth(db().pool, period);
    assert.deepEqual(stale, before, 'until the refresh, the answer and its asOf stay those of the last refresh');

    const refresh = await refreshRollup(db().pool, data.practiceId);
    const after = await collectionRateByMonth(db().pool, period);
    assert.equal(after.asOf, refresh.asOf.toISOString());
    assert.ok(after.asOf > before.asOf, 'a later asOf');
    assert.equal(after.rows[2]!.collectedMinor, before.rows[2]!.collectedMinor + 1000, 'March collected 10.00 more');
    const roiAfter = await returnOnInvestment(db().pool, period);
    assert.equal(roiAfter.rows[0]!.collectedMinor, roiBefore.rows[0]!.collectedMinor + 1000);
    assert.equal(roiAfter.rows[0]!.payments, roiBefore.rows[0]!.payments + 1);
    await assertSameAsDefinitions('after a payment');
  });

  it('refreshes by itself for a practice never refreshed, and again when its time zone changed', async () => {
    const period = { practiceId: data.crowdPracticeId, ...PERIOD };
    await db().pool.query('DELETE FROM analytics_refreshes WHERE practice_id = $1', [data.crowdPracticeId]);
    const first = await collectionRateByMonth(db().pool, period);
    assert.ok(first.asOf, 'refreshed on first use');
    const { rows: [row] } = await db().pool.query<{ time_zone: string }>('SELECT time_zone FROM analytics_refreshes WHERE practice_id = $1', [data.crowdPracticeId]);
    assert.equal(row!.time_zone, 'America/New_York');
    await db().pool.query(`UPDATE practices SET time_zone = 'America/Los_Angeles' WHERE id = $1`, [data.crowdPracticeId]);
    const again = await collectionRateByMonth(db().pool, period);
    assert.ok(again.asOf > first.asOf, 'local dates are taken again in the new time zone');
    await assertSameAsDefinitions('after a time zone change');
  });
});
