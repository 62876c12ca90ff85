/**
 * The demo's patients: after each reminder some of them pay, in full or with a payment plan, through the sandbox
 * checkout (the same pending payment, Checkout parameters, sandbox events, webhook verification and handler as a
 * real payment), and a few dispute the bill (the balance goes on hold and a staff task opens, as from the pay page).
 * The checkouts' events are delivered up to a hundred checkouts at a time, each batch handled in one transaction.
 *
 * Deterministic for a seed: who answers which message depends only on the seed and the outbox row.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'winston';
import type { Clock } from '../domain/clock.ts';
import { money } from '../domain/money.ts';
import { offeredPlans } from '../domain/payment-plan.ts';
import { DEFAULT_PLAN_TERMS } from '../payments/pay-wiring.ts';
import { proposePlan } from '../payments/plan-service.ts';
import { startCheckout } from '../payments/start-checkout.ts';
import type { SandboxGateway } from '../payments/sandbox-gateway.ts';
import { withTransaction, type Database } from '../store/database.ts';
import { readGuarantorContacts } from '../store/guarantor-contacts.ts';
import { LedgerRepository } from '../store/ledger.ts';
import { OutreachRepository, type NewContactRule } from '../store/outreach.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { StaffTaskRepository } from '../store/staff-tasks.ts';
import type { StepTimings } from './timings.ts';

/** Of the guarantors registered, the share who agreed at the front desk to texts and to email. */
export const CONSENT_RATE = 0.85;
/** Registration forms recorded per transaction. */
const CONSENTS_PER_TRANSACTION = 50;
/**
 * Sandbox checkouts whose events are delivered together (one transaction: `SandboxGateway.completeSessions`).
 * Each patient pays only their own guarantor's balances, so no checkout of a day waits on another's events.
 * A batch's claim, ledger postings and finish are a fixed set of statements, so an ordinary day's checkouts (a few
 * dozen) go as one batch; a big day (the first, a step's day) as a few, each transaction still short.
 */
const CHECKOUTS_PER_DELIVERY = 100;
/** Where the demo's consents say they come from. */
export const DEMO_CONSENT_SOURCE = 'demo: registration form at the front desk (fictitious)';

/** Of the patients reached by one message on a channel, the share who pay after it. */
export const RESPONSE_RATES = { sms: 0.16, email: 0.08, letter: 0.1 } as const;
/** Of those who pay, the share who choose a payment plan (when one is offered). */
export const PLAN_SHARE = 0.15;
/** Of the patients reached, the share who dispute the bill instead. */
export const DISPUTE_RATE = 0.004;

/** What the patients did with one batch of messages. */
export interface PatientResponses {
  messages: number;
  paidInFull: number;
  plans: number;
  disputes: number;
  collectedCents: number;
}

interface OutboxRow {
  seq: string;
  id: string;
  balance_id: string;
  channel: 'sms' | 'email' | 'letter';
  /** What the row is, in terms that are the same every run (ids are random uuids): account, channel, template, time. */
  label: string;
}

/** A number in [0, 1) from the seed and a label: the same answer every run. */
function chance(seed: number, label: string): number {
  return createHash('sha256').update(`${seed}:${label}`).digest().readUInt32BE(0) / 2 ** 32;
}

/** What answering needs of a balance. */
interface AnsweringBalance {
  id: string;
  guarantorId: string;
  status: string;
  cents: number;
  currency: string;
}

/**
 * The balances named, and every balance of their guarantors (each guarantor's in id order), in one statement.
 */
