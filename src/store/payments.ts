/**
 * Payments, the Stripe events already handled, and the write-back outbox.
 *
 * Writes expect to run inside the caller's transaction (the webhook handler's, of one event or of a batch):
 * pass the transaction client with `on(tx)`. Every row belongs to a practice and every read is scoped by it.
 */
import { createHash } from 'node:crypto';
import type { Clock } from '../domain/clock.ts';
import type { Money } from '../domain/money.ts';
import { auditAppendSql, type NewAuditEvent } from './audit.ts';
import { SqlParams } from './sql-params.ts';
import type { Queryable } from './database.ts';

export type PaymentStatus = 'pending' | 'succeeded' | 'failed' | 'refunded' | 'partially_refunded' | 'disputed';
export type WritebackKind = 'payment' | 'refund' | 'reversal';
export type WritebackStatus = 'pending' | 'delivered' | 'failed' | 'dead';

/** How much of a payment (or refund, reversal) went to one balance, in minor units. */
export interface PaymentAllocation {
  balanceId: string;
  amountMinor: number;
}

export interface Payment {
  id: string;
  practiceId: string;
  guarantorId: string;
  /** The balances the payment is for. */
  balanceIds: string[];
  /** How it was split once it succeeded (empty before), oldest balance first. */
  allocations: PaymentAllocation[];
  amount: Money;
  refundedMinor: number;
  reversedMinor: number;
  status: PaymentStatus;
  failureCode: string | null;
  stripe: { checkoutSession: string | null; paymentIntent: string | null; charge: string | null; customer: string | null; dispute: string | null };
  succeededAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface WritebackRow {
  id: string;
  practiceId: string;
  paymentId: string;
  kind: WritebackKind;
  /** Stable: the FHIR conditional-create identifier. */
  writebackId: string;
  /** Stable, 16 characters, derived from the write-back id ({@link hl7ControlId}): the HL7 MSH-10. */
  controlId: string;
  amount: Money;
  allocations: PaymentAllocation[];
  status: WritebackStatus;
  attempts: number;
  nextAttemptAt: Date;
  lastError: string | null;
  deliveredAt: Date | null;
  createdAt: Date;
  /** The connector it was (last) sent to; null before the first attempt. */
  target: string | null;
  /** What the EHR answered when it took it: the FHIR `Location` (or resource id) or the ACK's MSA-2. */
  deliveredRef: string | null;
  lastAttemptAt: Date | null;
}

/** How one delivery attempt of a write-back ended (see {@link PaymentRepository.finishWriteback}). */
export type WritebackAttemptResult =
  | { status: 'delivered'; target: string; deliveredRef: string | null }
  | { status: 'failed'; target: string | null; error: string; nextAttemptAt: Date }
  | { status: 'dead'; target: string | null; error: string };

/** A balance a write-back pays, as the EHR knows it: its account and patient identifiers and the EHR records behind it. */
export interface WritebackBalance {
  balanceId: string;
  account: { system: string; value: string };
  patient: { system: string; value: string } | null;
  /** The source records of its charges (connector, resource type, id), oldest first; never Settle's own entries. */
  sources: { connector: string; resourceType: string; sourceId: string }[];
}

export interface NewPayment {
  practiceId: string;
  guarantorId: string;
  balanceIds: readonly string[];
  amount: Money;
  /** Optional: a caller-chosen uuid (the id already sent to Stripe); generated otherwise. */
  id?: string;
  checkoutSessionId?: string | null;
}

/** What {@link PaymentRepository.update} changes on a payment (only the fields given). */
export interface PaymentChange {
  status?: PaymentStatus;
  allocations?: readonly PaymentAllocation[];
  amount?: Money;
  refundedMinor?: number;
  reversedMinor?: number;
  failureCode?: string | null;
  stripe?: StripeIds;
  succeeded?: boolean;
}

/** A write-back to queue (see {@link PaymentRepository.enqueueWriteback}). */
export interface NewWriteback {
  practiceId: string;
  paymentId: string;
  kind: WritebackKind;
  writebackId: string;
  amount: Money;
  allocations: readonly PaymentAllocation[];
}

/** A balance a payment is for, as splitting the payment across its balances needs it (see {@link PaymentRepository.claimEvent}). */
export interface PayableBalance {
  id: string;
  practiceId: string;
  accountId: string;
  guarantorId: string;
  patientId: string | null;
  /** What the patient (guarantor) owes now. */
  patientAmount: Money;
  oldestOpenDate: string | null;
}

interface PayableRow {
  id: string; practice_id: string; account_id: string; guarantor_id: string; patient_id: string | null; currency: string; patient_amount_minor: string;
  oldest_open_date: string | null;
}

/** A balance a payment is for. */
function toPayable(r: PayableRow): PayableBalance {
  return {
    id: r.id, practiceId: r.practice_id, accountId: r.account_id, guarantorId: r.guarantor_id, patientId: r.patient_id,
    patientAmount: { amount: safe(r.patient_amount_minor), currency: r.currency }, oldestOpenDate: r.oldest_open_date,
  };
}

/** A payment lookup by Settle's id, else by payment intent, else by charge (see {@link PaymentRepository.findForUpdate}). */
export interface PaymentLookup {
  paymentId?: string;
  paymentIntent?: string;
  charge?: string;
}

/**
 * The HL7 message control id (MSH-10, ST of at most 20 characters) of a write-back: the first 64 bits of
 * SHA-256 over `"<practice id> <write-back id>"` in upper-case hex, 16 characters, so a renderer can still
 * number several messages of one write-back (`-1`, `-2`) within 20. Migration 0020 computes the same in SQL.
 */
export function hl7ControlId(practiceId: string, writebackId: string): string {
  return createHash('sha256').update(`${practiceId} ${writebackId}`, 'utf8').digest('hex').slice(0, 16).toUpperCase();
}

/** Stripe ids to record on a payment (only those given are changed). */
export interface StripeIds {
  checkoutSession?: string;
  paymentIntent?: string;
  charge?: string;
  customer?: string;
  dispute?: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Whether a string is a uuid (ids from Stripe metadata are checked before they reach a uuid column). */
export const isUuid = (value: string | undefined): value is string => typeof value === 'string' && UUID.test(value);

function safe(value: string | number): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new RangeError(`amount ${value} is beyond the safe integer range`);
  return n;
}

interface PaymentRow {
  id: string; practice_id: string; guarantor_id: string; balance_ids: string[]; allocations: PaymentAllocation[]; amount_minor: string; currency: string;
  refunded_minor: string; reversed_minor: string; status: PaymentStatus; failure_code: string | null; stripe_checkout_session_id: string | null;
  stripe_payment_intent_id: string | null; stripe_charge_id: string | null; stripe_customer_id: string | null; stripe_dispute_id: string | null;
  succeeded_at: Date | null; created_at: Date; updated_at: Date;
}

const PAYMENT_COLUMNS = `id, practice_id, guarantor_id, balance_ids, allocations, amount_minor::text AS amount_minor, currency, refunded_minor::text AS refunded_minor,
  reversed_minor::text AS reversed_minor, status, failure_code, stripe_checkout_session_id, stripe_payment_intent_id, stripe_charge_id, stripe_customer_id,
  stripe_dispute_id, succeeded_at, created_at, updated_at`;

function toPayment(r: PaymentRow): Payment {
  return {
    id: r.id,
    practiceId: r.practice_id,
    guarantorId: r.guarantor_id,
    balanceIds: r.balance_ids,
    allocations: r.allocations,
    amount: { amount: safe(r.amount_minor), currency: r.currency },
    refundedMinor: safe(r.refunded_minor),
    reversedMinor: safe(r.reversed_minor),
    status: r.status,
    failureCode: r.failure_code,
    stripe: {
      checkoutSession: r.stripe_checkout_session_id, paymentIntent: r.stripe_payment_intent_id, charge: r.stripe_charge_id,
      customer: r.stripe_customer_id, dispute: r.stripe_dispute_id,
    },
    succeededAt: r.succeeded_at,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

interface OutboxRow {
  id: string; practice_id: string; payment_id: string; kind: WritebackKind; writeback_id: string; control_id: string; amount_minor: string; currency: string;
  allocations: PaymentAllocation[]; status: WritebackStatus; attempts: number; next_attempt_at: Date; last_error: string | null;
  delivered_at: Date | null; created_at: Date; target: string | null; delivered_ref: string | null; last_attempt_at: Date | null;
}

const OUTBOX_COLUMNS = `id, practice_id, payment_id, kind, writeback_id, control_id, amount_minor::text AS amount_minor, currency, allocations, status, attempts,
  next_attempt_at, last_error, delivered_at, created_at, target, delivered_ref, last_attempt_at`;

function toWriteback(r: OutboxRow): WritebackRow {
  return {
    id: r.id, practiceId: r.practice_id, paymentId: r.payment_id, kind: r.kind, writebackId: r.writeback_id, controlId: r.control_id,
    amount: { amount: safe(r.amount_minor), currency: r.currency }, allocations: r.allocations, status: r.status, attempts: r.attempts,
    nextAttemptAt: r.next_attempt_at, lastError: r.last_error, deliveredAt: r.delivered_at, createdAt: r.created_at,
    target: r.target, deliveredRef: r.delivered_ref, lastAttemptAt: r.last_attempt_at,
  };
}

/**
 * The UPDATE of payments that applies these changes (each to its payment, only the fields given), its values added
 * to `params`: one statement for one change (`update`) or for many (`finishEvents` folding them into the statement
 * that marks their events processed). One change per payment of the practice. The ids are also given as an array
 * and the practice in each row, so the payments are found by their primary key (the planner cannot see into the
 * recordset; with the practice as a constant it scanned all the practice's payments).
 */
function paymentUpdateSql(practiceId: string, changes: readonly { id: string; change: PaymentChange }[], now: Date, params: SqlParams): string {
  const rows = changes.map(({ id, change }) => {
    const s = change.stripe ?? {};
    return {
      practice_id: practiceId, id, status: change.status ?? null, allocations: change.allocations ?? null, amount_minor: change.amount?.amount ?? null,
      refunded_minor: change.refundedMinor ?? null, reversed_minor: change.reversedMinor ?? null, set_failure: change.failureCode !== undefined,
      failure_code: change.failureCode ?? null, checkout_session: s.checkoutSession ?? null, payment_intent: s.paymentIntent ?? null, charge: s.charge ?? null,
      customer: s.customer ?? null, dispute: s.dispute ?? null, succeeded: change.succeeded === true,
    };
  });
  const at = params.add(now);
  return `UPDATE payments p SET status = coalesce(c.status, p.status), allocations = coalesce(c.allocations, p.allocations),
         amount_minor = coalesce(c.amount_minor, p.amount_minor), refunded_minor = coalesce(c.refunded_minor, p.refunded_minor),
         reversed_minor = coalesce(c.reversed_minor, p.reversed_minor), failure_code = CASE WHEN c.set_failure THEN c.failure_code ELSE p.failure_code END,
         stripe_checkout_session_id = coalesce(c.checkout_session, p.stripe_checkout_session_id), stripe_payment_intent_id = coalesce(c.payment_intent, p.stripe_payment_intent_id),
         stripe_charge_id = coalesce(c.charge, p.stripe_charge_id), stripe_customer_id = coalesce(c.customer, p.stripe_customer_id),
         stripe_dispute_id = coalesce(c.dispute, p.stripe_dispute_id), succeeded_at = CASE WHEN c.succeeded THEN ${at}::timestamptz ELSE p.succeeded_at END,
         updated_at = ${at}::timestamptz
       FROM jsonb_to_recordset(${params.add(JSON.stringify(rows))}::jsonb) AS c (practice_id uuid, id uuid, status text, allocations jsonb, amount_minor bigint, refunded_minor bigint,
         reversed_minor bigint, set_failure boolean, failure_code text, checkout_session text, payment_intent text, charge text, customer text, dispute text, succeeded boolean)
       WHERE p.id = ANY(${params.add(changes.map((c) => c.id))}::uuid[]) AND p.id = c.id AND p.practice_id = c.practice_id`;
}

/**
 * An INSERT of write-backs (due now, idempotent on the write-back id), its values added to `params` as one array
 * per column: the same text for any number of rows (the embedded database prepares each text once).
 */
function writebackInsertSql(rows: readonly NewWriteback[], now: Date, params: SqlParams): string {
  const at = params.add(now);
  const column = (pick: (r: NewWriteback) => unknown) => params.add(rows.map(pick));
  return `INSERT INTO writeback_outbox (practice_id, payment_id, kind, writeback_id, control_id, amount_minor, currency, allocations, next_attempt_at, created_at, updated_at)
       SELECT w.practice_id, w.payment_id, w.kind, w.writeback_id, w.control_id, w.amount_minor, w.currency, w.allocations, ${at}::timestamptz, ${at}::timestamptz, ${at}::timestamptz
       FROM unnest(${column((r) => r.practiceId)}::uuid[], ${column((r) => r.paymentId)}::uuid[], ${column((r) => r.kind)}::text[], ${column((r) => r.writebackId)}::text[],
         ${column((r) => hl7ControlId(r.practiceId, r.writebackId))}::text[], ${column((r) => r.amount.amount)}::bigint[], ${column((r) => r.amount.currency)}::text[],
         ${column((r) => JSON.stringify(r.allocations))}::jsonb[]) WITH ORDINALITY
         AS w (practice_id, payment_id, kind, writeback_id, control_id, amount_minor, currency, allocations, n)
       ORDER BY w.n ON CONFLICT (practice_id, writeback_id) DO NOTHING`;
}

/**
 * The CTE `found`: per lookup row of the relation `lookups` (columns `n`, `payment_id` uuid, `intent`, `charge`),
 * the payment it finds with its row number `n`: by Settle's id, else by payment intent, else by charge; the oldest
 * of equals (each arm one index probe). The payments are locked for update in id order, so that concurrent
 * lookups of several payments wait for each other instead of deadlocking. `practice` is the practice id's placeholder.
 */
function paymentsFoundSql(lookups: string, practice: string): string {
  return `found AS (
       SELECT r.n, ${PAYMENT_COLUMNS} FROM ${lookups} r
       JOIN LATERAL (
         SELECT c.pid FROM (
           SELECT id AS pid, 1 AS rank, created_at FROM payments WHERE practice_id = ${practice} AND id = r.payment_id
           UNION ALL SELECT id, 2, created_at FROM payments WHERE practice_id = ${practice} AND stripe_payment_intent_id = r.intent
           UNION ALL SELECT id, 3, created_at FROM payments WHERE practice_id = ${practice} AND stripe_charge_id = r.charge
         ) c ORDER BY c.rank, c.created_at LIMIT 1) pick ON true
       JOIN payments p ON p.id = pick.pid
       ORDER BY p.id FOR UPDATE OF p)`;
}

/** A lookup row of {@link paymentsFoundSql}: a payment id only when it is a uuid (ids from metadata are checked before a uuid column). */
const lookupRow = (refs: PaymentLookup) => ({ payment_id: isUuid(refs.paymentId) ? refs.paymentId : null, intent: refs.paymentIntent || null, charge: refs.charge || null });

/** The key of a Stripe event within a practice: its account and its id. */
export const eventKey = (event: Omit<StripeEventRef, 'type'>): string => `${event.account ?? ''} ${event.id}`;

/** A Stripe event as its row in `stripe_events` is keyed. */
export interface StripeEventRef {
  id: string;
  type: string;
  /** The connected account it came from; '' for the platform's own. */
  account?: string;
}

/** What {@link PaymentRepository.claimEvents} found for one event. */
export interface EventClaim {
  /** False when the event id was already recorded (a duplicate: change nothing). */
  claimed: boolean;
  /** The payment the event refers to, locked (only when claimed). */
  payment?: Payment;
  /** The balances a pending (or failed) payment is for, in its order, as they stand. */
  balances: PayableBalance[];
}

/** Reads and writes payments, handled Stripe events and the write-back outbox. */
export class PaymentRepository {
  readonly #db: Queryable;
  readonly #clock: Clock;

  constructor(db: Queryable, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
  }

  /** The same repository on another connection (a transaction client). */
  on(db: Queryable): PaymentRepository {
    return new PaymentRepository(db, this.#clock);
  }

  // ---- Stripe events ------------------------------------------------------------------------------------

  /**
   * Records that an event arrived. Run inside the handling transaction: a concurrent delivery of the same id
   * waits on the row lock and then sees it.
   * @returns false when the event id was already recorded (a duplicate: change nothing).
   */
  async recordEvent(practiceId: string, event: StripeEventRef): Promise<boolean> {
    return (await this.claimEvent(practiceId, event)).claimed;
  }

  /** {@link claimEvents} of one event. */
  async claimEvent(practiceId: string, event: StripeEventRef, refs: PaymentLookup = {}): Promise<EventClaim & { timeZone: string | null }> {
    const { claims, timeZone } = await this.claimEvents(practiceId, [{ event, refs }]);
    return { ...claims[0]!, timeZone };
  }

  /**
   * Records that these events arrived and, for each one new, finds and locks the payment it refers to (as
   * {@link findForUpdate}), with what posting a pending (or failed) payment needs: the balances it is for (in its
   * order, as they stand; the ledger locks them when it posts); and the practice's time zone (for the date of what
   * is posted). One statement (one round trip of the handling transaction). Run inside the handling transaction:
   * a concurrent delivery of the same id waits on the row lock and then sees it. Event ids are claimed in sorted
   * order, all before any payment is locked (in id order), so concurrent claims wait instead of deadlocking. A
   * duplicate locks nothing. The events must be distinct.
   * @returns per event, in order, what was found.
   */
  async claimEvents(
    practiceId: string, events: readonly { event: StripeEventRef; refs?: PaymentLookup }[],
  ): Promise<{ claims: EventClaim[]; timeZone: string | null }> {
    if (events.length === 0) return { claims: [], timeZone: null };
    const params = new SqlParams();
    const requests = events.map(({ event, refs = {} }, n) => ({ n, account: event.account ?? '', event_id: event.id, type: event.type, ...lookupRow(refs) }));
    const [practice, now, request] = [practiceId, this.#clock.now(), JSON.stringify(requests)].map((value) => params.add(value));
    const { rows } = await this.#db.query<PaymentRow & { request: number; claimed: boolean; practice_time_zone: string | null; payable: PayableRow[] | null }>(
      `WITH req AS (
         SELECT * FROM jsonb_to_recordset(${request}::jsonb) AS r (n int, account text, event_id text, type text, payment_id uuid, intent text, charge text)),
       claimed AS (
         INSERT INTO stripe_events (practice_id, account, event_id, type, received_at)
         SELECT ${practice}, account, event_id, type, ${now} FROM req ORDER BY account, event_id ON CONFLICT DO NOTHING RETURNING account, event_id),
       claims AS (SELECT array_agg(account) AS accounts, array_agg(event_id) AS ids FROM claimed),
       mine AS (SELECT r.* FROM claims CROSS JOIN LATERAL unnest(claims.accounts, claims.ids) AS c (account, event_id) JOIN req r USING (account, event_id)),
       ${paymentsFoundSql('mine', practice)}
       SELECT r.n AS request, (m.n IS NOT NULL) AS claimed, f.*, (SELECT time_zone FROM practices WHERE id = ${practice}) AS practice_time_zone,
         -- One index probe of the balances per payment (a join here was planned as a scan of all balances per payment).
         CASE WHEN f.status IN ('pending', 'failed') THEN (
           SELECT json_agg(json_build_object('id', b.id, 'practice_id', b.practice_id, 'account_id', b.account_id, 'guarantor_id', b.guarantor_id,
             'patient_id', b.patient_id, 'currency', b.currency, 'patient_amount_minor', b.patient_amount_minor::text, 'oldest_open_date', b.oldest_open_date::text)
             ORDER BY array_position(f.balance_ids, b.id))
           FROM balances b WHERE b.id = ANY(f.balance_ids)) END AS payable
       FROM req r LEFT JOIN mine m ON m.n = r.n LEFT JOIN found f ON f.n = r.n
       ORDER BY r.n`,
      params.values,
    );
    // The claims (an aggregate of the whole insert) are all made before the lookup locks any payment.
    const claims = rows.map((row): EventClaim => {
      const found: EventClaim = { claimed: row.claimed, balances: (row.payable ?? []).map(toPayable) };
      return row.id === null ? found : { ...found, payment: toPayment(row) };
    });
    return { claims, timeZone: rows[0]!.practice_time_zone };
  }

  /** {@link finishEvents} of one event, with what handling it decided to write last. */
  async finishEvent(
    practiceId: string, event: Omit<StripeEventRef, 'type'>, outcome: string,
    effects: { payment?: { id: string; change: PaymentChange }; writebacks?: readonly NewWriteback[]; audit?: NewAuditEvent } = {},
  ): Promise<void> {
    await this.finishEvents(practiceId, [{ ...event, outcome }], {
      ...(effects.payment ? { payments: [effects.payment] } : {}), ...(effects.writebacks ? { writebacks: effects.writebacks } : {}),
      ...(effects.audit ? { audit: [effects.audit] } : {}),
    });
  }

  /**
   * Marks events processed, each with what was done, and in the same statement applies what handling them decided
   * to write last: the changes to their payments (one per payment), the write-backs they queued, the audit events
   * recording them (appended in order, one chain segment, the practice's audit head locked last) and the release of
   * claims given back (`released`: events handled again on their own, in a transaction of their own).
   */
  async finishEvents(
    practiceId: string, done: readonly (Omit<StripeEventRef, 'type'> & { outcome: string })[],
    effects: {
      payments?: readonly { id: string; change: PaymentChange }[]; writebacks?: readonly NewWriteback[]; audit?: readonly NewAuditEvent[];
      released?: readonly Omit<StripeEventRef, 'type'>[];
    } = {},
  ): Promise<void> {
    const now = this.#clock.now();
    const params = new SqlParams();
    const [practice, at] = [practiceId, now].map((value) => params.add(value));
    // Each list as a recordset `d`, and the condition that finds its rows by index (as in paymentUpdateSql).
    const events = (list: readonly (Omit<StripeEventRef, 'type'> & { outcome?: string })[]) => {
      const rows = list.map((e) => ({ account: e.account ?? '', event_id: e.id, outcome: e.outcome ?? null }));
      return `jsonb_to_recordset(${params.add(JSON.stringify(rows))}::jsonb) AS d (account text, event_id text, outcome text)
         WHERE e.practice_id = ${practice} AND e.account = ANY(${params.add([...new Set(rows.map((r) => r.account))])}::text[])
           AND e.event_id = ANY(${params.add(rows.map((r) => r.event_id))}::text[]) AND e.account = d.account AND e.event_id = d.event_id`;
    };
    const ctes: string[] = [];
    if (effects.payments && effects.payments.length > 0) ctes.push(`paid AS (${paymentUpdateSql(practiceId, effects.payments, now, params)})`);
    if (effects.writebacks && effects.writebacks.length > 0) ctes.push(`queued AS (${writebackInsertSql(effects.writebacks, now, params)})`);
    if (done.length > 0) {
      ctes.push(`processed AS (UPDATE stripe_events e SET outcome = d.outcome, processed_at = ${at} FROM ${events(done)})`);
    }
    if (effects.released && effects.released.length > 0) {
      ctes.push(`released AS (DELETE FROM stripe_events e USING ${events(effects.released)})`);
    }
    const audited = effects.audit && effects.audit.length > 0;
    if (audited) ctes.push(auditAppendSql(effects.audit!, now, params));
    if (ctes.length === 0) return;
    // The audit CTE is a function call, run when read: the statement reads it (the data-modifying ones always run).
    await this.#db.query(`WITH ${ctes.join(',\n       ')}\n       SELECT ${audited ? '(SELECT count(*) FROM audit_event)' : '0'} AS audited`, params.values);
  }

  /** Which of these events were handled before (a retry): one read, before any transaction. */
  async handledEvents(practiceId: string, events: readonly Omit<StripeEventRef, 'type'>[]): Promise<Set<string>> {
    if (events.length === 0) return new Set();
    const { rows } = await this.#db.query<{ account: string; event_id: string }>(
      `SELECT account, event_id FROM stripe_events WHERE practice_id = $1 AND (account, event_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))`,
      [practiceId, events.map((e) => e.account ?? ''), events.map((e) => e.id)],
    );
    return new Set(rows.map((r) => eventKey({ id: r.event_id, account: r.account })));
  }

  /** A handled event, or undefined. */
  async getEvent(practiceId: string, eventId: string, account = ''): Promise<{ type: string; outcome: string | null; receivedAt: Date; processedAt: Date | null } | undefined> {
    const { rows } = await this.#db.query<{ type: string; outcome: string | null; received_at: Date; processed_at: Date | null }>(
      'SELECT type, outcome, received_at, processed_at FROM stripe_events WHERE practice_id = $1 AND account = $2 AND event_id = $3',
      [practiceId, account, eventId],
    );
    const r = rows[0];
    return r && { type: r.type, outcome: r.outcome, receivedAt: r.received_at, processedAt: r.processed_at };
  }

  // ---- payments -----------------------------------------------------------------------------------------

  /** A pending payment (created before the Checkout Session, whose metadata carries its id). */
  async createPending(input: NewPayment): Promise<Payment> {
    if (!Number.isSafeInteger(input.amount.amount) || input.amount.amount <= 0) throw new RangeError('a payment is a positive integer number of minor units');
    if (input.balanceIds.length === 0) throw new RangeError('a payment is for at least one balance');
    const now = this.#clock.now();
    const { rows } = await this.#db.query<PaymentRow>(
      `INSERT INTO payments (id, practice_id, guarantor_id, balance_ids, amount_minor, currency, stripe_checkout_session_id, created_at, updated_at)
       VALUES (coalesce($1::uuid, gen_random_uuid()), $2, $3, $4::uuid[], $5, $6, $7, $8, $8) RETURNING ${PAYMENT_COLUMNS}`,
      [input.id ?? null, input.practiceId, input.guarantorId, input.balanceIds, input.amount.amount, input.amount.currency, input.checkoutSessionId ?? null, now],
    );
    return toPayment(rows[0]!);
  }

  async get(practiceId: string, id: string): Promise<Payment | undefined> {
    if (!isUuid(id)) return undefined;
    const { rows } = await this.#db.query<PaymentRow>(`SELECT ${PAYMENT_COLUMNS} FROM payments WHERE practice_id = $1 AND id = $2`, [practiceId, id]);
    return rows[0] && toPayment(rows[0]);
  }

  /**
   * The payment a Stripe object refers to, locked for update: by Settle's payment id (metadata) when it is a
   * uuid, else by payment intent, else by charge (as {@link claimEvent} finds it).
   */
  async findForUpdate(practiceId: string, refs: PaymentLookup): Promise<Payment | undefined> {
    const params = new SqlParams();
    const [practice, lookup] = [practiceId, JSON.stringify([{ n: 0, ...lookupRow(refs) }])].map((value) => params.add(value));
    const { rows } = await this.#db.query<PaymentRow>(
      `WITH lookup AS (SELECT * FROM jsonb_to_recordset(${lookup}::jsonb) AS r (n int, payment_id uuid, intent text, charge text)), ${paymentsFoundSql('lookup', practice)}
       SELECT * FROM found`,
      params.values,
    );
    return rows[0] && toPayment(rows[0]);
  }

