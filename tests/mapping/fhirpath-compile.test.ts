import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { evalFhirPathTyped, parseFhirPath, toTypedValue } from '@medplum/core';
import { compileFhirPathAst } from '../../src/mapping/fhirpath-compile.ts';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const examples = ['Invoice-example.json', 'Account-example.json', 'Account-ewg.json', 'ChargeItem-example.json', 'Patient-example.json'].map((f) =>
  JSON.parse(readFileSync(`${repoRoot}node_modules/hl7.fhir.r4.examples/${f}`, 'utf8')),
);
const withLines = {
  ...examples[0],
  lineItem: [
    { sequence: 1, chargeItemCodeableConcept: { coding: [{ code: 'a' }] }, priceComponent: [{ type: 'base', amount: { value: 1.5, currency: 'EUR' } }, { type: 'discount', amount: { value: 0.5, currency: 'EUR' } }] },
    { sequence: 2, priceComponent: [{ type: 'tax', amount: { value: 2, currency: 'EUR' } }] },
  ],
};
const resources = [...examples, withLines, { resourceType: 'Invoice', subject: { reference: 'https://ehr.example/fhir/Patient/p1/_history/2' } }, { resourceType: 'Account', guarantor: [{ onHold: true, party: { reference: 'RelatedPerson/x' } }, { party: { reference: 'Patient/y', display: 'Y' } }] }];

/** Every FHIRPath in the shipped mappings, with the forEach it runs under (if any). */
function expressions(): { expression: string; forEach?: string }[] {
  const out: { expression: string; forEach?: string }[] = [];
  for (const file of readdirSync(`${repoRoot}mappings`).filter((f) => f.endsWith('.json') && !f.endsWith('.schema.json'))) {
    const data = JSON.parse(readFileSync(`${repoRoot}mappings/${file}`, 'utf8'));
    // Write-back mappings read Settle's own PaymentReconciliation once per write-back; Medplum evaluates what the
    // compiler leaves (`replace`), which the write-back tests cover.
    if (data.source.transport !== 'fhir-r4' || data.source.resourceType === 'PaymentReconciliation') continue;
    for (const spec of Object.values(data.fields) as { fhirpath?: string }[]) if (spec.fhirpath) out.push({ expression: spec.fhirpath });
    for (const event of data.events ?? []) {
      for (const spec of Object.values(event) as { fhirpath?: string }[]) if (spec && typeof spec === 'object' && spec.fhirpath) out.push({ expression: spec.fhirpath, forEach: event.forEach });
    }
  }
  return out;
}

const medplum = (expression: string, input: unknown, resource: unknown) =>
  evalFhirPathTyped(parseFhirPath(expression), [toTypedValue(input)], { '%resource': toTypedValue(resource) }).map((v) => v.value);

describe('compiled FHIRPath', () => {
  it('compiles every expression of the shipped mappings and agrees with Medplum on the HL7 examples', () => {
    const all = expressions();
    assert.ok(all.length > 15);
    for (const { expression, forEach } of all) {
      const compiled = compileFhirPathAst(parseFhirPath(expression));
      assert.ok(compiled, `not compiled: ${expression}`);
      for (const resource of resources) {
        const inputs = forEach ? compileFhirPathAst(parseFhirPath(forEach))!([resource], resource) : [resource];
        for (const input of inputs) {
          assert.deepEqual(compiled([input], resource), medplum(expression, input, resource), `${expression} on ${resource.resourceType}/${resource.id}`);
        }
      }
    }
  });

  it('leaves what it does not handle to Medplum', () => {
    for (const expression of ['Invoice.lineItem.ofType(BackboneElement)', 'Invoice.lineItem[0]', 'Invoice.totalGross.value + 1', '%now', 'Invoice.where($this.id = "x")']) {
      assert.equal(compileFhirPathAst(parseFhirPath(expression)), undefined, expression);
    }
  });
});

