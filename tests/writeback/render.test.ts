/**
 * What Settle writes back, checked without a network: the PaymentReconciliation against fhir-profiles/ (Medplum)
 * and HL7's fhir.schema.json (ajv), Oracle Health's Basic through its mapping preset, and the DFT^P03.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Hl7Message } from '@medplum/core';
import type { StructureDefinition } from '@medplum/fhirtypes';
import { loadDataFiles } from '../../src/config/data-files.ts';
import { renderVendorBasic } from '../../src/writeback/render-basic.ts';
import { renderPaymentReconciliation, type WritebackDocument } from '../../src/writeback/render-fhir.ts';
import { MAX_CONTROL_ID, renderDftP03 } from '../../src/writeback/render-hl7.ts';
import { writebackIssues } from '../../src/writeback/validate.ts';
import { hl7ControlId, type WritebackKind, type WritebackRow } from '../../src/store/payments.ts';
import { repoFiles, repoMappings } from './fixtures.ts';

const profiles = repoFiles.profiles.map((p) => p.data as unknown as StructureDefinition);
const PAYMENT = '0b7c2f0e-3c1a-4a55-9d7e-6f1f2a3b4c5d';

function doc(kind: WritebackKind, amounts: [string, number][], writebackId = `${kind}-${PAYMENT}`): WritebackDocument {
  const row: WritebackRow = {
    id: 'f0000000-0000-4000-8000-000000000001', practiceId: 'p', paymentId: PAYMENT, kind, writebackId, controlId: hl7ControlId('p', writebackId),
    amount: { amount: amounts.reduce((s, [, a]) => s + a, 0), currency: 'USD' }, allocations: amounts.map(([balanceId, amountMinor]) => ({ balanceId, amountMinor })),
    status: 'pending', attempts: 0, nextAttemptAt: new Date(), lastError: null, deliveredAt: null, createdAt: new Date('2026-03-04T15:16:17Z'),
    target: null, deliveredRef: null, lastAttemptAt: null,
  };
  return {
    row, connector: 'ehr', identifierSystem: 'urn:settle:writeback',
    balances: [
      { balanceId: 'bal-inv', account: { system: 'urn:settle:connector:ehr:account', value: 'acct-1' }, patient: { system: 'urn:mrn', value: 'MRN|7^8&9' }, sources: [{ connector: 'ehr', resourceType: 'Invoice', sourceId: 'inv-1' }] },
      { balanceId: 'bal-acct', account: { system: 'urn:settle:connector:ehr:account', value: 'acct-2' }, patient: null, sources: [{ connector: 'ehr', resourceType: 'ChargeItem', sourceId: 'ci-1' }] },
      { balanceId: 'bal-acct3', account: { system: 'urn:settle:connector:ehr:account', value: 'acct-3' }, patient: null, sources: [] },
      { balanceId: 'bal-hl7', account: { system: 'urn:pm:acct', value: 'A|1^2' }, patient: null, sources: [] },
    ],
  };
}

describe('write-back PaymentReconciliation', () => {
  it('a payment split over two balances: identifier, amounts, outcome, and a detail per balance naming its Invoice or Account', () => {
    const pr = renderPaymentReconciliation(doc('payment', [['bal-inv', 8_000], ['bal-acct', 4_050]]));
    assert.deepEqual(pr.identifier, [{ system: 'urn:settle:writeback', value: `payment-${PAYMENT}` }]);
    assert.equal(pr.status, 'active');
    assert.equal(pr.outcome, 'complete');
    assert.equal(pr.created, '2026-03-04T15:16:17.000Z');
    assert.equal(pr.paymentDate, '2026-03-04');
    assert.deepEqual(pr.paymentAmount, { value: 120.5, currency: 'USD' });
    assert.deepEqual(pr.detail?.map((d) => [d.identifier?.value, d.request?.reference, d.amount?.value]), [['bal-inv', 'Invoice/inv-1', 80], ['bal-acct', 'Account/acct-2', 40.5]]);
    assert.equal(pr.detail?.[0]?.predecessor, undefined);
  });

  it('is valid against fhir-profiles/settle-payment-reconciliation (Medplum) and HL7 fhir.schema.json (ajv)', () => {
    for (const kind of ['payment', 'refund', 'reversal'] as const) {
      assert.deepEqual(writebackIssues(renderPaymentReconciliation(doc(kind, [['bal-inv', 8_000], ['bal-hl7', 1]])), profiles), [], kind);
    }
  });

  it('a refund and a lost dispute carry negative amounts and name the payment they take back from', () => {
    for (const kind of ['refund', 'reversal'] as const) {
      const pr = renderPaymentReconciliation(doc(kind, [['bal-inv', 1_000]], `${kind}-${PAYMENT}-1000`));
      assert.deepEqual(pr.paymentAmount, { value: -10, currency: 'USD' });
      assert.equal(pr.detail?.[0]?.amount?.value, -10);
      assert.deepEqual(pr.detail?.[0]?.predecessor, { system: 'urn:settle:writeback', value: `payment-${PAYMENT}` });
    }
  });

  it('a balance from another system is referenced by its account identifier, not a made-up id', () => {
    const pr = renderPaymentReconciliation(doc('payment', [['bal-hl7', 500]]));
    assert.deepEqual(pr.detail?.[0]?.request, { type: 'Account', identifier: { system: 'urn:pm:acct', value: 'A|1^2' } });
  });

  it('each validator catches what is wrong on its own: a missing detail reference (profile) and a text amount (both)', () => {
    const pr = renderPaymentReconciliation(doc('payment', [['bal-inv', 100]]));
    const noRequest = { ...pr, detail: [{ ...pr.detail![0]!, request: undefined }] };
    const issues = writebackIssues(noRequest, profiles);
    assert.ok(issues.some((i) => i.validator.startsWith('medplum https://') && i.path.includes('detail[0].request')), JSON.stringify(issues));
    const textAmount = { ...pr, paymentAmount: { value: '1.00', currency: 'USD' } } as never;
    const both = writebackIssues(textAmount, profiles);
    assert.ok(both.some((i) => i.validator.startsWith('medplum')), JSON.stringify(both));
    assert.ok(both.some((i) => i.validator === 'fhir.schema.json' && i.path === '/paymentAmount/value'), JSON.stringify(both));
    const unknownOutcome = { ...pr, outcome: 'paid' as never, paidBy: 'card' } as never;
    const schemaIssues = writebackIssues(unknownOutcome).filter((i) => i.validator === 'fhir.schema.json').map((i) => i.path);
    assert.deepEqual(schemaIssues.sort(), ['/', '/outcome'], 'an unknown code and an unknown property');
  });
});

describe('Oracle Health write-back through the oracle-health-writeback-basic mapping', () => {
  const mapping = repoMappings.get('oracle-health-writeback-basic')!;

  it('one Basic FinancialTransaction per balance, on its Account, with the amount and an identifier of letters and digits', () => {
    const basics = renderVendorBasic(doc('payment', [['bal-acct', 4_050], ['bal-acct3', 100]]), mapping);
    assert.equal(basics.length, 2);
    const [first, second] = basics;
    assert.deepEqual(second!.subject, { reference: 'Account/acct-3' });
    assert.deepEqual(first!.identifier, [{ system: 'urn:settle:writeback', value: `payment${PAYMENT.replaceAll('-', '')}n1` }]);
    assert.deepEqual(first!.subject, { reference: 'Account/acct-2' });
    const amount = first!.extension!.find((e) => e.url.endsWith('/financial-transaction-amount'));
    assert.deepEqual(amount?.valueMoney, { value: 40.5, currency: 'USD' });
    for (const basic of basics) assert.deepEqual(writebackIssues(basic, profiles), []);
  });

  it('a balance with no Account at that EHR cannot be posted: the mapping says which field is missing', () => {
    assert.throws(() => renderVendorBasic(doc('payment', [['bal-hl7', 100]]), mapping), /accountReference/);
  });
});

describe('write-back DFT^P03', () => {
  const options = { sendingApplication: 'SETTLE', sendingFacility: 'Main & Co', receivingApplication: 'PMS', receivingFacility: '', transactionCode: 'PATPAY' };
  const now = new Date('2026-03-05T10:00:00Z');

  it('MSH-10 is the write-back\'s control id (at most 20 characters), FT1-6 PY and FT1-11 a negative amount&currency per balance, values escaped', () => {
    const payment = doc('payment', [['bal-inv', 8_000]]);
    const [message, ...more] = renderDftP03(payment, options, now);
    assert.equal(more.length, 0);
    assert.equal(message!.controlId, payment.row.controlId);
    assert.ok(message!.controlId.length <= MAX_CONTROL_ID, `${message!.controlId} fits MSH-10 (ST, 20)`);
    assert.ok(payment.row.writebackId.length > MAX_CONTROL_ID, 'the write-back id itself would not');
    const parsed = Hl7Message.parse(message!.text);
    assert.equal(parsed.getSegment('MSH')?.getField(10)?.toString(), payment.row.controlId);
    assert.equal(parsed.getSegment('MSH')?.getField(9)?.toString(), 'DFT^P03^DFT_P03');
    assert.match(message!.text, /^MSH\|\^~\\&\|SETTLE\|Main \\T\\ Co\|PMS\|/);
    const ft1 = message!.text.split('\r').find((s) => s.startsWith('FT1|'))!.split('|');
    assert.equal(ft1[6], 'PY');
    assert.equal(ft1[11], '-80.00&USD');
    assert.equal(ft1[4], '20260304');
    const pid = message!.text.split('\r').find((s) => s.startsWith('PID|'))!.split('|');
    assert.equal(pid[3], 'MRN\\F\\7\\S\\8\\T\\9^^^^MR', 'the | ^ & of an identifier cannot shift fields');
    assert.equal(pid[18], 'acct-1');
    assert.equal(pid[5], '', 'no patient name: identifiers only');
  });

  it('a refund posts PY with the opposite (positive) sign; balances on two accounts go as two messages', () => {
    const refund = doc('refund', [['bal-inv', 1_000], ['bal-hl7', 250]], `refund-${PAYMENT}-1250`);
    const messages = renderDftP03(refund, options, now);
    assert.deepEqual(messages.map((m) => m.controlId), [`${refund.row.controlId}-1`, `${refund.row.controlId}-2`]);
    for (const m of messages) assert.ok(m.controlId.length <= MAX_CONTROL_ID, `${m.controlId} fits MSH-10`);
    const amounts = messages.map((m) => m.text.split('\r').find((s) => s.startsWith('FT1|'))!.split('|')[11]);
    assert.deepEqual(amounts, ['10.00&USD', '2.50&USD']);
    assert.equal(messages[1]!.text.split('\r').find((s) => s.startsWith('PID|'))!.split('|')[18], 'A\\F\\1\\S\\2');
  });
});

describe('write-back control ids (MSH-10)', () => {
  it('are 16 upper-case hex characters, the same for the same write-back, different for another write-back or practice', () => {
    const id = hl7ControlId('p', `payment-${PAYMENT}`);
    assert.match(id, /^[0-9A-F]{16}$/);
    assert.equal(hl7ControlId('p', `payment-${PAYMENT}`), id);
    assert.notEqual(hl7ControlId('p', `refund-${PAYMENT}-1250`), id);
    assert.notEqual(hl7ControlId('q', `payment-${PAYMENT}`), id);
  });
});

describe('writeBack sections of connector files', () => {
  const problemsOf = (files: Record<string, unknown>) => {
    const dir = mkdtempSync(join(tmpdir(), 'settle-writeback-config-'));
    mkdirSync(join(dir, 'connectors'));
    for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, 'connectors', `${name}.json`), JSON.stringify({ name, ...(data as object) }));
    return loadDataFiles(dir).problems.map((p) => `${p.file}: ${p.path}: ${p.message}`);
  };
  const fhir = { description: 'x', practice: 'default', transport: 'fhir-r4', baseUrl: 'http://127.0.0.1:8090/fhir/R4', auth: { method: 'none' }, resources: [{ type: 'Invoice' }], schedule: { every: '1 hour' }, pageSize: 10, rateLimitPerSecond: 1 };
  const hl7 = { description: 'x', practice: 'default', transport: 'hl7v2-mllp', listen: { host: '127.0.0.1', port: 2575 }, acceptedMessageTypes: ['DFT^P03'], charset: 'UTF-8', retentionDays: 30 };

  it('the shipped presets are valid, and only generic-fhir-r4 (the sandbox EHR) has write-back enabled', () => {
    assert.deepEqual(repoFiles.problems.filter((p) => p.file.startsWith('connectors/')), []);
    assert.deepEqual(repoFiles.connectors.filter((c) => (c.data.writeBack as { enabled?: boolean } | undefined)?.enabled).map((c) => c.name), ['generic-fhir-r4']);
  });

  it('a mistake names the file, the JSON path and what was expected', () => {
    assert.deepEqual(problemsOf({
      'a-typo': { ...fhir, writeBack: { enabled: true, renderer: 'paymentreconciliation' } },
      'b-no-mapping': { ...fhir, writeBack: { enabled: true, renderer: 'vendor-mapping' } },
      'c-no-outbound': { ...hl7, writeBack: { enabled: true, renderer: 'hl7-dft-p03' } },
    }), [
      'connectors/a-typo.json: /writeBack/renderer: must be one of: payment-reconciliation, vendor-mapping (got "paymentreconciliation")',
      'connectors/b-no-mapping.json: /writeBack/mapping: is required',
      'connectors/c-no-outbound.json: : a writeBack needs "outbound": the peer DFT^P03 write-backs are sent to',
    ]);
  });
});
