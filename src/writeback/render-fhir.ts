/**
 * The FHIR PaymentReconciliation Settle writes back for a payment, refund or lost dispute
 * (`fhir-profiles/settle-payment-reconciliation.json`):
 *
 * - `identifier` = the write-back id (`payment-<id>`, `refund-<id>-<cumulative>`, `reversal-<id>-<dispute>`) in the
 *   target's identifier system: the key of the conditional create, so a redelivery never duplicates;
 * - `status` active, `outcome` complete, `created` and `paymentDate` from when the outbox row was written (so
 *   rendering the same row twice gives the same resource);
 * - `paymentAmount` the amount, negative for a refund or reversal (money went back to the patient), and a
 *   `detail` per balance with its amount (same sign) and a `request` reference to the Invoice or Account at the
 *   EHR the balance came from (its source ids in the ledger); refunds and reversals name the payment they take
 *   back from in `detail.predecessor`.
 *
 * Nothing identifying the patient beyond the EHR's own references is written (no names, no contact details).
 */
import type { Money as FhirMoney, PaymentReconciliation, PaymentReconciliationDetail, Reference } from '@medplum/fhirtypes';
import { toFhirMoney, type Money } from '../domain/money.ts';
import type { WritebackBalance, WritebackKind, WritebackRow } from '../store/payments.ts';

/** The identifier system of written resources when the connector names none. */
export const DEFAULT_WRITEBACK_SYSTEM = 'urn:settle:writeback';
/** The identifier system of Settle's balance ids in `detail.identifier`. */
export const BALANCE_SYSTEM = 'urn:settle:balance';
/** The identifier system of Settle's payment ids in `paymentIdentifier`. */
export const PAYMENT_SYSTEM = 'urn:settle:payment';

/** What every renderer renders: one outbox row, the balances it pays, and where it goes. */
export interface WritebackDocument {
  row: WritebackRow;
  /** The balances of `row.allocations`, as the EHR knows them (`PaymentRepository.writebackBalances`). */
  balances: readonly WritebackBalance[];
  /** The connector the write-back goes to: only its own source ids are used as references. */
  connector: string;
  /** System of the write-back identifier. */
  identifierSystem: string;
}

/** −1 when the money went back to the patient (refund, lost dispute), +1 for a payment. */
export const signOf = (kind: WritebackKind): 1 | -1 => (kind === 'payment' ? 1 : -1);

const DISPOSITION: Record<WritebackKind, string> = {
  payment: 'Patient card payment',
  refund: 'Card refund to the patient',
  reversal: 'Card payment reversed (dispute lost)',
};

/**
 * The EHR record a balance pays: its one Invoice from the target connector, else its Account when the account
 * came from that connector, else a logical reference by the account's identifier.
 */
export function balanceReference(balance: WritebackBalance | undefined, connector: string, balanceId: string): Reference {
  if (!balance) return { identifier: { system: BALANCE_SYSTEM, value: balanceId } };
  const invoices = [...new Set(balance.sources.filter((s) => s.connector === connector && s.resourceType === 'Invoice').map((s) => s.sourceId))];
  if (invoices.length === 1) return { reference: `Invoice/${invoices[0]}`, type: 'Invoice' };
  if (balance.account.system === `urn:settle:connector:${connector}:account`) return { reference: `Account/${balance.account.value}`, type: 'Account' };
  return { type: 'Account', identifier: { system: balance.account.system, value: balance.account.value } };
}

/** A FHIR Money of `sign × amountMinor` (exact: through the decimal text of the minor units). */
export function signed(amountMinor: number, currency: string, sign: 1 | -1): FhirMoney {
  const m: Money = { amount: sign * amountMinor, currency };
  return toFhirMoney(m) as FhirMoney;
}

/** Renders the PaymentReconciliation of one write-back (deterministic: the same row gives the same resource). */
export function renderPaymentReconciliation(doc: WritebackDocument): PaymentReconciliation {
  const { row } = doc;
  const sign = signOf(row.kind);
  const created = row.createdAt.toISOString();
  const paymentDate = created.slice(0, 10);
  const byId = new Map(doc.balances.map((b) => [b.balanceId, b]));
  const allocations = row.allocations.length > 0 ? row.allocations : [];
  if (allocations.length === 0) throw new RangeError(`write-back ${row.writebackId} has no allocation to a balance: nothing to reconcile against`);
  const detail: PaymentReconciliationDetail[] = allocations.map((a) => ({
    identifier: { system: BALANCE_SYSTEM, value: a.balanceId },
    ...(row.kind === 'payment' ? {} : { predecessor: { system: doc.identifierSystem, value: `payment-${row.paymentId}` } }),
    type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/payment-type', code: 'payment', display: 'Payment' }] },
    request: balanceReference(byId.get(a.balanceId), doc.connector, a.balanceId),
    date: paymentDate,
    amount: signed(a.amountMinor, row.amount.currency, sign),
  }));
  return {
    resourceType: 'PaymentReconciliation',
    identifier: [{ system: doc.identifierSystem, value: row.writebackId }],
    status: 'active',
    created,
    outcome: 'complete',
    disposition: DISPOSITION[row.kind],
    paymentDate,
    paymentAmount: signed(row.amount.amount, row.amount.currency, sign),
    paymentIdentifier: { system: PAYMENT_SYSTEM, value: row.paymentId },
    detail,
  };
}