describe('compiled FHIRPath on edge cases', () => {
  // Paths, where() criteria (compiled to tests of one item), first(), exists(), empty(), unions, on collections that
  // are empty, missing, null, nested arrays, choice elements and resources of another type.
  const edge = [
    { resourceType: 'Invoice' },
    { resourceType: 'Invoice', lineItem: [] },
    { resourceType: 'Invoice', status: 'issued', lineItem: [null, { sequence: 1 }, { sequence: 2, priceComponent: null }] },
    {
      resourceType: 'Invoice',
      lineItem: [
        { sequence: 1, chargeItemCodeableConcept: { coding: [{ code: 'a' }, { code: 'b' }] }, priceComponent: [{ type: 'base' }, { type: ['base', 'tax'] }, { amount: { value: 1 } }] },
        { sequence: 2, chargeItemCodeableConcept: { coding: [{ code: 'a' }] }, priceComponent: [{ type: 'tax', amount: { value: 2, currency: 'EUR' } }, { type: 'base', amount: { value: 3 } }] },
        { chargeItemReference: { reference: 'ChargeItem/x' }, priceComponent: [{ type: 'discount', amount: { value: 0 } }] },
      ],
      totalGross: { value: 6 },
    },
    { resourceType: 'ChargeItem', occurrenceDateTime: '2026-01-02', code: { coding: [{ code: 'x' }] } },
    { resourceType: 'ChargeItem', occurrencePeriod: { start: '2026-01-02' } },
  ];
  const cases: { expression: string; forEach?: string }[] = [
    { expression: 'Invoice.lineItem.sequence' },
    { expression: 'lineItem.priceComponent.amount.value' },
    { expression: 'Invoice.lineItem.first().sequence' },
    { expression: 'Invoice.lineItem.where(sequence = 2).priceComponent.type' },
    { expression: 'Invoice.lineItem.where(sequence != 2).sequence' },
    { expression: "Invoice.lineItem.where(chargeItemCodeableConcept.coding.code = 'a').sequence" },
    { expression: "Invoice.lineItem.where(chargeItemCodeableConcept.coding.code != 'a').sequence" },
    { expression: 'Invoice.lineItem.exists(priceComponent.exists())' },
    { expression: "Invoice.lineItem.exists(priceComponent.type = 'discount')" },
    { expression: 'Invoice.lineItem.where(priceComponent.empty())' },
    { expression: 'Invoice.totalGross.where(%resource.lineItem.empty())' },
    { expression: "Invoice.status = 'issued' or Invoice.status = 'draft'" },
    { expression: "Invoice.status = 'issued' and Invoice.lineItem.exists()" },
    { expression: 'Invoice.lineItem.sequence | Invoice.lineItem.sequence' },
    { expression: 'ChargeItem.occurrence' },
    { expression: 'ChargeItem.occurrence.start' },
    { expression: "ChargeItem.code.coding.where(code = 'x').code" },
    { expression: 'Invoice.id' },
    { expression: "priceComponent.where(type = 'base' or type = 'surcharge' or type = 'tax').amount", forEach: 'Invoice.lineItem' },
    { expression: "priceComponent.where(type = 'discount' or type = 'deduction').amount", forEach: 'Invoice.lineItem' },
    { expression: "priceComponent.where(type = 'base' and amount.exists()).amount.value", forEach: 'Invoice.lineItem' },
    { expression: "priceComponent.where((type = 'base').not()).type", forEach: 'Invoice.lineItem' },
    { expression: 'priceComponent.where(amount.value = 0).type', forEach: 'Invoice.lineItem' },
    { expression: 'chargeItemCodeableConcept.coding.code', forEach: 'Invoice.lineItem' },
    { expression: 'chargeItemCodeableConcept.coding.first().code', forEach: 'Invoice.lineItem' },
    { expression: "chargeItemReference.reference.replaceMatches('^(.*/)?ChargeItem/([^/]+)$', 'id: $2 ($$)')", forEach: 'Invoice.lineItem' },
    { expression: "chargeItemReference.reference.replaceMatches('x', '$&$1')", forEach: 'Invoice.lineItem' },
    // `${name}` names a group in Medplum (and now here; it used to be copied as text).
    { expression: "chargeItemReference.reference.replaceMatches('ChargeItem/(?<id>.*)', '${id}')", forEach: 'Invoice.lineItem' },
    { expression: "Invoice.status.replaceMatches('s?', '/')" },
    // `where` as a step of a path: first, nested in a criterion, after a variable, twice in a row.
    { expression: 'where(lineItem.exists()).lineItem.sequence' },
    { expression: "Invoice.lineItem.where(priceComponent.where(type = 'base').exists()).sequence" },
    { expression: "Invoice.lineItem.where(priceComponent.where(type = 'base').amount.value = 3).sequence" },
    { expression: '%resource.lineItem.where(sequence = 1).sequence' },
    { expression: "Invoice.where(totalGross.where(currency = 'EUR').value = 6).totalGross.value" },
    { expression: "Invoice.where(totalGross.where(value = 6).value = 6).totalGross.value" },
    { expression: "Invoice.lineItem.where(sequence.exists()).where(chargeItemCodeableConcept.coding.code = 'a').sequence" },
  ];
  for (const { expression, forEach } of cases) {
    it(`agrees with Medplum: ${forEach ? `${forEach} → ` : ''}${expression}`, () => {
      const compiled = compileFhirPathAst(parseFhirPath(expression));
      assert.ok(compiled, `not compiled: ${expression}`);
      for (const resource of edge) {
        const inputs = forEach ? medplum(forEach, resource, resource) : [resource];
        for (const input of inputs) {
          assert.deepEqual(compiled([input], resource), medplum(expression, input, resource), `${JSON.stringify(input)}`);
        }
        // Compiled twice, the copies agree (each compiled node is its own function).
        assert.deepEqual(compileFhirPathAst(parseFhirPath(expression))!([resource], resource), compiled([resource], resource));
      }
    });
  }
});