async function guarantorBalances(db: Database, practiceId: string, balanceIds: readonly string[]): Promise<{ byId: Map<string, AnsweringBalance>; byGuarantor: Map<string, AnsweringBalance[]> }> {
  const byId = new Map<string, AnsweringBalance>();
  const byGuarantor = new Map<string, AnsweringBalance[]>();
  if (balanceIds.length === 0) return { byId, byGuarantor };
  const { rows } = await db.pool.query<{ id: string; guarantor_id: string; status: string; cents: string; currency: string }>(
    `SELECT id, guarantor_id, status, patient_amount_minor::text AS cents, currency FROM balances
      WHERE practice_id = $1 AND guarantor_id IN (SELECT guarantor_id FROM balances WHERE practice_id = $1 AND id = ANY($2::uuid[]))
      ORDER BY guarantor_id, id`,
    [practiceId, balanceIds],
  );
  for (const row of rows) {
    const balance = { id: row.id, guarantorId: row.guarantor_id, status: row.status, cents: Number(row.cents), currency: row.currency };
    byId.set(balance.id, balance);
    const list = byGuarantor.get(balance.guarantorId);
    if (list) list.push(balance);
    else byGuarantor.set(balance.guarantorId, [balance]);
  }
  return { byId, byGuarantor };
}

/**
 * Lets the patients answer the messages written to the outbox after `afterSeq`.
 * @returns what they did and the last outbox seq looked at (pass it next time).
 */
export async function answerMessages(
  deps: { db: Database; clock: Clock; cipher: PhiCipher; logger: Logger; gateway: SandboxGateway; practiceId: string; timeZone: string; seed: number; baseUrl: string; timings?: StepTimings },
  afterSeq: string,
): Promise<{ responses: PatientResponses; lastSeq: string }> {
  const { db, practiceId } = deps;
  const timed = <T>(step: string, work: () => Promise<T>) => (deps.timings ? deps.timings.time(step, work) : work());
  const { rows } = await timed('demo: answers (messages read)', () => db.pool.query<OutboxRow>(
    `SELECT o.seq::text AS seq, o.id, o.balance_id, o.channel,
            a.identifier_system || '|' || a.identifier_value || ':' || o.channel || ':' || o.template || ':' || to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
            || ':' || to_char(b.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') || ':' || b.patient_amount_minor AS label
       FROM outbox o JOIN balances b ON b.id = o.balance_id JOIN ledger_accounts a ON a.id = b.account_id
      WHERE o.practice_id = $1 AND o.seq > $2::bigint ORDER BY o.seq`,
    [practiceId, afterSeq],
  ));
  const lastSeq = rows.at(-1)?.seq ?? afterSeq;
  // Answered in an order that is the same every run (the planner's order follows random ids).
  rows.sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
  const responses: PatientResponses = { messages: rows.length, paidInFull: 0, plans: 0, disputes: 0, collectedCents: 0 };
  const answering = rows.flatMap((row) => {
    const roll = chance(deps.seed, `answer:${row.label}`);
    const pays = roll < RESPONSE_RATES[row.channel];
    const disputes = !pays && roll > 1 - DISPUTE_RATE;
    return pays || disputes ? [{ row, disputes }] : [];
  });
  // Each answer changes only its own guarantor's balances, and a guarantor answers once, so the balances of
  // every guarantor who answers are read once, up front, as they stand.
  const balances = await timed('demo: answers (balances read)', () => guarantorBalances(db, practiceId, answering.map(({ row }) => row.balance_id)));
  const ledger = new LedgerRepository(db.pool, deps.cipher, deps.clock);
  const answered = new Set<string>();
  let paid: string[] = [];
  const deliver = async () => {
    if (paid.length === 0) return;
    const sessions = paid;
    paid = [];
    await timed('payments: sandbox events', () => deps.gateway.completeSessions(sessions, 'succeeded'));
  };
  for (const { row, disputes } of answering) {
    const balance = balances.byId.get(row.balance_id);
    if (!balance || balance.status !== 'open' || answered.has(balance.guarantorId)) continue;
    answered.add(balance.guarantorId);
    const open = balances.byGuarantor.get(balance.guarantorId)!.filter((b) => b.status === 'open' && b.cents > 0 && b.currency === balance.currency);
    if (open.length === 0) continue;
    if (disputes) {
      await withTransaction(db, async (tx) => {
        for (const b of open) await ledger.on(tx).setStatus(b.id, { status: 'on_hold', holdReason: 'dispute', actor: 'demo:patient', note: 'bill questioned (demo patient)' });
        await new StaffTaskRepository(tx, deps.clock).open({ practiceId, kind: 'dispute', guarantorId: balance.guarantorId, balanceId: open.length === 1 ? open[0]!.id : null, note: 'I think my insurance should have paid this.' });
      });
      responses.disputes++;
      continue;
    }
    const total = open.reduce((sum, b) => sum + b.cents, 0);
    const currency = balance.currency;
    const offers = offeredPlans(total, DEFAULT_PLAN_TERMS);
    let plan: { planId: string } | undefined;
    let cents = total;
    if (offers.length > 0 && chance(deps.seed, `plan:${row.label}`) < PLAN_SHARE) {
      const offer = offers[Math.min(offers.length - 1, 1)]!;
      const proposed = await timed('payments: plan proposal', () => proposePlan({ db, clock: deps.clock }, { practiceId, guarantorId: balance.guarantorId, balanceIds: open.map((b) => b.id), offer, timeZone: deps.timeZone }));
      plan = { planId: proposed.planId };
      cents = proposed.firstInstallment.amount;
    }
    const amount = money(cents, currency);
    const { session } = await timed('payments: checkout', () => startCheckout({ db, clock: deps.clock, gateway: deps.gateway }, {
      practiceId, guarantorId: balance.guarantorId, balanceIds: open.map((b) => b.id), amount, baseUrl: deps.baseUrl, ...(plan ? { plan } : {}),
    }));
    paid.push(session.id);
    if (paid.length >= CHECKOUTS_PER_DELIVERY) await deliver();
    if (plan) responses.plans++;
    else responses.paidInFull++;
    responses.collectedCents += cents;
  }
  await deliver();
  return { responses, lastSeq };
}

