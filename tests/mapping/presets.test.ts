import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { SourceRecord } from '../../src/domain/source-record.ts';
import type { CompiledMapping, MappedRecord, MapResult } from '../../src/mapping/compile.ts';
import { loadMappings } from '../../src/mapping/load.ts';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const registry = loadMappings(repoRoot);
const mapping = (name: string): CompiledMapping => registry.get(name) ?? assert.fail(`no mapping ${name}`);
const example = (file: string) => JSON.parse(readFileSync(`${repoRoot}node_modules/hl7.fhir.r4.examples/${file}`, 'utf8'));
export const fixture = (file: string) => readFileSync(new URL(`./fixtures/${file}`, import.meta.url), 'utf8');

export function fhirRecord(body: { resourceType: string; id?: string; meta?: { versionId?: string } }, connector = 'ehr'): SourceRecord {
  return {
    practiceId: 'p', connector, transport: 'fhir-r4', resourceType: body.resourceType, sourceId: body.id ?? 'x',
    versionId: body.meta?.versionId ?? '1', lastUpdated: null, contentHash: 'h', body,
  };
}

function mapped(result: MapResult): MappedRecord {
  if (!result.ok) assert.fail(`mapping failed: ${JSON.stringify(result.issues)}`);
  return result.record;
}

const summary = (record: MappedRecord) => record.lines.map((l) => [l.lineKey, l.kind, l.amount.amount, l.amount.currency, l.serviceDate, l.payer, l.serviceCode]);

