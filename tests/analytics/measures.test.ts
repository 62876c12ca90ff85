import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import {
  agingBuckets, byAgeGroupAndZip3, channelEffectiveness, collectionRateByMonth, paymentPlans, returnOnInvestment, unpaidByPayer, unpaidByServiceCode,
} from '../../src/analytics/index.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { buildDataset, PERIOD, type Dataset } from './dataset.ts';

describeOnEachDatabase('Analytics measures on a fixed practice', (db) => {
  let data: Dataset;
  before(async () => {
    data = await buildDataset(db());
  });
  const period = () => ({ practiceId: data.practiceId, ...PERIOD });

  it('collection rate by month: patient charges billed vs patient payments collected, and days to pay', async () => {
    const result = await collectionRateByMonth(db().pool, period());
    assert.deepEqual(result.rows, [
      // B1 150.00 + B3 100.00 + B4 75.00 billed; nothing collected.
      { month: '2026-01', billedMinor: 32500, collectedMinor: 0, rate: 0, balancesPaid: 0, daysToPayMedian: null, daysToPayP90: null },
      // B2 40.00 billed; B1's 50.00 collected.
      { month: '2026-02', billedMinor: 4000, collectedMinor: 5000, rate: 1.25, balancesPaid: 0, daysToPayMedian: null, daysToPayP90: null },
      // B3's 25.00 charge corrected to 30.00 (net 30.00); B2's 40.00 through Settle + B3's 250.00. B2 paid 10 days after service.
      { month: '2026-03', billedMinor: 3000, collectedMinor: 29000, rate: 9.6667, balancesPaid: 1, daysToPayMedian: 10, daysToPayP90: 10 },
    ]);
    assert.deepEqual(result.columns, ['month', 'billedMinor', 'collectedMinor', 'rate', 'balancesPaid', 'daysToPayMedian', 'daysToPayP90']);
  });

  it('days to pay are the median and 90th percentile (interpolated) of the balances paid in the month', async () => {
    // A second practice of three balances paid 10, 20 and 40 days after service in April.
    const { PracticeRepository } = await import('../../src/store/practices.ts');
    const { LedgerRepository } = await import('../../src/store/ledger.ts');
    const { withTransaction } = await import('../../src/store/database.ts');
    const { cipher } = await import('./dataset.ts');
    const practiceId = (await new PracticeRepository(db().pool).create({ slug: 'days-to-pay', name: 'Days', timeZone: 'UTC' })).id;
    const ledger = new LedgerRepository(db().pool, cipher, data.clock);
    for (const [i, days] of [10, 20, 40].entries()) {
      const patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: `D${i}` });
      const guarantorId = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
      const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: `D${i}` }, patientId });
      const target = { patientId, guarantorId, accountId };
      const amount = { amount: 1000, currency: 'USD' };
      const serviceDate = new Date(Date.UTC(2026, 3, 30) - days * 86_400_000).toISOString().slice(0, 10);
      data.clock.set(new Date('2026-04-30T12:00:00Z'));
      await withTransaction(db(), (tx) => ledger.on(tx).postSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: `d${i}`, versionId: '1', lastUpdated: null }, target, [
        { lineKey: 'c', kind: 'charge', payer: 'patient', amount, serviceDate, serviceCode: null, description: null },
        { lineKey: 'p', kind: 'payment', payer: 'patient', amount, serviceDate: '2026-04-30', serviceCode: null, description: null },
      ]));
    }
    data.clock.set(new Date('2026-05-01T12:00:00Z'));
    const result = await collectionRateByMonth(db().pool, { practiceId, from: '2026-04-01', to: '2026-04-30', currency: 'USD' });
    // percentile_cont over 10, 20, 40: median 20; p90 = 20 + 0.8 × (40 − 20) = 36. The 40-day charge was in March,
    // so April billed 20.00 and collected 30.00 (cash basis).
    assert.deepEqual(result.rows, [{ month: '2026-04', billedMinor: 2000, collectedMinor: 3000, rate: 1.5, balancesPaid: 3, daysToPayMedian: 20, daysToPayP90: 36 }]);
  });

  it('outstanding by the bucket of the oldest open charge; recovered by the age of the balance when paid', async () => {
    const result = await agingBuckets(db().pool, period());
    assert.deepEqual(result.rows, [
      // B1's 50.00 (26 days after its charge) and B2's 40.00 (10 days).
      { bucket: '0-30', balances: 0, outstandingMinor: 0, payments: 2, recoveredMinor: 9000 },
      { bucket: '31-60', balances: 0, outstandingMinor: 0, payments: 0, recoveredMinor: 0 },
      // On 2026-03-31: B1 owes 100.00 since 2026-01-10 (80 days), B3 80.00 since 2026-01-15 (75 days); B4 is written off.
      { bucket: '61-90', balances: 2, outstandingMinor: 18000, payments: 0, recoveredMinor: 0 },
      // B3's 250.00, 99 days after its first charge (2025-12-01).
      { bucket: '91-120', balances: 0, outstandingMinor: 0, payments: 1, recoveredMinor: 25000 },
      { bucket: '120+', balances: 0, outstandingMinor: 0, payments: 0, recoveredMinor: 0 },
    ]);
  });

  it('unpaid by service code: what is still owed sits on the newest charges (first in, first out)', async () => {
    const result = await unpaidByServiceCode(db().pool, period());
    assert.deepEqual(result.rows, [
      // B1's 150.00 (100.00 still owed) and B4's 75.00 (written off, all owed).
      { serviceCode: '99213', charges: 2, billedMinor: 22500, unpaidCharges: 2, unpaidMinor: 17500, unpaidRate: 0.7778 },
      // B3 owes 80.00: 30.00 on its newest charge, 50.00 on the 100.00 of 2026-01-15.
      { serviceCode: '99214', charges: 1, billedMinor: 10000, unpaidCharges: 1, unpaidMinor: 5000, unpaidRate: 0.5 },
      { serviceCode: '(none)', charges: 1, billedMinor: 3000, unpaidCharges: 1, unpaidMinor: 3000, unpaidRate: 1 },
      { serviceCode: '80053', charges: 1, billedMinor: 4000, unpaidCharges: 0, unpaidMinor: 0, unpaidRate: 0 },
    ]);
    const top1 = await unpaidByServiceCode(db().pool, { ...period(), limit: 1 });
    assert.deepEqual(top1.rows.map((r) => r.serviceCode), ['99213']);
  });

  it('unpaid by payer kind', async () => {
    const result = await unpaidByPayer(db().pool, period());
    assert.deepEqual(result.rows, [
      { payer: 'patient', charges: 5, billedMinor: 39500, unpaidCharges: 4, unpaidMinor: 25500, unpaidRate: 0.6456 },
      { payer: 'insurance', charges: 1, billedMinor: 30000, unpaidCharges: 1, unpaidMinor: 30000, unpaidRate: 1 },
    ]);
  });

  it('by age group and ZIP3: every cell under 11 patients is suppressed, figures and all', async () => {
    const result = await byAgeGroupAndZip3(db().pool, period());
    const empty = { suppressed: true, patients: null, balances: null, billedMinor: null, collectedMinor: null, outstandingMinor: null, collectionRate: null };
    assert.deepEqual(result.rows, [
      { ageGroup: '0-17', zip3: '100', ...empty },
      { ageGroup: '35-49', zip3: '021', ...empty },
      // 03601 is in a restricted 3-digit area (fewer than 20,000 people): 000.
      { ageGroup: '65+', zip3: '000', ...empty },
      { ageGroup: 'unknown', zip3: 'unknown', ...empty },
    ]);
  });

  it('a cell of exactly 11 patients is shown; one of 10 is not', async () => {
    const result = await byAgeGroupAndZip3(db().pool, { practiceId: data.crowdPracticeId, ...PERIOD });
    assert.deepEqual(result.rows, [
      { ageGroup: '35-49', zip3: '606', suppressed: false, patients: 11, balances: 11, billedMinor: 22000, collectedMinor: 2000, outstandingMinor: 20000, collectionRate: 0.0909 },
      { ageGroup: '65+', zip3: '606', suppressed: true, patients: null, balances: null, billedMinor: null, collectedMinor: null, outstandingMinor: null, collectionRate: null },
    ]);
    const { rows } = await db().pool.query('SELECT DISTINCT birth_year, zip3 FROM patients WHERE practice_id = $1 ORDER BY 1', [data.crowdPracticeId]);
    assert.deepEqual(rows, [{ birth_year: 1955, zip3: '606' }, { birth_year: 1990, zip3: '606' }], 'only the birth year and ZIP3 are kept in clear');
  });

  it('channels: sends → link opens → payments, credited to the latest send to the guarantor within 30 days', async () => {
    const result = await channelEffectiveness(db().pool, period());
    const row = (channel: string, stepId: string, sends: number, opened: number, paid: number, payments: number, paidMinor: number) => ({
      channel, stepId, sends, opened, paid, payments, paidMinor,
      openRate: Math.round((opened / sends) * 10_000) / 10_000, payRate: Math.round((paid / sends) * 10_000) / 10_000,
    });
    assert.deepEqual(result.rows, [
      // G1's open came after the email (5 minutes after the text): the email gets it.
      row('email', 'day-0', 1, 1, 0, 0, 0),
      row('letter', 'day-0', 1, 0, 0, 0, 0),
      // G2 opened twice and paid 40.00 after the day-0 text; G1's plan payments came > 30 days after its last send.
      row('sms', 'day-0', 2, 1, 1, 1, 4000),
      row('sms', 'day-7', 1, 0, 0, 0, 0),
      row('email', 'all', 1, 1, 0, 0, 0),
      row('letter', 'all', 1, 0, 0, 0, 0),
      row('sms', 'all', 3, 1, 1, 1, 4000),
      row('all', 'day-0', 4, 2, 1, 1, 4000),
      row('all', 'day-7', 1, 0, 0, 0, 0),
      row('all', 'all', 5, 2, 1, 1, 4000),
    ]);
  });

  it('payment plans set up in the period, by status, with what was collected on them net of refunds', async () => {
    const result = await paymentPlans(db().pool, period());
    assert.deepEqual(result.rows, [
      { status: 'pending', plans: 0, totalMinor: 0, collectedMinor: 0 },
      { status: 'active', plans: 1, totalMinor: 30000, collectedMinor: 10000 },
      { status: 'completed', plans: 0, totalMinor: 0, collectedMinor: 0 },
      { status: 'paid-off', plans: 1, totalMinor: 9000, collectedMinor: 9000 },
      { status: 'defaulted', plans: 1, totalMinor: 20000, collectedMinor: 4000 },
      { status: 'cancelled', plans: 0, totalMinor: 0, collectedMinor: 0 },
    ]);
  });

  it('return on investment: collected through Settle, the agency commission avoided, and staff phone time', async () => {
    // Settle payments in the period: 40.00 + 100.00 + (50.00 − 10.00 refunded) + 30.00 + 60.00 = 270.00 in 5; the failed one is not counted.
    // Reminders: 3 texts + 1 email (the letter and the suppressed text are not calls avoided).
    const result = await returnOnInvestment(db().pool, period());
    assert.deepEqual(result.rows, [{
      collectedMinor: 27000, payments: 5, agencyCommissionPercent: 30, agencyWouldHaveKeptMinor: 8100, remindersSent: 4, callsAvoided: 9,
      minutesPerCall: 5, staffMinutesAvoided: 45,
    }]);
    const custom = await returnOnInvestment(db().pool, { ...period(), agencyCommissionPercent: 33.33, minutesPerCall: 4 });
    // 27000 × 33.33% = 8999.1 → 8999 cents.
    assert.equal(custom.rows[0]!.agencyWouldHaveKeptMinor, 8999);
    assert.equal(custom.rows[0]!.staffMinutesAvoided, 36);
    await assert.rejects(returnOnInvestment(db().pool, { ...period(), agencyCommissionPercent: 120 }), /agencyCommissionPercent must be 0–100/);
  });

  it('counts nothing of another practice, and nothing outside the period', async () => {
    const other = await collectionRateByMonth(db().pool, { practiceId: data.crowdPracticeId, from: '2026-01-01', to: '2026-01-31', currency: 'USD' });
    assert.deepEqual(other.rows, [{ month: '2026-01', billedMinor: 0, collectedMinor: 0, rate: null, balancesPaid: 0, daysToPayMedian: null, daysToPayP90: null }]);
    const eur = await returnOnInvestment(db().pool, { ...period(), currency: 'EUR' });
    assert.equal(eur.rows[0]!.collectedMinor, 0, 'other currencies are left out, never converted');
  });
});