/**
 * The front desk's registration forms: most guarantors first seen in (`since`, now] agreed to texts and email
 * (the consent, with its source and time, that outreach requires before texting).
 * @returns how many guarantors were registered and how many consents were recorded.
 */
export async function recordRegistrationConsents(deps: { db: Database; clock: Clock; cipher: PhiCipher; practiceId: string; seed: number }, since: Date): Promise<{ guarantors: number; consents: number }> {
  const { db, practiceId } = deps;
  const outreach = new OutreachRepository(db.pool, deps.cipher, deps.clock);
  const { rows } = await db.pool.query<{ id: string; label: string }>(
    `SELECT g.id, coalesce(p.identifier_system || '|' || p.identifier_value, g.identifier_value, g.id::text) AS label
       FROM guarantors g LEFT JOIN patients p ON p.id = g.self_patient_id
      WHERE g.practice_id = $1 AND g.created_at > $2 AND g.created_at <= $3 ORDER BY g.created_at, g.id`,
    [practiceId, since, deps.clock.now()],
  );
  let consents = 0;
  const registered = rows.filter(({ label }) => chance(deps.seed, `consent:${label}`) < CONSENT_RATE);
  // The form's text and email addresses: the only contact fields read.
  const contacts = await readGuarantorContacts(db.pool, deps.cipher, registered.map(({ id }) => id), ['phones', 'email']);
  // One transaction per few dozen forms: one commit each instead of one per statement, short enough that the
  // live engine's other work (on the embedded database's single connection) waits only briefly.
  for (let i = 0; i < registered.length; i += CONSENTS_PER_TRANSACTION) {
    consents += await withTransaction(db, async (tx) => {
      const forms: NewContactRule[] = [];
      const at = deps.clock.now();
      for (const { id } of registered.slice(i, i + CONSENTS_PER_TRANSACTION)) {
        const contact = contacts.get(id)?.contact;
        for (const [channel, address] of [['sms', contact?.phones?.[0]], ['email', contact?.email]] as const) {
          if (address) forms.push({ channel, address, source: DEMO_CONSENT_SOURCE, at });
        }
      }
      return (await outreach.on(tx).recordConsents(practiceId, forms)).length;
    });
  }
  return { guarantors: rows.length, consents };
}
