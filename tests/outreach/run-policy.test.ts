/**
 * Which policy the daily job follows: a practice's own `policies/<practice slug>.json`, else `default`; IRS 501(r)
 * mode holding the agency hand-off until day 120; and a changed policy applying from each balance's next step.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { before, it } from 'node:test';
import { DateTime } from 'luxon';
import { silentLogger } from '../../src/config/logger.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { parseMoney } from '../../src/domain/money.ts';
import { parsePolicy, PolicyError } from '../../src/domain/policy.ts';
import { payLinkKeyRing } from '../../src/domain/pay-link.ts';
import { outreachPlanJob } from '../../src/outreach/run.ts';
import { withTransaction } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { OutreachRepository } from '../../src/store/outreach.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { describeOnEachDatabase } from '../support/databases.ts';

const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
const payLinkKeys = payLinkKeyRing(1, [[1, randomBytes(32)]]);
const defaultDocument = JSON.parse(readFileSync(new URL('../../policies/default.json', import.meta.url), 'utf8')) as Record<string, unknown>;
const ZONE = 'America/Chicago';
const DAY0 = '2026-03-02'; // a Monday
/** `hour`:00 (default 10:00) in Chicago on cadence day `day`. */
const onDay = (day: number, hour = 10) => DateTime.fromISO(DAY0, { zone: ZONE }).plus({ days: day }).set({ hour }).toJSDate();

/** The default policy, with IRS 501(r) mode on, as `policies/charity.json`. */
const charityDocument = { ...defaultDocument, name: 'charity', nonprofit501r: true };

describeOnEachDatabase('the planning job follows each practice’s own policy', (db) => {
  const clock = new ManualClock(onDay(0));
  const balances: Record<'riverside' | 'charity', string> = { riverside: '', charity: '' };
  const attempts = async (balanceId: string) => (await new OutreachRepository(db().pool, cipher, clock).attempts(balanceId)).map((a) => `${a.stepId}/${a.channel}/${a.status}`);

  before(async () => {
    for (const slug of ['riverside', 'charity'] as const) {
      const practiceId = (await new PracticeRepository(db().pool).create({ slug, name: `${slug} clinic`, timeZone: ZONE, phone: '(555) 010-0199' })).id;
      const ledger = new LedgerRepository(db().pool, cipher, clock);
      const patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: 'P1' }, {
        name: { given: ['Ana'], family: 'Ortiz' }, address: { lines: ['1 Main St'], city: 'Chicago', state: 'IL', postalCode: '60601' },
      });
      const guarantorId = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
      const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: 'A1' }, patientId });
      const posted = await withTransaction(db(), (tx) => ledger.on(tx).postSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 'i1', versionId: '1', lastUpdated: null },
        { accountId, guarantorId, patientId }, [{ lineKey: 'c', kind: 'charge', amount: parseMoney('150.00', 'USD'), serviceDate: '2026-02-20', payer: 'patient', serviceCode: null, description: null }]));
      balances[slug] = posted.balanceIds[0]!;
    }
  });

  it('a practice with its own policy file follows it; the others follow default; 501(r) holds the agency hand-off until day 120', async () => {
    const job = outreachPlanJob({
      db: db(), cipher, clock, logger: silentLogger(), payLinkKeys,
      policies: [{ name: 'default', data: defaultDocument }, { name: 'charity', data: charityDocument }],
    });
    const runOn = async (day: number) => {
      clock.set(onDay(day));
      await job.run({}, { jobId: `day-${day}`, failures: 0 });
    };
    for (const day of [0, 30, 45, 60, 90, 91]) await runOn(day);
    // Day 90 is a Sunday: the agency step is not a message, so no-send days do not hold it.
    assert.ok((await attempts(balances.riverside)).includes('agency-referral/agency/sent'), 'riverside (default policy) is agency-ready at day 90');
    assert.ok(!(await attempts(balances.charity)).some((a) => a.startsWith('agency-referral')), 'charity (501(r)) is not, before day 120');
    for (const day of [100, 119]) await runOn(day);
    assert.ok(!(await attempts(balances.charity)).some((a) => a.startsWith('agency-referral')));
    await runOn(120);
    assert.ok((await attempts(balances.charity)).includes('agency-referral/agency/sent'), 'charity is agency-ready at day 120');
    // Both got the same letters before: the final notice came first.
    for (const slug of ['riverside', 'charity'] as const) {
      assert.deepEqual((await attempts(balances[slug])).filter((a) => a.includes('letter')), ['statement-letter/letter/sent', 'second-notice/letter/sent', 'final-notice/letter/sent']);
    }
  });
});

