/**
 * A small, fixed practice for the analytics tests, built through the real repositories (ledger, outreach
 * attempts, pay links with audited opens, payments); plans are inserted as rows (their repository needs Stripe).
 * Practice time zone America/New_York; the period tested is 2026-01-01 … 2026-03-31. Every expected number in
 * the tests is worked out by hand from what is posted here (see the comments).
 */
import { randomBytes } from 'node:crypto';
import { ManualClock } from '../../src/domain/clock.ts';
import type { LedgerLine } from '../../src/domain/ledger.ts';
import { parseMoney } from '../../src/domain/money.ts';
import { withTransaction, type Database } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { OutreachRepository } from '../../src/store/outreach.ts';
import { PayLinkRepository } from '../../src/store/pay-links.ts';
import { PaymentRepository } from '../../src/store/payments.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';

export const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
export const PERIOD = { from: '2026-01-01', to: '2026-03-31', currency: 'USD' } as const;

type Line = Omit<LedgerLine, 'amount' | 'description'> & { amount: string };
const line = (lineKey: string, kind: LedgerLine['kind'], payer: LedgerLine['payer'], code: string | null, amount: string, serviceDate: string): Line => ({
  lineKey, kind, payer, serviceCode: code, amount, serviceDate,
});

/** What the dataset made, for tests that need ids. */
export interface Dataset {
  practiceId: string;
  crowdPracticeId: string;
  balances: Record<'b1' | 'b2' | 'b3' | 'b4', string>;
  guarantors: Record<'g1' | 'g2' | 'g3' | 'g4', string>;
  clock: ManualClock;
}

async function person(ledger: LedgerRepository, practiceId: string, mrn: string, contact: { birthDate?: string; postalCode?: string }) {
  const patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: mrn }, {
    name: { family: 'Testperson', given: [mrn] },
    ...(contact.birthDate ? { birthDate: contact.birthDate } : {}),
    ...(contact.postalCode ? { address: { lines: ['1 Main St'], city: 'Town', state: 'MA', postalCode: contact.postalCode } } : {}),
  });
  const guarantorId = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
  const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: `A-${mrn}` }, patientId });
  return { patientId, guarantorId, accountId };
}

