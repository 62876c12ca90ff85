/** Shared set-up for the webhook handler and route tests: a practice, a guarantor with two balances, payments. */
import { randomBytes, randomUUID } from 'node:crypto';
import winston from 'winston';
import type { ManualClock } from '../../src/domain/clock.ts';
import { money, type Money } from '../../src/domain/money.ts';
import { checkoutSessionParams } from '../../src/payments/checkout.ts';
import { completeSandboxSession, createSandboxSession, type SandboxOutcome } from '../../src/payments/sandbox.ts';
import type { StripeEventEnvelope } from '../../src/payments/stripe-webhook.ts';
import { withTransaction, type Database } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { PaymentRepository, type Payment } from '../../src/store/payments.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';

export const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
export const silentLogger = winston.createLogger({ silent: true, transports: [new winston.transports.Console({ silent: true })] });

export interface Household {
  practiceId: string;
  guarantorId: string;
  /** The older balance (2026-01-05, $100.00) and the newer one (2026-02-10, $50.00). */
  olderBalanceId: string;
  newerBalanceId: string;
}

/** A practice with one self-guarantor patient owing $100.00 (older) and $50.00 (newer) on two accounts. */
export async function seedHousehold(db: Database, clock: ManualClock, slug: string): Promise<Household> {
  const practiceId = (await new PracticeRepository(db.pool).create({ slug, name: 'Webhook Clinic', timeZone: 'America/New_York' })).id;
  const ledger = new LedgerRepository(db.pool, cipher, clock);
  const patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: `P-${slug}` });
  const guarantorId = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
  const balance = async (acct: string, date: string, amount: Money) => {
    const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: acct }, patientId });
    const result = await withTransaction(db, (tx) =>
      ledger.on(tx).postSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: acct, versionId: '1', lastUpdated: null },
        { accountId, guarantorId, patientId },
        [{ lineKey: 'l0', kind: 'charge', amount, serviceDate: date, payer: 'patient', serviceCode: null, description: null }]),
    );
    return result.balanceIds[0]!;
  };
  const newerBalanceId = await balance(`${slug}-B`, '2026-02-10', money(5_000, 'USD'));
  const olderBalanceId = await balance(`${slug}-A`, '2026-01-05', money(10_000, 'USD'));
  return { practiceId, guarantorId, olderBalanceId, newerBalanceId };
}

/** A pending payment for both balances. */
export function pendingPayment(db: Database, clock: ManualClock, h: Household, amount: Money): Promise<Payment> {
  return new PaymentRepository(db.pool, clock).createPending({
    id: randomUUID(), practiceId: h.practiceId, guarantorId: h.guarantorId, balanceIds: [h.newerBalanceId, h.olderBalanceId], amount,
  });
}

/** The events the sandbox checkout produces for a payment (`payment_intent.succeeded`, `checkout.session.completed`). */
export function sandboxCheckoutEvents(clock: ManualClock, payment: Payment, outcome: SandboxOutcome = 'succeeded'): StripeEventEnvelope[] {
  const request = checkoutSessionParams({
    paymentId: payment.id, guarantorId: payment.guarantorId, amount: payment.amount,
    successUrl: 'http://127.0.0.1/paid', cancelUrl: 'http://127.0.0.1/cancelled',
  });
  const session = createSandboxSession(request, { clock, baseUrl: 'http://127.0.0.1:3000' });
  return completeSandboxSession(session, { clock, outcome });
}

let counter = 0;
/** A Stripe-shaped event. */
export function stripeEvent(type: string, object: Record<string, unknown>, id = `evt_test_${++counter}_${randomBytes(4).toString('hex')}`): StripeEventEnvelope {
  return { id, object: 'event', type, created: 1_700_000_000, livemode: false, data: { object } };
}

/** `charge.refunded` with Stripe's cumulative `amount_refunded`. */
export function refundEvent(charge: string, paymentIntent: string, amount: number, amountRefunded: number): StripeEventEnvelope {
  return stripeEvent('charge.refunded', {
    id: charge, object: 'charge', amount, amount_refunded: amountRefunded, currency: 'usd', payment_intent: paymentIntent, refunded: amountRefunded === amount, metadata: {},
  });
}

export function disputeEvent(type: 'charge.dispute.created' | 'charge.dispute.closed', charge: string, paymentIntent: string, amount: number, status: string): StripeEventEnvelope {
  return stripeEvent(type, { id: `dp_${charge}`, object: 'dispute', charge, payment_intent: paymentIntent, amount, currency: 'usd', status });
}

/** Ledger entries the payment stage posted, and outbox rows, for one payment. */
export async function paymentRows(db: Database, practiceId: string, paymentId: string) {
  const { rows: entries } = await db.pool.query<{ resource: string; balance_id: string; effect: string }>(
    `SELECT source_resource_type AS resource, balance_id, effect_minor::text AS effect FROM ledger_entries
     WHERE practice_id = $1 AND source_connector = 'settle' AND source_id LIKE $2 ORDER BY seq`,
    [practiceId, `${paymentId}/%`],
  );
  const { rows: outbox } = await db.pool.query<{ kind: string; writeback_id: string; amount: string }>(
    'SELECT kind, writeback_id, amount_minor::text AS amount FROM writeback_outbox WHERE practice_id = $1 AND payment_id = $2 ORDER BY seq',
    [practiceId, paymentId],
  );
  return { entries: entries.map((e) => ({ ...e, effect: Number(e.effect) })), outbox: outbox.map((o) => ({ ...o, amount: Number(o.amount) })) };
}