describeOnEachDatabase('a changed policy applies from each balance’s next step', (db) => {
  const clock = new ManualClock(onDay(0));
  let practiceId = '';
  let balanceId = '';

  before(async () => {
    practiceId = (await new PracticeRepository(db().pool).create({ slug: 'lakeside', name: 'Lakeside Pediatrics', timeZone: ZONE, phone: '(555) 010-0100' })).id;
    const ledger = new LedgerRepository(db().pool, cipher, clock);
    const patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: 'P1' }, { name: { given: ['Ana'] }, phones: ['312-555-0101'], email: 'ana@example.org' });
    const guarantorId = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
    const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: 'A1' }, patientId });
    const posted = await withTransaction(db(), (tx) => ledger.on(tx).postSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 'i1', versionId: '1', lastUpdated: null },
      { accountId, guarantorId, patientId }, [{ lineKey: 'c', kind: 'charge', amount: parseMoney('80.00', 'USD'), serviceDate: '2026-02-20', payer: 'patient', serviceCode: null, description: null }]));
    balanceId = posted.balanceIds[0]!;
    const outreach = new OutreachRepository(db().pool, cipher, clock);
    await outreach.recordConsent(practiceId, { channel: 'sms', address: '312-555-0101', source: 'intake-form', at: new Date('2026-01-01T00:00:00Z') });
    await outreach.recordConsent(practiceId, { channel: 'email', address: 'ana@example.org', source: 'intake-form', at: new Date('2026-01-01T00:00:00Z') });
  });

  it('a reminder moved from day 21 to day 14 goes on day 14; what was already sent is not sent again', async () => {
    // Each run at 14:00: a week after a 10:00 send, across the DST change of March 8, the rolling 7-day cap is clear.
    const run = async (document: Record<string, unknown>, day: number) => {
      clock.set(onDay(day, day === 0 ? 10 : 14));
      await outreachPlanJob({ db: db(), cipher, clock, logger: silentLogger(), payLinkKeys, policies: [{ name: 'lakeside', data: document }] }).run({ practiceId }, { jobId: `d${day}`, failures: 0 });
      return (await new OutreachRepository(db().pool, cipher, clock).attempts(balanceId)).map((a) => `${a.stepId}/${a.channel}@${DateTime.fromJSDate(a.plannedAt, { zone: ZONE }).toISODate()}`);
    };
    const v1 = { ...defaultDocument, name: 'lakeside' } as unknown as Record<string, unknown> & { steps: { id: string; dayOffset: number }[] };
    const sent = ['statement-ready/sms@2026-03-02', 'statement-ready/email@2026-03-02', 'first-reminder/sms@2026-03-09'];
    await run(v1, 0);
    assert.deepEqual(await run(v1, 7), sent);
    assert.deepEqual(await run(v1, 14), sent, 'v1: nothing on day 14');
    const v2 = { ...v1, steps: v1.steps.map((s) => (s.id === 'second-reminder' ? { ...s, dayOffset: 14 } : s)) };
    assert.deepEqual(await run(v2, 14), [...sent, 'second-reminder/email@2026-03-16'], 'v2: the email reminder on day 14');
    assert.deepEqual(await run(v2, 21), [...sent, 'second-reminder/email@2026-03-16'], 'and not again on day 21');
  });
});

it('a 501(r) policy whose agency step has no final notice before it is refused at load', () => {
  const steps = (defaultDocument.steps as { id: string; finalNotice?: boolean }[]).map(({ finalNotice: _, ...s }) => s);
  assert.throws(() => parsePolicy({ ...charityDocument, steps }), (error: Error) =>
    error instanceof PolicyError && /nonprofit501r is on but agency step "agency-referral" has no final notice step/.test(error.message));
  assert.doesNotThrow(() => parsePolicy({ ...defaultDocument, steps }), 'outside 501(r) mode a cadence may hand over without one');
});
