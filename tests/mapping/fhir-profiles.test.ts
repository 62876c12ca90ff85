import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { StructureDefinition } from '@medplum/fhirtypes';
import { loadDataFiles } from '../../src/config/data-files.ts';
import type { SourceRecord } from '../../src/domain/source-record.ts';
import { profileProblems, profileWithSnapshot, ProfileError } from '../../src/mapping/fhir-profiles.ts';
import { fhirValidator } from '../../src/mapping/fhir-validation.ts';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const example = (file: string) => JSON.parse(readFileSync(`${repoRoot}node_modules/hl7.fhir.r4.examples/${file}`, 'utf8'));
const record = (body: Record<string, unknown>): SourceRecord => ({
  practiceId: 'p', connector: 'c', transport: 'fhir-r4', resourceType: String(body.resourceType), sourceId: 'x', versionId: '1', lastUpdated: null, contentHash: 'h', body,
});
const shipped = loadDataFiles(repoRoot).profiles;
const validate = fhirValidator(shipped.map((p) => p.data));
const messages = (body: Record<string, unknown>) => validate(record(body)).map((i) => i.message);

const profile = (elements: Record<string, unknown>[]): StructureDefinition => ({
  resourceType: 'StructureDefinition', id: 'p', url: 'https://settle.example.org/fhir/StructureDefinition/test-invoice', name: 'TestInvoice', status: 'draft', kind: 'resource',
  abstract: false, type: 'Invoice', baseDefinition: 'http://hl7.org/fhir/StructureDefinition/Invoice', derivation: 'constraint', differential: { element: elements as never },
});

describe('inbound FHIR profiles (fhir-profiles/settle-*.json)', () => {
  it('ships one for each resource type the shipped mappings read, each building into a snapshot', () => {
    const types = shipped.map((p) => (p.data as { type: string }).type).sort();
    assert.deepEqual(types, ['Account', 'ChargeItem', 'Invoice', 'Patient', 'PaymentReconciliation']);
    assert.deepEqual(profileProblems(shipped), []);
  });

  it('accepts the HL7 examples the mappings are tested with', () => {
    for (const file of ['Invoice-example.json', 'Account-example.json', 'Account-ewg.json', 'ChargeItem-example.json', 'Patient-example.json']) {
      assert.deepEqual(validate(record(example(file))), [], file);
    }
  });

  it('refuses what Settle cannot post, naming the rule', () => {
    const invoice = example('Invoice-example.json');
    assert.deepEqual(messages({ ...invoice, subject: undefined, account: undefined }), ['Invoice: Constraint settle-inv-1 not met: An Invoice names the patient or the account it bills']);
    assert.match(messages({ ...invoice, lineItem: undefined, totalGross: undefined, totalNet: undefined })[0]!, /settle-inv-2 not met/);
    assert.deepEqual(messages({ ...invoice, lineItem: undefined, totalGross: undefined, status: 'cancelled' }), [], 'a cancelled Invoice owes nothing');
    assert.deepEqual(messages({ ...example('ChargeItem-example.json'), priceOverride: undefined }), ['ChargeItem.priceOverride: Missing required property']);
  });

  it('still checks the base definition through a profile', () => {
    assert.ok(messages({ ...example('Patient-example.json'), birthDate: 'yesterday' }).some((m) => m.startsWith('Patient.birthDate')));
  });
});

describe('profileWithSnapshot', () => {
  it('applies min, max, mustSupport and constraints to the base definition and leaves the profile as it was', () => {
    const p = profile([{ id: 'Invoice.date', path: 'Invoice.date', min: 1, mustSupport: true }, { id: 'Invoice.note', path: 'Invoice.note', max: '1' }]);
    const built = profileWithSnapshot(p);
    const element = (id: string) => built.snapshot!.element!.find((e) => e.id === id)!;
    assert.equal(element('Invoice.date').min, 1);
    assert.equal(element('Invoice.date').mustSupport, true);
    assert.equal(element('Invoice.note').max, '1');
    assert.equal(element('Invoice.status').min, 1, 'the base stays');
    assert.equal(p.snapshot, undefined);
    assert.equal(profileWithSnapshot(built), built, 'a profile with a snapshot is used as given');
  });

  it('says which differential element cannot be built, and why', () => {
    const fails = (elements: Record<string, unknown>[], path: RegExp, message: RegExp) =>
      assert.throws(() => profileWithSnapshot(profile(elements)), (e: unknown) => e instanceof ProfileError && path.test(e.path) && message.test(e.message));
    fails([{ path: 'Invoice.price' }], /^\/differential\/element\/0\/path$/, /Invoice.price is not an element of Invoice/);
    fails([{ path: 'Invoice.date' }, { path: 'Invoice.status', min: 0 }], /^\/differential\/element\/1\/min$/, /cannot lower it to 0/);
    fails([{ path: 'Invoice.date', max: '2' }], /\/max$/, /cannot raise it to 2/);
    fails([{ path: 'Invoice.date', type: [{ code: 'date' }] }], /\/type$/, /give the profile's snapshot to change type/);
    fails([{ path: 'Invoice', constraint: [{ key: 'k', severity: 'error', human: 'h', expression: 'subject.exists(' }] }], /\/constraint\/0\/expression$/, /not FHIRPath/);
    assert.throws(() => profileWithSnapshot({ ...profile([{ path: 'Invoice.date' }]), baseDefinition: 'https://example.org/other' }), /must constrain a base R4 resource/);
  });
});
