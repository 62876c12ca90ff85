/**
 * The daily planner reads a million balances a page at a time and skips those between steps (see
 * src/store/outreach-planning.ts). This checks it decides exactly what the straightforward path decides — every
 * balance read one by one through the ledger and outreach repositories and planned with `planOutreach` — on a
 * couple of hundred balances with varied histories: new ones, ones between steps, ones with steps due, skipped,
 * superseded or attempted under a step the policy no longer has, holds, small amounts, consents and opt-outs.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { before, it } from 'node:test';
import { DateTime } from 'luxon';
import { silentLogger } from '../../src/config/logger.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import type { LedgerLine } from '../../src/domain/ledger.ts';
import { parseMoney } from '../../src/domain/money.ts';
import type { BalanceStatus, OutreachBalance } from '../../src/domain/outreach.ts';
import { parsePolicy } from '../../src/domain/policy.ts';
import { payLinkKeyRing } from '../../src/domain/pay-link.ts';
import { planOutreach } from '../../src/outreach/plan.ts';
import { planPractice, type PlanPracticeResult } from '../../src/outreach/run.ts';
import { withTransaction, type Database } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { OutreachRepository } from '../../src/store/outreach.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { describeOnEachDatabase } from '../support/databases.ts';

const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
const policy = parsePolicy(JSON.parse(readFileSync(new URL('../../policies/default.json', import.meta.url), 'utf8')) as Record<string, unknown>);
const payLinkKeys = payLinkKeyRing(1, [[1, randomBytes(32)]]);
const ZONE = 'America/Chicago';
const COUNT = 200;

/** A small deterministic generator, so a failure can be replayed. */
function generator(seed: number) {
  let state = seed >>> 0;
  const next = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  return { next, int: (n: number) => Math.floor(next() * n), chance: (p: number) => next() < p };
}

type Decision = [balanceId: string, stepId: string, channel: string, verdict: string, rule: string];

