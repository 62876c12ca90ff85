import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { SourceRecord } from '../../src/domain/source-record.ts';
import { fhirValidator } from '../../src/mapping/fhir-validation.ts';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const example = (file: string) => JSON.parse(readFileSync(`${repoRoot}node_modules/hl7.fhir.r4.examples/${file}`, 'utf8'));
const record = (body: Record<string, unknown>): SourceRecord => ({
  practiceId: 'p', connector: 'c', transport: 'fhir-r4', resourceType: String(body.resourceType), sourceId: 'x', versionId: '1', lastUpdated: null, contentHash: 'h', body,
});

describe('fhirValidator', () => {
  const validate = fhirValidator();
  it('accepts the HL7 examples', () => {
    for (const file of ['Invoice-example.json', 'Account-example.json', 'Account-ewg.json', 'ChargeItem-example.json']) assert.deepEqual(validate(record(example(file))), [], file);
  });
  it('reports structural errors without quoting values', () => {
    const issues = validate(record({ ...example('Invoice-example.json'), totalGross: { value: '48 EUR', currency: 'EUR' }, subject: 'Patient/example' }));
    assert.ok(issues.length >= 2);
    assert.ok(issues.every((i) => i.code === 'invalid-resource' && i.path === '/source' && !i.message.includes('48 EUR')));
    assert.ok(issues.some((i) => i.message.startsWith('Invoice.totalGross.value')));
  });
  it('quarantines a resource Medplum\'s validator throws on (a `_primitive` that is not an object) instead of failing', () => {
    const issues = validate(record({ ...example('Invoice-example.json'), _id: 'x' }));
    assert.deepEqual(issues.map((i) => i.message), ['the resource cannot be validated (malformed JSON for FHIR)']);
  });
});
