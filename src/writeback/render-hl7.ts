/**
 * The HL7 v2.5.1 DFT^P03 Settle sends a practice-management system for a payment, refund or lost dispute:
 *
 *   MSH|^~\&|SETTLE|<facility>|<receiver>|<facility>|<now>||DFT^P03^DFT_P03|<control id>|P|2.5.1|||||||UNICODE UTF-8
 *   EVN|P03|<now>
 *   PID|1||<patient id>^^^^MR|||||||||||||||<account number>
 *   FT1|1|<control id>-1||<date>|<date>|PY|PATPAY^Patient payment|Patient card payment||1|-150.00&USD
 *
 * - one message per account the write-back pays (PID-18 names one account); MSH-10 (ST, at most 20 characters
 *   in v2.3–2.5) is the write-back's stored 16-character control id (`hl7ControlId`: the same on every retry, so
 *   the receiver de-duplicates by it and the ACK's MSA-2 is matched against it), with several accounts
 *   `<control id>-<n>`;
 * - one FT1 per balance of that account: FT1-6 `PY`, FT1-11 the amount as `amount&currency`, negative for a
 *   payment (it lowers what the patient owes) and positive for a refund or reversal (the opposite sign);
 * - every value is escaped (`\F\`, `\S\`, `\T\`, `\R\`, `\E\`), so a `|` or `^` in an identifier cannot
 *   shift a field; PID carries identifiers only, never the patient's name or contact details.
 */
import { hl7Timestamp } from '../connectors/hl7v2/ack.ts';
import { escapeHl7 } from '../connectors/hl7v2/hl7-text.ts';
import { formatMoney } from '../domain/money.ts';
import type { WritebackKind } from '../store/payments.ts';
import { signOf, type WritebackDocument } from './render-fhir.ts';

/** Header values and the transaction code of the receiving system (the connector's `writeBack`). */
export interface DftOptions {
  sendingApplication: string;
  sendingFacility: string;
  receivingApplication: string;
  receivingFacility: string;
  /** FT1-7: the code the receiving system posts patient payments under. */
  transactionCode: string;
}

/** One message to send: its MSH-10 and text (segments separated by CR). */
export interface DftMessage {
  controlId: string;
  text: string;
}

const DESCRIPTION: Record<WritebackKind, string> = {
  payment: 'Patient card payment',
  refund: 'Card refund to the patient',
  reversal: 'Card payment reversed (dispute lost)',
};

const e = (value: string) => escapeHl7(value);

/** MSH-10 is ST of at most 20 characters in HL7 v2.3–2.5. */
export const MAX_CONTROL_ID = 20;

/** HL7 DT (YYYYMMDD) of an instant, in UTC. */
const hl7Date = (date: Date) => date.toISOString().slice(0, 10).replaceAll('-', '');

/** Renders the DFT^P03 messages of one write-back (see the module comment). */
export function renderDftP03(doc: WritebackDocument, options: DftOptions, now: Date): DftMessage[] {
  const { row } = doc;
  if (row.allocations.length === 0) throw new RangeError(`write-back ${row.writebackId} has no allocation to a balance: nothing to post`);
  const byId = new Map(doc.balances.map((b) => [b.balanceId, b]));
  // Payments lower the balance: negative; refunds and reversals raise it again: positive.
  const sign = -signOf(row.kind);
  const groups = new Map<string, { account: string; patient: string; lines: { balanceId: string; amountMinor: number }[] }>();
  for (const a of row.allocations) {
    const balance = byId.get(a.balanceId);
    const account = balance?.account.value ?? '';
    const group = groups.get(account) ?? { account, patient: balance?.patient?.value ?? '', lines: [] };
    group.lines.push(a);
    groups.set(account, group);
  }
  const stamp = hl7Timestamp(now);
  const posted = hl7Date(row.createdAt);
  const all = [...groups.values()];
  return all.map((group, index) => {
    const controlId = all.length === 1 ? row.controlId : `${row.controlId}-${index + 1}`;
    if (controlId.length > MAX_CONTROL_ID) throw new RangeError(`write-back ${row.writebackId} pays ${all.length} accounts: MSH-10 ${controlId} is over ${MAX_CONTROL_ID} characters`);
    const msh = ['MSH', '^~\\&', e(options.sendingApplication), e(options.sendingFacility), e(options.receivingApplication), e(options.receivingFacility),
      stamp, '', 'DFT^P03^DFT_P03', e(controlId), 'P', '2.5.1', '', '', '', '', '', 'UNICODE UTF-8'];
    const pid = ['PID', '1', '', group.patient ? `${e(group.patient)}^^^^MR` : '', '', '', '', '', '', '', '', '', '', '', '', '', '', '', e(group.account)];
    const ft1s = group.lines.map((line, i) => [
      'FT1', String(i + 1), e(`${controlId}-${i + 1}`), '', posted, posted, 'PY', `${e(options.transactionCode)}^${e(DESCRIPTION[row.kind])}`,
      e(DESCRIPTION[row.kind]), '', '1', `${formatMoney({ amount: sign * line.amountMinor, currency: row.amount.currency })}&${e(row.amount.currency)}`,
    ].join('|'));
    return { controlId, text: [msh.join('|'), ['EVN', 'P03', stamp].join('|'), pid.join('|'), ...ft1s].join('\r') };
  });
}
