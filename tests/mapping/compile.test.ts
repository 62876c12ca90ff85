import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { formatProblem } from '../../src/config/data-files.ts';
import { formatMoney } from '../../src/domain/money.ts';
import { compileMapping, MappingCompileError } from '../../src/mapping/compile.ts';
import { loadMappings } from '../../src/mapping/load.ts';
import { parseHl7Path, unescapeHl7 } from '../../src/mapping/hl7.ts';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const base = {
  name: 'test-invoice',
  description: 'test',
  source: { transport: 'fhir-r4', resourceType: 'Invoice' },
  fields: { patientIdentifier: { fhirpath: 'Invoice.subject.reference' }, serviceDate: { fhirpath: 'Invoice.date', transform: 'date' } },
  events: [{ name: 'total', kind: 'charge', amount: { fhirpath: 'Invoice.totalGross', transform: 'money', currency: 'USD' } }],
  produces: ['balance-event'],
};

const problemsOf = (data: Record<string, unknown>) => {
  try {
    compileMapping({ name: String(data.name), file: 'mappings/test-invoice.json', data });
  } catch (error) {
    assert.ok(error instanceof MappingCompileError);
    return error.problems.map(formatProblem);
  }
  return [];
};

describe('compileMapping', () => {
  it('fails at load on a bad FHIRPath, naming the file, the JSON path and the column', () => {
    assert.deepEqual(problemsOf({ ...base, fields: { ...base.fields, total: { fhirpath: 'Invoice..totalGross' } } }), [
      'mappings/test-invoice.json: /fields/total/fhirpath: invalid FHIRPath at column 9 of "Invoice..totalGross": unexpected ".". No matching prefix parselet.',
    ]);
    assert.deepEqual(problemsOf({ ...base, events: [{ ...base.events[0], forEach: 'Invoice.lineItem.where(' }] }), [
      'mappings/test-invoice.json: /events/0/forEach: invalid FHIRPath at column 24 (end) of "Invoice.lineItem.where(": the expression is incomplete (Cant consume unknown more tokens.)',
    ]);
  });

  it('checks the language of event fields, code tables, kinds and HL7 segments', () => {
    assert.deepEqual(
      problemsOf({
        ...base,
        events: [
          { name: 'a', kind: 'refund', amount: { column: 'X', transform: 'money', currency: 'USD' } },
          { name: 'b', kind: { fhirpath: 'Invoice.status', transform: 'code-table', codeTable: 'kinds' }, amount: { fhirpath: 'Invoice.totalNet', transform: 'string' } },
          { name: 'b', kind: 'charge', payer: 'self', amount: { fhirpath: 'Invoice.totalNet', transform: 'money', currency: 'USD' } },
        ],
        codeTables: { kinds: { issued: 'charge', draft: 'bill' } },
      }),
      [
        'mappings/test-invoice.json: /events/0/kind: must be one of: charge, payment, adjustment (got "refund")',
        'mappings/test-invoice.json: /events/0/amount: reads with "column", but the source is fhir-r4: use "fhirpath"',
        'mappings/test-invoice.json: /codeTables/kinds/draft: must be one of: charge, payment, adjustment, ignore (got "bill")',
        'mappings/test-invoice.json: /events/1/amount/transform: must be "money"',
        'mappings/test-invoice.json: /events/2/name: repeats the name "b" of another event (line keys must be unique)',
        'mappings/test-invoice.json: /events/2/payer: must be one of: patient, insurance (got "self")',
      ],
    );
    const hl7 = { ...base, source: { transport: 'hl7v2-mllp', messageType: 'DFT^P03' }, fields: { patientIdentifier: { hl7: 'PID-3.1' } }, events: [{ name: 'x', forEach: 'ft1', kind: 'charge', amount: { hl7: 'FT1-11', transform: 'money', currency: 'USD' }, serviceDate: { hl7: 'FT1-4.1.1.1' } }] };
    assert.deepEqual(problemsOf(hl7), [
      'mappings/test-invoice.json: /events/0/forEach: must be a segment name like "FT1" (got "ft1")',
      'mappings/test-invoice.json: /events/0/serviceDate/hl7: "FT1-4.1.1.1" is not an HL7 path like "PID-18", "FT1-11.1" or "PID-3[2].1"',
    ]);
  });

  it('loadMappings reports every problem of every mapping file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'settle-mappings-'));
    dirs.push(dir);
    mkdirSync(join(dir, 'mappings'));
    writeFileSync(join(dir, 'mappings', 'test-invoice.json'), JSON.stringify({ ...base, fields: { ...base.fields, x: { fhirpath: 'Invoice.(' } } }));
    assert.throws(() => loadMappings(dir), /mappings\/test-invoice.json: \/fields\/x\/fhirpath: invalid FHIRPath at column 10 \(end\)/);
  });

  it('maps every collection of amounts exactly: the sum of FHIR decimals is the sum of their cents', () => {
    const compiled = compileMapping({
      name: 'test-invoice',
      file: 'mappings/test-invoice.json',
      data: { ...base, events: [{ name: 'line', forEach: 'Invoice.lineItem', kind: 'charge', amount: { fhirpath: 'priceComponent.amount', transform: 'money', currency: 'USD', sum: true } }] },
    });
    fc.assert(
      fc.property(fc.array(fc.array(fc.integer({ min: 1, max: 10_000_000 }), { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 10 }), (items) => {
        const invoice = {
          resourceType: 'Invoice', subject: { reference: 'Patient/1' }, date: '2026-01-01',
          lineItem: items.map((parts) => ({ priceComponent: parts.map((cents) => ({ type: 'base', amount: { value: Number(formatMoney({ amount: cents, currency: 'USD' })), currency: 'USD' } })) })),
        };
        const result = compiled.map({ connector: 'c', transport: 'fhir-r4', resourceType: 'Invoice', body: invoice });
        assert.ok(result.ok);
        assert.deepEqual(result.record.lines.map((l) => l.amount.amount), items.map((parts) => parts.reduce((a, b) => a + b, 0)));
      }),
      { numRuns: 200 },
    );
  });

  it('declares what negative and zero amounts do', () => {
    const make = (negativeAmounts?: string, zeroAmounts?: string) =>
      compileMapping({ name: 'test-invoice', file: 'f', data: { ...base, events: [{ ...base.events[0], ...(negativeAmounts ? { negativeAmounts } : {}), ...(zeroAmounts ? { zeroAmounts } : {}) }] } });
    const invoice = (value: number) => ({ connector: 'c', transport: 'fhir-r4' as const, resourceType: 'Invoice', body: { resourceType: 'Invoice', subject: { reference: 'Patient/1' }, date: '2026-01-01', totalGross: { value, currency: 'USD' } } });
    const out = (r: ReturnType<ReturnType<typeof make>['map']>) => (r.ok ? r.record.lines.map((l) => l.amount.amount) : r.issues.map((i) => i.code));
    assert.deepEqual(out(make().map(invoice(-5))), ['negative-amount']);
    assert.deepEqual(out(make('allow').map(invoice(-5))), [-500]);
    assert.deepEqual(out(make('absolute').map(invoice(-5))), [500]);
    assert.deepEqual(out(make().map(invoice(0))), []);
    assert.deepEqual(out(make(undefined, 'keep').map(invoice(0))), [0]);
    assert.deepEqual(out(make(undefined, 'quarantine').map(invoice(0))), ['zero-amount']);
    assert.deepEqual(out(make().map(invoice(1.005))), ['too-many-decimals']);
  });

  it('keys lines by event and item, keeps only fields with a value, and refuses mixed currencies or a wrong statement balance', () => {
    const compiled = compileMapping({
      name: 'test-invoice',
      file: 'f',
      data: {
        ...base,
        fields: { ...base.fields, totalNet: { fhirpath: 'Invoice.totalNet', transform: 'money' }, statementBalance: { fhirpath: 'Invoice.totalGross', transform: 'money' } },
        events: [
          { name: 'line', forEach: 'Invoice.lineItem', kind: 'charge', amount: { fhirpath: "priceComponent.where(type = 'base').amount", transform: 'money', sum: true, required: false } },
          { name: 'discount', forEach: 'Invoice.lineItem', kind: 'adjustment', amount: { fhirpath: "priceComponent.where(type = 'discount').amount", transform: 'money', required: false } },
        ],
      },
    });
    const item = (currency: string, base: number, discount?: number) => ({
      priceComponent: [{ type: 'base', amount: { value: base, currency } }, ...(discount ? [{ type: 'discount', amount: { value: discount, currency } }] : [])],
    });
    const invoice = (totalGross: number, ...lineItem: ReturnType<typeof item>[]) => ({
      connector: 'c', transport: 'fhir-r4' as const, resourceType: 'Invoice',
      body: { resourceType: 'Invoice', subject: { reference: 'Patient/1' }, date: '2026-01-01', totalGross: { value: totalGross, currency: 'EUR' }, lineItem },
    });
    const ok = compiled.map(invoice(9.5, item('EUR', 5, 0.5), item('EUR', 5)));
    assert.ok(ok.ok);
    assert.deepEqual(Object.keys(ok.record.values), ['patientIdentifier', 'serviceDate', 'statementBalance']);
    assert.deepEqual(ok.record.lines.map((l) => [l.lineKey, l.kind, l.amount.amount]), [['line/1', 'charge', 500], ['line/2', 'charge', 500], ['discount/1', 'adjustment', 50]]);
    const mixed = compiled.map(invoice(10, item('EUR', 5), item('USD', 5)));
    assert.deepEqual(!mixed.ok && mixed.issues.map((i) => [i.path, i.code, i.message]), [['/events', 'currency-mismatch', 'the record mixes EUR and USD: mixed currencies are an error, never converted']]);
    const wrong = compiled.map(invoice(10, item('EUR', 5, 0.5), item('EUR', 5)));
    assert.deepEqual(!wrong.ok && wrong.issues.map((i) => [i.path, i.code]), [['/fields/statementBalance', 'balance-mismatch']]);
  });

  it('never quotes a contact value (PHI) in an issue', () => {
    const compiled = compileMapping({ name: 'test-invoice', file: 'f', data: { ...base, fields: { ...base.fields, patientBirthDate: { fhirpath: 'Invoice.identifier.value', transform: 'date' }, other: { fhirpath: 'Invoice.identifier.value', transform: 'date' } } } });
    const result = compiled.map({ connector: 'c', transport: 'fhir-r4', resourceType: 'Invoice', body: { resourceType: 'Invoice', identifier: [{ value: '02/31/1980' }], subject: { reference: 'Patient/1' }, date: '2026-01-01', totalGross: { value: 1, currency: 'USD' } } });
    assert.ok(!result.ok);
    assert.deepEqual(result.issues.map((i) => [i.path, i.message.includes('1980')]), [['/fields/patientBirthDate', false], ['/fields/other', true]]);
  });
});

describe('HL7 paths', () => {
  it('parses segment-field[repetition].component.subcomponent', () => {
    assert.deepEqual(parseHl7Path('PID-3[2].4'), { text: 'PID-3[2].4', segment: 'PID', field: 3, repetition: 2, component: 4 });
    assert.deepEqual(parseHl7Path('FT1-11.1.2'), { text: 'FT1-11.1.2', segment: 'FT1', field: 11, component: 1, subcomponent: 2 });
    for (const bad of ['PID', 'pid-3', 'PID-0', 'PID-3.', 'PID-3[0]']) assert.equal(parseHl7Path(bad), undefined, bad);
  });
  it('decodes escape sequences', () => {
    assert.equal(unescapeHl7('A\\F\\B\\S\\C\\T\\D\\R\\E\\E\\'), 'A|B^C&D~E\\');
    assert.equal(unescapeHl7('x\\X41\\y'), 'xAy');
  });
});
