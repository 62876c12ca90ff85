/**
 * The planner's candidate query (src/store/outreach-planning.ts) narrows which balances are planned: a balance is
 * read only when a step it could be sent is due. A step whose minimum amount the balance is under is never chosen,
 * so a small balance whose only steps left need more (the default policy's final notice and agency referral, $25)
 * is not read every day, while one with an unattempted step it qualifies for still is.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { before, it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { parseMoney } from '../../src/domain/money.ts';
import { parsePolicy } from '../../src/domain/policy.ts';
import { withTransaction } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { OutreachPlanningReader } from '../../src/store/outreach-planning.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { describeOnEachDatabase } from '../support/databases.ts';

const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
const policy = parsePolicy(JSON.parse(readFileSync(new URL('../../policies/default.json', import.meta.url), 'utf8')) as Record<string, unknown>);
const TODAY = '2026-06-10';
/** 65 days before TODAY: the final notice (day 60, $25 minimum) is due, the agency referral (day 90) not yet. */
const FIRST = '2026-04-06';
/** Every (step, channel) of the default policy before the final notice. */
const BEFORE_FINAL = ['statement-ready sms', 'statement-ready email', 'first-reminder sms', 'second-reminder email', 'statement-letter letter', 'second-notice letter'];

describeOnEachDatabase('outreach candidates', (db) => {
  const clock = new ManualClock(new Date(`${TODAY}T15:00:00Z`));
  let practiceId = '';
  const ids: Record<string, string> = {};

  before(async () => {
    practiceId = (await new PracticeRepository(db().pool).create({ slug: 'candidates-test', name: 'Candidates Clinic', timeZone: 'America/Chicago' })).id;
    const ledger = new LedgerRepository(db().pool, cipher, clock);
    const balance = async (mrn: string, amount: string, attempted: string[]) => {
      const patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: mrn }, { phones: ['312-555-0100'] });
      const guarantorId = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
      const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: `A-${mrn}` }, patientId });
      const posted = await withTransaction(db(), (tx) => ledger.on(tx).postSource(
        practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: `inv-${mrn}`, versionId: '1', lastUpdated: null }, { accountId, guarantorId, patientId },
        [{ lineKey: 'c1', kind: 'charge', amount: parseMoney(amount, 'USD'), serviceDate: FIRST, payer: 'patient', serviceCode: null, description: null }],
      ));
      const balanceId = posted.balanceIds[0]!;
      await db().pool.query(
        'INSERT INTO outreach_balances (balance_id, practice_id, first_statement_date, created_at, attempted) VALUES ($1, $2, $3, $4, $5::text[])',
        [balanceId, practiceId, FIRST, clock.now(), attempted],
      );
      return balanceId;
    };
    ids.small = await balance('P1', '10.00', BEFORE_FINAL);
    ids.large = await balance('P2', '30.00', BEFORE_FINAL);
    ids.smallBehind = await balance('P3', '10.00', BEFORE_FINAL.slice(0, -1));
  });

  it('leaves out a balance under the minimum of every step still due for it, and keeps the others', async () => {
    const found = await new OutreachPlanningReader(db().pool, cipher).candidates(practiceId, { threshold: 0, today: TODAY, cadence: policy, cursor: null, limit: 100 });
    assert.deepEqual(found.map((b) => b.id).sort(), [ids.large, ids.smallBehind].sort(), 'the $30 balance (final notice due) and the $10 one with its second notice pending');
  });
});