describe('preset mappings on HL7 official FHIR R4 examples', () => {
  it('loads and compiles every shipped mapping', () => {
    assert.deepEqual(registry.all().map((m) => m.name), ['csv-statement', 'generic-fhir-account', 'generic-fhir-invoice', 'generic-fhir-patient', 'hl7v2-adt', 'hl7v2-bar', 'hl7v2-dft-p03', 'oracle-health-chargeitem', 'oracle-health-writeback-basic']);
  });

  it('Invoice "example": totalGross 48 EUR is one charge of 4800 cents on Account/example for Patient/example', () => {
    const record = mapped(mapping('generic-fhir-invoice').map(fhirRecord(example('Invoice-example.json'))));
    // The invoice has no line items: its totalGross ({value: 48, currency: EUR}) is the charge; totalNet (40) is not.
    assert.deepEqual(summary(record), [['total', 'charge', 4800, 'EUR', '2017-01-25', 'patient', null]]);
    assert.deepEqual(record.patient?.identifier, { system: 'urn:settle:connector:ehr:patient', value: 'example' });
    assert.deepEqual(record.account?.identifier, { system: 'urn:settle:connector:ehr:account', value: 'example' });
    assert.equal(record.guarantor, null, 'no guarantor: the patient (or the account\'s guarantor) is billed');
    assert.deepEqual(record.values.totalNet, { amount: 4000, currency: 'EUR' });
    assert.equal(record.values.date, '2017-01-25T02:00:00-05:00', '08:00+01:00 in America/New_York');
  });

  it('Invoice with line items: each line is charged (base + surcharge + tax, exactly) and discounts are adjustments', () => {
    const invoice = {
      ...example('Invoice-example.json'),
      lineItem: [
        { sequence: 1, chargeItemCodeableConcept: { coding: [{ code: '99213' }] }, priceComponent: [
          { type: 'base', amount: { value: 0.1, currency: 'EUR' } }, { type: 'surcharge', amount: { value: 0.2, currency: 'EUR' } },
          { type: 'tax', amount: { value: 19.99, currency: 'EUR' } }, { type: 'discount', amount: { value: 0.3, currency: 'EUR' } },
          { type: 'informational', amount: { value: 1000, currency: 'EUR' } },
        ] },
        { sequence: 2, priceComponent: [{ type: 'base', amount: { value: 40.22, currency: 'EUR' } }] },
      ],
    };
    const record = mapped(mapping('generic-fhir-invoice').map(fhirRecord(invoice)));
    assert.deepEqual(summary(record), [
      ['line/1', 'charge', 2029, 'EUR', '2017-01-25', 'patient', '99213'],
      ['line/2', 'charge', 4022, 'EUR', '2017-01-25', 'patient', null],
      ['line-discount/1', 'adjustment', 30, 'EUR', '2017-01-25', 'patient', '99213'],
    ]);
  });

  it('Invoice statuses: draft waits, cancelled contributes nothing', () => {
    for (const [status, isVoid] of [['draft', true], ['cancelled', true], ['issued', false]] as const) {
      const record = mapped(mapping('generic-fhir-invoice').map(fhirRecord({ ...example('Invoice-example.json'), status })));
      assert.equal(record.void, isVoid, status);
      assert.equal(record.lines.length, isVoid ? 0 : 1);
    }
  });

  it('Account "example": the patient is their own guarantor, no amounts (R4 Accounts carry none)', () => {
    const record = mapped(mapping('generic-fhir-account').map(fhirRecord(example('Account-example.json'))));
    assert.deepEqual(record.account, { identifier: { system: 'urn:settle:connector:ehr:account', value: 'example' }, name: 'HACC Funded Billing for Peter James Chalmers' });
    assert.deepEqual(record.patient, { identifier: { system: 'urn:settle:connector:ehr:patient', value: 'example' }, contact: { name: { text: 'Peter James Chalmers' } } });
    assert.equal(record.guarantor, null);
    assert.deepEqual(record.lines, []);
  });

  it('Account "ewg": the guarantor is RelatedPerson/benedicte', () => {
    const record = mapped(mapping('generic-fhir-account').map(fhirRecord(example('Account-ewg.json'))));
    assert.deepEqual(record.guarantor, {
      identifier: { system: 'urn:settle:connector:ehr:guarantor', value: 'RelatedPerson/benedicte' },
      contact: { name: { text: 'Bénédicte du Marché' } },
    });
    assert.equal(record.account?.identifier.value, 'ewg');
    assert.deepEqual(record.lines, []);
  });

  it('ChargeItem "example": priceOverride 40 EUR is a charge of 4000 cents dated by its occurrence, code kept', () => {
    const record = mapped(mapping('oracle-health-chargeitem').map(fhirRecord(example('ChargeItem-example.json'))));
    // factorOverride 0.8 is how the override was arrived at; priceOverride is the total price.
    assert.deepEqual(summary(record), [['charge', 'charge', 4000, 'EUR', '2017-01-25', 'patient', '01510']]);
    assert.equal(record.account?.identifier.value, 'example');
    assert.equal(record.patient?.identifier.value, 'example');
  });

  it('Patient "example": official name, current phones, home address, birth date', () => {
    const record = mapped(mapping('generic-fhir-patient').map(fhirRecord(example('Patient-example.json'))));
    assert.deepEqual(record.patient, {
      identifier: { system: 'urn:settle:connector:ehr:patient', value: 'example' },
      contact: {
        name: { family: 'Chalmers', given: ['Peter', 'James'] },
        phones: ['(03) 5555 6473', '(03) 3410 5613'],
        address: { lines: ['534 Erewhon St'], city: 'PleasantVille', state: 'Vic', postalCode: '3999' },
        birthDate: '1974-12-25',
      },
    });
    assert.equal(record.values.deceased, 'false');
  });

  it('refuses a record of another resource type, naming why', () => {
    const result = mapping('generic-fhir-invoice').map(fhirRecord(example('Account-example.json')));
    assert.deepEqual(result, { ok: false, issues: [{ path: '/source', code: 'wrong-source', message: 'the mapping reads Invoice, not Account' }] });
  });

  it('quarantines an Invoice without a patient reference, or with mixed currencies', () => {
    const { subject: _s, ...noSubject } = example('Invoice-example.json');
    const missing = mapping('generic-fhir-invoice').map(fhirRecord(noSubject));
    assert.equal(missing.ok, false);
    assert.deepEqual(!missing.ok && missing.issues.map((i) => i.code), ['missing-patient']);
    const group = mapping('generic-fhir-invoice').map(fhirRecord({ ...example('Invoice-example.json'), subject: { reference: 'Group/1' } }));
    assert.deepEqual(!group.ok && group.issues.map((i) => i.code), ['missing-patient']);
    const mixed = mapping('generic-fhir-invoice').map(fhirRecord({
      ...example('Invoice-example.json'),
      lineItem: [{ priceComponent: [{ type: 'base', amount: { value: 1, currency: 'EUR' } }, { type: 'base', amount: { value: 1, currency: 'USD' } }] }],
    }));
    assert.deepEqual(!mixed.ok && mixed.issues.map((i) => [i.path, i.code, i.item]), [['/events/1/amount', 'currency-mismatch', 1]]);
  });
});