/** Builds both practices (the main one and a "crowd" practice for small-cell tests) in `db`. */
export async function buildDataset(db: Database, slug = 'analytics'): Promise<Dataset> {
  const clock = new ManualClock(new Date('2026-01-05T15:00:00Z'));
  const practices = new PracticeRepository(db.pool);
  const practiceId = (await practices.create({ slug, name: 'Analytics Clinic', timeZone: 'America/New_York' })).id;
  const crowdPracticeId = (await practices.create({ slug: `${slug}-crowd`, name: 'Crowd Clinic', timeZone: 'America/New_York' })).id;
  const ledger = new LedgerRepository(db.pool, cipher, clock);
  const post = async (pid: string, target: { patientId: string; guarantorId: string; accountId: string }, source: string, version: string, lines: Line[], connector = 'ehr', resourceType = 'Invoice') =>
    withTransaction(db, (tx) => ledger.on(tx).postSource(pid, { connector, resourceType, sourceId: source, versionId: version, lastUpdated: null }, target,
      lines.map((l) => ({ ...l, amount: parseMoney(l.amount, 'USD'), description: null }))));
  const at = (iso: string) => clock.set(new Date(iso));

  // P1: born 1980 (46 in 2026 → 35-49), ZIP 02134 → 021.
  const p1 = await person(ledger, practiceId, 'P1', { birthDate: '1980-05-05', postalCode: '02134' });
  // P2: born 2010 (16 → 0-17), ZIP 10001 → 100.
  const p2 = await person(ledger, practiceId, 'P2', { birthDate: '2010-03-03', postalCode: '10001-2345' });
  // P3: born 1950 (76 → 65+), ZIP 03601: 036 is a restricted 3-digit area → 000.
  const p3 = await person(ledger, practiceId, 'P3', { birthDate: '1950-01-01', postalCode: '03601' });
  // P4: no birth date, no address → unknown / unknown.
  const p4 = await person(ledger, practiceId, 'P4', {});

  // B4: 75.00 patient charge on 2026-01-03, then written off.
  at('2026-01-05T15:00:00Z');
  const b4 = (await post(practiceId, p4, 'inv-4', '1', [line('l0', 'charge', 'patient', '99213', '75.00', '2026-01-03')])).balanceIds[0]!;
  await ledger.setStatus(b4, { status: 'written_off', actor: 'test', note: 'uncollectable' });
  // B1: 150.00 patient + 300.00 insurance (99213) on 2026-01-10; the EHR reports a 50.00 patient payment on 2026-02-05.
  at('2026-01-12T15:00:00Z');
  const b1 = (await post(practiceId, p1, 'inv-1', '1', [
    line('l0', 'charge', 'patient', '99213', '150.00', '2026-01-10'),
    line('l1', 'charge', 'insurance', '99213', '300.00', '2026-01-10'),
  ])).balanceIds[0]!;
  at('2026-02-06T15:00:00Z');
  await post(practiceId, p1, 'pay-1', '1', [line('p', 'payment', 'patient', null, '50.00', '2026-02-05')], 'ehr', 'PaymentNotice');
  // B3: 200.00 on 2025-12-01 (before the period), 100.00 on 2026-01-15 (99214), 25.00 on 2026-03-20 (no code), the
  // last corrected to 30.00 by version 2; the EHR reports a 250.00 payment on 2026-03-10. Owes 80.00.
  at('2026-01-16T15:00:00Z');
  const inv3 = (c: string) => [
    line('a', 'charge', 'patient', '99214', '200.00', '2025-12-01'),
    line('b', 'charge', 'patient', '99214', '100.00', '2026-01-15'),
    line('c', 'charge', 'patient', null, c, '2026-03-20'),
  ];
  const b3 = (await post(practiceId, p3, 'inv-3', '1', inv3('25.00'))).balanceIds[0]!;
  at('2026-03-11T15:00:00Z');
  await post(practiceId, p3, 'pay-3', '1', [line('p', 'payment', 'patient', null, '250.00', '2026-03-10')], 'ehr', 'PaymentNotice');
  at('2026-03-21T15:00:00Z');
  await post(practiceId, p3, 'inv-3', '2', inv3('30.00'));
  // B2: 40.00 (80053) on 2026-02-20, paid in full through Settle on 2026-03-02 (10 days later).
  at('2026-02-21T15:00:00Z');
  const b2 = (await post(practiceId, p2, 'inv-2', '1', [line('l0', 'charge', 'patient', '80053', '40.00', '2026-02-20')])).balanceIds[0]!;

  // Outreach: five sends in the period and one suppression.
  const outreach = new OutreachRepository(db.pool, cipher, clock);
  const send = (balanceId: string, stepId: string, channel: 'sms' | 'email' | 'letter', plannedAt: string, status: 'sent' | 'suppressed' = 'sent') =>
    outreach.recordAttempt({ practiceId, balanceId, stepId, channel, plannedAt: new Date(plannedAt), status });
  await send(b1, 'day-0', 'sms', '2026-01-20T15:00:00Z');
  await send(b1, 'day-0', 'email', '2026-01-20T15:05:00Z');
  await send(b3, 'day-0', 'letter', '2026-02-01T15:00:00Z');
  await send(b2, 'day-0', 'sms', '2026-02-25T15:00:00Z');
  await send(b3, 'day-7', 'sms', '2026-03-05T15:00:00Z');
  await send(b4, 'day-0', 'sms', '2026-01-06T15:00:00Z', 'suppressed');

  // Pay links: G1 opens once (after the email), G2 twice (after the text).
  const links = new PayLinkRepository(db, clock);
  const l1 = await links.create({ linkId: 'a1a1a1a1a1a1a1a1a1', practiceId, guarantorId: p1.guarantorId, keyId: 1, expiresAt: new Date('2026-06-01T00:00:00Z') });
  const l2 = await links.create({ linkId: 'b2b2b2b2b2b2b2b2b2', practiceId, guarantorId: p2.guarantorId, keyId: 1, expiresAt: new Date('2026-06-01T00:00:00Z') });
  at('2026-01-21T12:00:00Z');
  await links.recordOpen(l1);
  at('2026-03-01T12:00:00Z');
  await links.recordOpen(l2);
  at('2026-03-02T14:00:00Z');
  await links.recordOpen(l2);

  // B2's payment through Settle: the payment row and its ledger entry (connector `settle`), as the webhook posts it.
  const payments = new PaymentRepository(db.pool, clock);
  at('2026-03-02T15:00:00Z');
  const pay2 = await payments.createPending({ practiceId, guarantorId: p2.guarantorId, balanceIds: [b2], amount: { amount: 4000, currency: 'USD' } });
  await payments.update(practiceId, pay2.id, { status: 'succeeded', succeeded: true, allocations: [{ balanceId: b2, amountMinor: 4000 }] });
  await post(practiceId, p2, `${pay2.id}/${b2}`, '1', [line('payment', 'payment', 'patient', null, '40.00', '2026-03-02')], 'settle', 'Payment');

  // Plan payments (G1, more than 30 days after G1's last send: credited to no send).
  const planPayment = async (iso: string, amount: number, outcome: 'succeeded' | 'failed', refundedMinor = 0) => {
    at(iso);
    const p = await payments.createPending({ practiceId, guarantorId: p1.guarantorId, balanceIds: [b1], amount: { amount, currency: 'USD' } });
    await payments.update(practiceId, p.id, outcome === 'succeeded' ? { status: refundedMinor ? 'partially_refunded' : 'succeeded', succeeded: true, refundedMinor } : { status: 'failed' });
    return p.id;
  };
  const x = await planPayment('2026-03-15T15:00:00Z', 10000, 'succeeded');
  const y = await planPayment('2026-03-16T15:00:00Z', 5000, 'succeeded', 1000);
  const z = await planPayment('2026-03-17T15:00:00Z', 5000, 'failed');
  const w = await planPayment('2026-03-20T15:00:00Z', 3000, 'succeeded');
  const v = await planPayment('2026-03-25T15:00:00Z', 6000, 'succeeded');
  const plan = async (status: string, created: string, total: number, firstPaymentId: string | null, payoffPaymentId: string | null, installments: [number, string, number, string, string | null][]) => {
    const { rows } = await db.pool.query<{ id: string }>(
      `INSERT INTO payment_plans (practice_id, guarantor_id, balance_ids, currency, total_minor, months, terms, time_zone, retry_offsets_days, status,
         first_payment_id, payoff_payment_id, created_at, updated_at)
       VALUES ($1, $2, $3, 'USD', $4, $5, '{}', 'America/New_York', '{1,3,7}', $6, $7, $8, $9, $9) RETURNING id`,
      [practiceId, p1.guarantorId, [b1], total, installments.length, status, firstPaymentId, payoffPaymentId, new Date(created)],
    );
    for (const [number, due, amount, state, paymentId] of installments) {
      await db.pool.query(
        `INSERT INTO plan_installments (practice_id, plan_id, number, due_date, amount_minor, status, payment_id, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, now())`,
        [practiceId, rows[0]!.id, number, due, amount, state, paymentId],
      );
    }
  };
  // Active: 300.00 in 3, first installment paid (x, 100.00).
  await plan('active', '2026-02-01T15:00:00Z', 30000, x, null, [[1, '2026-03-15', 10000, 'paid', x], [2, '2026-04-15', 10000, 'scheduled', null], [3, '2026-05-15', 10000, 'scheduled', null]]);
  // Defaulted: 200.00 in 4; installment 1 paid (y, 50.00, 10.00 refunded), installment 2 failed (z).
  await plan('defaulted', '2026-02-10T15:00:00Z', 20000, y, null, [[1, '2026-03-16', 5000, 'paid', y], [2, '2026-04-16', 5000, 'cancelled', z], [3, '2026-05-16', 5000, 'cancelled', null], [4, '2026-06-16', 5000, 'cancelled', null]]);
  // Paid off: 90.00 in 3; first installment (w, 30.00), then paid off early (v, 60.00).
  await plan('paid-off', '2026-03-01T15:00:00Z', 9000, w, v, [[1, '2026-03-20', 3000, 'paid', w], [2, '2026-04-20', 3000, 'cancelled', null], [3, '2026-05-20', 3000, 'cancelled', null]]);
  // Completed, but set up before the period: not counted.
  await plan('completed', '2025-11-01T15:00:00Z', 1000, null, null, [[1, '2025-11-01', 1000, 'paid', null]]);

  // The crowd practice: 11 patients born 1990 in ZIP 606 (a cell shown), 10 born 1955 in ZIP 606 (suppressed).
  const crowdLedger = ledger;
  at('2026-02-11T15:00:00Z');
  for (let i = 0; i < 21; i += 1) {
    const older = i >= 11;
    const p = await person(crowdLedger, crowdPracticeId, `C${i}`, { birthDate: older ? '1955-07-01' : '1990-07-01', postalCode: '60614' });
    await post(crowdPracticeId, p, `crowd-${i}`, '1', [line('l0', 'charge', 'patient', '99213', '20.00', '2026-02-10')]);
    if (i < 4) await post(crowdPracticeId, p, `crowd-pay-${i}`, '1', [line('p', 'payment', 'patient', null, '5.00', '2026-03-01')], 'ehr', 'PaymentNotice');
  }
  at('2026-04-15T16:00:00Z');
  return {
    practiceId,
    crowdPracticeId,
    balances: { b1, b2, b3, b4 },
    guarantors: { g1: p1.guarantorId, g2: p2.guarantorId, g3: p3.guarantorId, g4: p4.guarantorId },
    clock,
  };
}