  /** Updates a payment's status, money figures and Stripe ids (only the fields given). */
  async update(practiceId: string, id: string, change: PaymentChange): Promise<void> {
    const params = new SqlParams();
    await this.#db.query(paymentUpdateSql(practiceId, [{ id, change }], this.#clock.now(), params), params.values);
  }

  // ---- write-back outbox --------------------------------------------------------------------------------

  /**
   * Queues a write-back, due now. Idempotent on its stable write-back id.
   * @returns false when a row with this write-back id already existed.
   */
  async enqueueWriteback(row: NewWriteback): Promise<boolean> {
    const params = new SqlParams();
    const { rowCount } = await this.#db.query(writebackInsertSql([row], this.#clock.now(), params), params.values);
    return rowCount === 1;
  }

  /** A payment's write-backs, oldest first. */
  async writebacks(practiceId: string, paymentId: string): Promise<WritebackRow[]> {
    if (!isUuid(paymentId)) return [];
    const { rows } = await this.#db.query<OutboxRow>(
      `SELECT ${OUTBOX_COLUMNS} FROM writeback_outbox WHERE practice_id = $1 AND payment_id = $2 ORDER BY seq`,
      [practiceId, paymentId],
    );
    return rows.map(toWriteback);
  }

  // ---- write-back delivery ------------------------------------------------------------------------------

  /**
   * Claims up to `limit` due write-backs (pending, or failed and due again) of every practice, or of some:
   * one statement with `FOR UPDATE SKIP LOCKED`, so concurrent workers never claim the same row. A claimed row's
   * attempt is counted and its next attempt moved `leaseMs` ahead, so a worker that dies mid-delivery leaves it
   * to be claimed again after the lease (the stable write-back id makes that redelivery harmless).
   */
  async claimDueWritebacks(options: { limit: number; leaseMs: number; practiceIds?: readonly string[] }): Promise<WritebackRow[]> {
    const now = this.#clock.now();
    const { rows } = await this.#db.query<OutboxRow>(
      `UPDATE writeback_outbox o SET attempts = o.attempts + 1, next_attempt_at = $2, last_attempt_at = $1, updated_at = $1
       FROM (SELECT id AS due_id FROM writeback_outbox
             WHERE status IN ('pending', 'failed') AND next_attempt_at <= $1 AND ($4::uuid[] IS NULL OR practice_id = ANY($4::uuid[]))
             ORDER BY next_attempt_at, seq LIMIT $3 FOR UPDATE SKIP LOCKED) due
       WHERE o.id = due.due_id
       RETURNING ${OUTBOX_COLUMNS}`,
      [now, new Date(now.getTime() + options.leaseMs), options.limit, options.practiceIds ?? null],
    );
    return rows.map(toWriteback).sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());
  }

  /** Gives a claimed write-back back untried (its target was found unreachable this round): the attempt is not counted. */
  async releaseWriteback(id: string, nextAttemptAt: Date): Promise<void> {
    await this.#db.query(
      `UPDATE writeback_outbox SET attempts = greatest(attempts - 1, 0), next_attempt_at = $2, updated_at = $3 WHERE id = $1 AND status IN ('pending', 'failed')`,
      [id, nextAttemptAt, this.#clock.now()],
    );
  }

  /** Records how an attempt ended: delivered, failed (tried again at `nextAttemptAt`) or dead (no more attempts). */
  async finishWriteback(id: string, result: WritebackAttemptResult): Promise<void> {
    const now = this.#clock.now();
    if (result.status === 'delivered') {
      await this.#db.query(
        `UPDATE writeback_outbox SET status = 'delivered', delivered_at = $2, target = $3, delivered_ref = $4, last_error = NULL, updated_at = $2
         WHERE id = $1 AND status <> 'delivered'`,
        [id, now, result.target, result.deliveredRef],
      );
      return;
    }
    await this.#db.query(
      `UPDATE writeback_outbox SET status = $2, last_error = $3, target = coalesce($4, target), next_attempt_at = coalesce($5, next_attempt_at), updated_at = $6
       WHERE id = $1 AND status <> 'delivered'`,
      [id, result.status, result.error.slice(0, 2000), result.target, result.status === 'failed' ? result.nextAttemptAt : null, now],
    );
  }

  /** Marks many write-backs delivered in one statement (a delivery round's successes). */
  async finishDelivered(done: readonly { id: string; target: string; deliveredRef: string | null }[]): Promise<void> {
    if (done.length === 0) return;
    const now = this.#clock.now();
    await this.#db.query(
      `UPDATE writeback_outbox o SET status = 'delivered', delivered_at = $4, target = d.target, delivered_ref = d.ref, last_error = NULL, updated_at = $4
       FROM unnest($1::uuid[], $2::text[], $3::text[]) AS d (id, target, ref)
       WHERE o.id = d.id AND o.status <> 'delivered'`,
      [done.map((d) => d.id), done.map((d) => d.target), done.map((d) => d.deliveredRef), now],
    );
  }

  /** One write-back of a practice, by its row id (uuid) or its write-back id (`payment-…`). */
  async getWriteback(practiceId: string, idOrWritebackId: string): Promise<WritebackRow | undefined> {
    const column = isUuid(idOrWritebackId) ? 'id' : 'writeback_id';
    const { rows } = await this.#db.query<OutboxRow>(`SELECT ${OUTBOX_COLUMNS} FROM writeback_outbox WHERE practice_id = $1 AND ${column} = $2`, [practiceId, idOrWritebackId]);
    return rows[0] && toWriteback(rows[0]);
  }

  /** A practice's write-backs, newest first, optionally of one status. */
  async listWritebacks(practiceId: string, options: { status?: WritebackStatus; limit?: number; offset?: number } = {}): Promise<WritebackRow[]> {
    const { rows } = await this.#db.query<OutboxRow>(
      `SELECT ${OUTBOX_COLUMNS} FROM writeback_outbox WHERE practice_id = $1 AND ($2::text IS NULL OR status = $2)
       ORDER BY seq DESC LIMIT $3 OFFSET $4`,
      [practiceId, options.status ?? null, options.limit ?? 50, options.offset ?? 0],
    );
    return rows.map(toWriteback);
  }

  /**
   * Puts a failed or dead write-back back in line, due now, with its attempts reset.
   * @returns the row as it is now; undefined when there is none; the unchanged row when it was delivered or is
   *   still pending (nothing to replay).
   */
  async replayWriteback(practiceId: string, idOrWritebackId: string): Promise<{ row: WritebackRow; replayed: boolean } | undefined> {
    const row = await this.getWriteback(practiceId, idOrWritebackId);
    if (!row) return undefined;
    if (row.status !== 'failed' && row.status !== 'dead') return { row, replayed: false };
    const now = this.#clock.now();
    const { rows } = await this.#db.query<OutboxRow>(
      `UPDATE writeback_outbox SET status = 'pending', attempts = 0, next_attempt_at = $3, updated_at = $3
       WHERE practice_id = $1 AND id = $2 AND status IN ('failed', 'dead') RETURNING ${OUTBOX_COLUMNS}`,
      [practiceId, row.id, now],
    );
    return rows[0] ? { row: toWriteback(rows[0]), replayed: true } : { row, replayed: false };
  }

  /** How many write-backs are in each status (of one practice, or of all). */
  async writebackCounts(practiceId?: string): Promise<Record<WritebackStatus, number>> {
    const { rows } = await this.#db.query<{ status: WritebackStatus; n: string }>(
      'SELECT status, count(*)::text AS n FROM writeback_outbox WHERE ($1::uuid IS NULL OR practice_id = $1) GROUP BY status',
      [practiceId ?? null],
    );
    const counts: Record<WritebackStatus, number> = { pending: 0, delivered: 0, failed: 0, dead: 0 };
    for (const r of rows) counts[r.status] = Number(r.n);
    return counts;
  }

  /** The balances a write-back pays, as the EHR knows them (see {@link WritebackBalance}); unknown ids are left out. */
  async writebackBalances(practiceId: string, balanceIds: readonly string[]): Promise<WritebackBalance[]> {
    const ids = balanceIds.filter((id) => isUuid(id));
    if (ids.length === 0) return [];
    const { rows } = await this.#db.query<{ id: string; a_system: string; a_value: string; p_system: string | null; p_value: string | null }>(
      `SELECT b.id, a.identifier_system AS a_system, a.identifier_value AS a_value, p.identifier_system AS p_system, p.identifier_value AS p_value
       FROM balances b JOIN ledger_accounts a ON a.id = b.account_id LEFT JOIN patients p ON p.id = b.patient_id
       WHERE b.practice_id = $1 AND b.id = ANY($2::uuid[])`,
      [practiceId, ids],
    );
    const sources = await this.#db.query<{ balance_id: string; source_connector: string; source_resource_type: string; source_id: string }>(
      `SELECT balance_id, source_connector, source_resource_type, source_id FROM ledger_entries
       WHERE practice_id = $1 AND balance_id = ANY($2::uuid[]) AND kind = 'charge' AND source_connector <> 'settle' AND reverses_entry_id IS NULL
       GROUP BY balance_id, source_connector, source_resource_type, source_id ORDER BY balance_id, min(seq)`,
      [practiceId, ids],
    );
    const byId = new Map(rows.map((r) => [r.id, r]));
    return ids.flatMap((id) => {
      const r = byId.get(id);
      if (!r) return [];
      return [{
        balanceId: id,
        account: { system: r.a_system, value: r.a_value },
        patient: r.p_system !== null && r.p_value !== null ? { system: r.p_system, value: r.p_value } : null,
        sources: sources.rows.filter((s) => s.balance_id === id).map((s) => ({ connector: s.source_connector, resourceType: s.source_resource_type, sourceId: s.source_id })),
      }];
    });
  }
}