describe('preset mappings on HL7 v2 and CSV', () => {
  it('DFT^P03: one event per FT1, signed by its effect; zero lines skipped; insurance payments kept apart', () => {
    const record = mapped(mapping('hl7v2-dft-p03').map({ connector: 'pm', transport: 'hl7v2-mllp', resourceType: 'DFT^P03', body: { message: fixture('dft-p03.hl7') } }, { timeZone: 'America/Chicago' }));
    assert.deepEqual(summary(record), [
      ['ft1/1', 'charge', 15000, 'USD', '2026-01-10', 'patient', '99213'],
      ['ft1/2', 'charge', 3550, 'USD', '2026-01-10', 'patient', '87880'],
      ['ft1/3', 'payment', 4000, 'USD', '2026-01-15', 'patient', 'PAY'],
      ['ft1/4', 'payment', 9000, 'USD', '2026-01-20', 'insurance', 'INS'],
      ['ft1/5', 'adjustment', 1025, 'USD', '2026-01-21', 'patient', 'WO'],
    ]);
    assert.deepEqual(record.patient, {
      identifier: { system: 'RIVERSIDE', value: 'MRN1001' },
      contact: {
        name: { family: 'Gonzalez', given: ['Maria'] }, phones: ['(217)555-0134'], email: 'maria@example.com',
        address: { lines: ['12 Elm St'], city: 'Springfield', state: 'IL', postalCode: '62704', country: 'US' }, language: 'es', birthDate: '1980-02-03',
      },
    });
    assert.deepEqual(record.account?.identifier, { system: 'RIVERSIDE', value: 'ACCT-77' });
    assert.equal(record.guarantor, null);
    assert.equal(record.values.messageDate, '2026-02-12T08:30:00-06:00');
  });

  it('DFT^P03 split per FT1: a record standing for one segment maps only that segment, keyed by its ordinal', () => {
    const record = mapped(mapping('hl7v2-dft-p03').map({ connector: 'pm', transport: 'hl7v2-mllp', resourceType: 'DFT^P03/FT1', body: { message: fixture('dft-p03.hl7'), segmentIndex: 6 } }));
    assert.deepEqual(summary(record), [['ft1/3', 'payment', 4000, 'USD', '2026-01-15', 'patient', 'PAY']]);
  });

  it('maps the public ADT samples: contact, account and the GT1 guarantor; a DFT mapping refuses them', () => {
    const a01 = fixture('adt-a01-gt1-in1-hl7-standard.hl7');
    const refused = mapping('hl7v2-dft-p03').map({ connector: 'pm', transport: 'hl7v2-mllp', resourceType: 'ADT^A01', body: { message: a01 } });
    assert.deepEqual(!refused.ok && refused.issues, [{ path: '/source', code: 'wrong-source', message: 'the mapping reads DFT^P03 messages, not ADT^A01' }]);
    const record = mapped(mapping('hl7v2-adt').map({ connector: 'pm', transport: 'hl7v2-mllp', resourceType: 'ADT^A01', body: { message: a01 } }));
    assert.deepEqual(record.guarantor, {
      identifier: { system: 'urn:settle:hl7:guarantor', value: '100000644' },
      contact: { name: { family: 'MotherToBe', given: ['Jane'] }, phones: ['(612)555-1234'], address: { lines: ['123 MAIN ST'], city: 'Edina', state: 'MN', postalCode: '55416' } },
    });
    assert.deepEqual(record.patient?.identifier, { system: 'urn:settle:hl7:mrn', value: '4019060' });
    assert.equal(record.patient?.contact.birthDate, '1965-06-01');
    assert.deepEqual(record.account?.identifier, { system: 'urn:settle:hl7:account', value: '90000408' });
    assert.deepEqual(record.lines, []);
    const a04 = mapped(mapping('hl7v2-adt').map({ connector: 'pm', transport: 'hl7v2-mllp', resourceType: 'ADT^A04', body: { message: fixture('adt-a04-hl7pkg-sample4.hl7') } }));
    assert.deepEqual(a04.patient, {
      identifier: { system: 'urn:settle:hl7:mrn', value: '454721' },
      contact: {
        name: { family: 'DOE', given: ['JOHN'] }, phones: ['(216)123-4567'],
        address: { lines: ['254 MYSTREET AVE'], city: 'MYTOWN', state: 'OH', postalCode: '44123', country: 'USA' }, birthDate: '1948-02-03',
      },
    });
    assert.deepEqual(a04.account?.identifier.value, '400003403', 'the first repetition of PID-18');
    assert.equal(a04.guarantor, null);
  });

  it('CSV statement row: charges, payments and adjustments, checked against the balance', () => {
    const [header, ...rows] = fixture('statement.csv').trim().split('\n');
    const columns = header!.split(',');
    const row = Object.fromEntries(columns.map((c, i) => [c, rows[0]!.split(',')[i]]));
    const record = mapped(mapping('csv-statement').map({ connector: 'pm-csv', transport: 'csv', resourceType: 'csv-row', body: { row, line: 2 } }));
    assert.deepEqual(summary(record), [
      ['charges', 'charge', 15000, 'USD', '2026-01-05', 'patient', null],
      ['payments', 'payment', 2000, 'USD', '2026-01-05', 'patient', null],
    ]);
    assert.equal(record.lines[0]?.description, 'Office visit');
    assert.deepEqual(record.guarantor?.contact, {
      name: { family: 'Ruiz', given: ['Ana'] }, phones: ['(312) 555-0100'], email: 'ana@example.com',
      address: { lines: ['1 Lake St'], city: 'Chicago', state: 'IL', postalCode: '60601' },
    });
    assert.equal(record.patient?.contact.birthDate, '2015-03-04');
    const bad = mapping('csv-statement').map({ connector: 'pm-csv', transport: 'csv', resourceType: 'csv-row', body: { ...row, Balance: '131.00' } });
    assert.deepEqual(!bad.ok && bad.issues, [{ path: '/fields/statementBalance', code: 'balance-mismatch', message: "the lines add up to 130.00 USD, but the record's balance is 131.00 USD" }]);
  });
});