/** What the straightforward path decides: every eligible balance read one by one, as the planner once did. */
async function straightforwardDecisions(db: Database, practiceId: string, now: Date): Promise<{ eligible: number; decisions: Decision[] }> {
  const clock = new ManualClock(now);
  const ledger = new LedgerRepository(db.pool, cipher, clock);
  const store = new OutreachRepository(db.pool, cipher, clock);
  const today = DateTime.fromJSDate(now, { zone: ZONE }).toISODate()!;
  const decisions: Decision[] = [];
  let eligible = 0;
  let cursor: string | undefined;
  do {
    const page = await ledger.listBalances(practiceId, { limit: 500, ...(cursor ? { cursor } : {}) });
    for (const balance of page.balances) {
      if (!balance.outreachEligible) continue;
      eligible++;
      const stored = (await db.pool.query('SELECT first_statement_date::text AS d FROM outreach_balances WHERE balance_id = $1', [balance.id])).rows[0] as { d: string } | undefined;
      const contact = await ledger.getGuarantorContact(balance.guarantorId);
      const patient = balance.patientId ? await ledger.getPatient(balance.patientId) : undefined;
      const phone = contact?.phones?.find((p) => /\d/.test(p));
      const email = contact?.email?.trim() || undefined;
      const rules = await store.contactRules(practiceId, { ...(phone ? { sms: phone } : {}), ...(email ? { email } : {}) });
      const language = contact?.language ?? patient?.language;
      const address = contact?.address;
      const input: OutreachBalance = {
        balanceId: balance.id,
        status: (balance.status === 'in_outreach' ? 'open' : balance.status) as BalanceStatus,
        amountDueCents: balance.patientAmount.amount,
        currency: balance.patientAmount.currency,
        firstStatementDate: stored?.d ?? today,
        ageDays: balance.oldestOpenDate ? Math.max(0, Math.round(DateTime.fromISO(today).diff(DateTime.fromISO(balance.oldestOpenDate), 'days').days)) : 0,
        hasPlan: balance.status === 'in_plan',
        hasHold: balance.status === 'on_hold' || balance.holdReason !== null,
        consents: rules.consents,
        optOuts: rules.optOuts,
        attempts: await store.cadenceAttempts(balance.id),
        destinations: {
          ...(phone ? { sms: phone } : {}), ...(email ? { email } : {}),
          letter: !!address && (address.lines ?? []).some((l) => l.trim() !== '') && !!(address.postalCode || address.city),
        },
        timeZone: ZONE,
        ...(language ? { language } : {}),
      };
      for (const send of planOutreach(policy, input, now, { practiceTimeZone: ZONE }).sends) {
        const d = send.record.decision;
        decisions.push([balance.id, send.step.id, send.channel, d.verdict, d.verdict === 'allow' ? '' : d.rule]);
      }
    }
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return { eligible, decisions: decisions.sort() };
}

function plannerDecisions(result: PlanPracticeResult): Decision[] {
  return [
    ...result.sent.map((s): Decision => [s.balanceId, s.stepId, s.channel, 'allow', '']),
    ...result.agencyReady.map((s): Decision => [s.balanceId, s.stepId, 'agency', 'allow', '']),
    ...result.suppressed.map((s): Decision => [s.balanceId, s.stepId, s.channel, 'suppress', s.rule]),
    ...result.deferred.map((s): Decision => [s.balanceId, s.stepId, s.channel, 'defer', s.rule]),
  ].sort();
}

describeOnEachDatabase('daily planning at scale decides what the straightforward path decides', (db) => {
  let practiceId = '';
  const NIGHT = new Date('2026-06-10T04:30:00Z'); // Tue 2026-06-09 23:30 in Chicago: quiet hours
  const MORNING = new Date('2026-06-10T15:00:00Z'); // Wed 2026-06-10 10:00 in Chicago
  const today = '2026-06-10';

  before(async () => {
    const clock = new ManualClock(MORNING);
    practiceId = (await new PracticeRepository(db().pool).create({ slug: 'scale-test', name: 'Riverside Family Medicine', timeZone: ZONE, phone: '(555) 010-0199' })).id;
    const ledger = new LedgerRepository(db().pool, cipher, clock);
    const store = new OutreachRepository(db().pool, cipher, clock);
    const random = generator(20260610);
    const steps = policy.steps.flatMap((s) => s.channels.map((channel) => ({ id: s.id, dayOffset: s.dayOffset, channel })));
    for (let i = 0; i < COUNT; i++) {
      const phone = `(312) 555-${String(1000 + random.int(120)).padStart(4, '0')}`; // shared numbers: one opt-out concerns several balances
      const patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: `M${i}` }, {
        name: { given: [['Maria', 'José', 'Christopher', 'Guadalupe'][i % 4]!], family: `Family${i}` },
        ...(random.chance(0.9) ? { phones: [phone] } : {}),
        ...(random.chance(0.8) ? { email: `p${i}@example.org` } : {}),
        ...(random.chance(0.85) ? { address: { lines: [`${i} Main St`], city: 'Chicago', state: 'IL', postalCode: '60601' } } : {}),
        ...(random.chance(0.3) ? { language: 'es' } : {}),
      });
      const guarantorId = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
      const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: `A${i}` }, patientId });
      const cents = [1500, 2400, 8000, 15000, 123456][random.int(5)]!;
      const line: LedgerLine = {
        lineKey: 'c', kind: 'charge', amount: parseMoney((cents / 100).toFixed(2), 'USD'), serviceDate: '2026-01-15', payer: 'patient', serviceCode: null, description: null,
      };
      const posted = await withTransaction(db(), (tx) =>
        ledger.on(tx).postSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: `inv-${i}`, versionId: '1', lastUpdated: null }, { accountId, guarantorId, patientId }, [line]));
      const balanceId = posted.balanceIds[0]!;
      if (random.chance(0.05)) await ledger.setStatus(balanceId, { status: 'on_hold', holdReason: 'insurance_pending', actor: 'test' });
      const optedOut = random.chance(0.15);
      if (optedOut || random.chance(0.6)) await store.recordConsent(practiceId, { channel: 'sms', address: phone, source: 'intake-form', at: new Date('2026-01-01T00:00:00Z') });
      if (random.chance(0.5)) await store.recordConsent(practiceId, { channel: 'email', address: `p${i}@example.org`, source: 'intake-form', at: new Date('2026-01-01T00:00:00Z') });
      if (optedOut) await store.recordOptOut(practiceId, { channel: 'sms', address: phone, source: 'keyword:STOP', at: new Date('2026-02-01T00:00:00Z') });
      if (random.chance(0.15)) continue; // never seen by outreach
      const day = random.int(130);
      const first = DateTime.fromISO(today, { zone: ZONE }).minus({ days: day });
      await store.cadenceStart(practiceId, balanceId, first.toISODate()!);
      const history = random.int(4); // 0: complete, 1: the latest due step missing, 2: gaps, 3: a removed step and failures
      for (const step of steps.filter((s) => s.dayOffset < day || (history === 1 && s.dayOffset <= day))) {
        if (history === 1 && steps.filter((s) => s.dayOffset <= day).at(-1)?.id === step.id) continue;
        if (history === 2 && random.chance(0.4)) continue;
        const at = first.plus({ days: step.dayOffset, hours: 10 }).toJSDate();
        const status = history === 3 && random.chance(0.3) ? 'failed' : random.chance(0.2) ? 'suppressed' : 'sent';
        await store.recordAttempt({ practiceId, balanceId, stepId: step.id, channel: step.channel, plannedAt: at, status, finalNotice: step.id === 'final-notice' });
      }
      if (history === 3 && day > 10) {
        await store.recordAttempt({ practiceId, balanceId, stepId: 'old-courtesy-call', channel: 'sms', plannedAt: first.plus({ days: 10, hours: 10 }).toJSDate(), status: 'sent' });
      }
    }
  });

  for (const [label, now] of [['at night, when every send waits for 08:00', NIGHT], ['in the morning, when sends go out', MORNING]] as const) {
    it(label, async () => {
      const expected = await straightforwardDecisions(db(), practiceId, now);
      // Small pages: many of them, each read (on a server) while the one before is planned.
      const result = await planPractice({ db: db(), cipher, clock: new ManualClock(now), logger: silentLogger(), practiceId, policy, payLinkKeys, concurrency: 3, pageSize: 16 });
      assert.equal(result.failed.length, 0, JSON.stringify(result.failed));
      assert.equal(result.balances, expected.eligible);
      assert.ok(result.planned < expected.eligible, `only balances with something possibly due are planned (${result.planned} of ${expected.eligible})`);
      assert.ok(expected.decisions.length > 20, 'the fixture has work to do');
      assert.deepEqual(plannerDecisions(result), expected.decisions);
      const verdicts = new Set(expected.decisions.map((d) => `${d[3]}:${d[4]}`));
      if (now === MORNING) {
        assert.ok(verdicts.has('allow:'), 'the fixture has sends');
        assert.ok([...verdicts].filter((v) => v.startsWith('suppress:')).length >= 3, `the fixture has several kinds of suppression: ${[...verdicts].join(', ')}`);
      } else {
        assert.ok(verdicts.has('defer:quiet-hours'), 'at night sends wait');
      }
    });
  }

  it('and once acted on, the straightforward path finds nothing more to do today', async () => {
    const again = await straightforwardDecisions(db(), practiceId, MORNING);
    assert.deepEqual(again.decisions.filter((d) => d[3] !== 'defer'), []);
    const rerun = await planPractice({ db: db(), cipher, clock: new ManualClock(MORNING), logger: silentLogger(), practiceId, policy, payLinkKeys });
    assert.deepEqual(plannerDecisions(rerun), again.decisions);
  });
});
