/**
 * A vendor write-back through a mapping file: the mapping layer reads values (FHIRPath) from Settle's own
 * PaymentReconciliation of the write-back, and this module places them in the vendor's resource. The preset is
 * Oracle Health's FinancialTransaction (`mappings/oracle-health-writeback-basic.json`): a `Basic` with Oracle's
 * financial-transaction extensions, one per balance because each names one Account.
 *
 * The mapping layer reads records; it has no way to say where values go in an outbound resource, so the shape
 * of the Basic is fixed here and the mapping says where each value comes from (which field names it must give:
 * `transactionIdentifier`, `identifierSystem`, `amount`, `postedDate`, `accountReference`, `transactionType`,
 * `paymentMethod`, `alias`).
 */
import type { Basic, Extension } from '@medplum/fhirtypes';
import type { CompiledMapping } from '../mapping/compile.ts';
import type { Money } from '../domain/money.ts';
import { renderPaymentReconciliation, signed, type WritebackDocument } from './render-fhir.ts';

/** Base of Oracle Health's extension URLs. */
export const ORACLE_EXTENSION_BASE = 'https://fhir-ehr.cerner.com/r4/StructureDefinition';

/** A vendor mapping that could not render a write-back; names the mapping and the failing fields. */
export class WritebackMappingError extends Error {
  constructor(mapping: string, problems: string[]) {
    super(`mapping ${mapping} cannot render the write-back: ${problems.join('; ')}`);
    this.name = 'WritebackMappingError';
  }
}

const ext = (name: string, value: Omit<Extension, 'url'>): Extension => ({ url: `${ORACLE_EXTENSION_BASE}/${name}`, ...value });

/**
 * The Basic FinancialTransactions of one write-back, one per balance (see the module comment).
 * @throws WritebackMappingError when the mapping fails on a balance (a missing Account reference, say).
 */
export function renderVendorBasic(doc: WritebackDocument, mapping: CompiledMapping): Basic[] {
  const reconciliation = renderPaymentReconciliation(doc);
  const details = reconciliation.detail ?? [];
  return details.map((detail, index) => {
    // The mapping sees the write-back narrowed to this balance; several balances get their own identifiers.
    const value = details.length === 1 ? doc.row.writebackId : `${doc.row.writebackId}n${index + 1}`;
    const narrowed = { ...reconciliation, identifier: [{ system: doc.identifierSystem, value }], detail: [detail] };
    const result = mapping.map({ transport: 'fhir-r4', resourceType: 'PaymentReconciliation', connector: doc.connector, body: narrowed });
    if (!result.ok) throw new WritebackMappingError(mapping.name, result.issues.map((i) => `${i.path}: ${i.message}`));
    const v = result.record.values;
    const amount = v.amount as Money;
    return {
      resourceType: 'Basic',
      identifier: [{ system: String(v.identifierSystem), value: String(v.transactionIdentifier) }],
      code: { coding: [{ system: 'https://fhir-ehr.cerner.com/r4/CodeSystem/BasicResourceType', code: 'financial-transaction', display: 'Financial Transaction' }] },
      subject: { reference: String(v.accountReference) },
      created: String(v.postedDate),
      extension: [
        ext('financial-transaction-amount', { valueMoney: signed(Math.abs(amount.amount), amount.currency, amount.amount < 0 ? -1 : 1) }),
        ext('financial-transaction-type', { valueCodeableConcept: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/payment-type', code: String(v.transactionType) }] } }),
        ext('financial-transaction-method', { valueCodeableConcept: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0570', code: String(v.paymentMethod) }] } }),
        ...(v.alias ? [ext('financial-transaction-alias', { valueString: String(v.alias) })] : []),
      ],
    } satisfies Basic;
  });
}
