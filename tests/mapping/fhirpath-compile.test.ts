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
