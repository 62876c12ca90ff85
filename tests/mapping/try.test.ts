import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runMappingsTest } from '../../src/mapping/try.ts';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'settle-try-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const run = (name: string, file: string) => {
  const lines: string[] = [];
  const code = runMappingsTest(repoRoot, name, file, (l) => lines.push(l), 'America/Chicago');
  return { code, lines };
};

describe('settle mappings test', () => {
  it('prints the mapped result of a FHIR resource', () => {
    const { code, lines } = run('generic-fhir-invoice', `${repoRoot}node_modules/hl7.fhir.r4.examples/Invoice-example.json`);
    assert.equal(code, 0);
    assert.deepEqual(lines, [
      'Invoice/example: OK',
      '  patient urn:settle:connector:test:patient|example contact: none',
      "  guarantor: the patient (or the account's)",
      '  account urn:settle:connector:test:account|example',
      '  total: charge 48.00 EUR on 2017-01-25 (patient)',
      '1 record: 1 mapped, 0 with errors',
    ]);
  });

  it('maps the matching entries of a Bundle', () => {
    const bundle = join(dir, 'bundle.json');
    writeFileSync(bundle, JSON.stringify({ resourceType: 'Bundle', type: 'searchset', entry: [
      { resource: { resourceType: 'ChargeItem', id: 'a', status: 'billable', subject: { reference: 'Patient/1' }, account: [{ reference: 'Account/1' }], occurrenceDateTime: '2026-01-02', priceOverride: { value: 12.5, currency: 'USD' } } },
      { resource: { resourceType: 'Patient', id: '1' } },
      { resource: { resourceType: 'ChargeItem', id: 'b', status: 'billable', subject: { reference: 'Patient/1' }, occurrenceDateTime: '2026-01-02' } },
    ] }));
    const { code, lines } = run('oracle-health-chargeitem', bundle);
    assert.equal(code, 1);
    assert.ok(lines.includes('  charge: charge 12.50 USD on 2026-01-02 (patient)'));
    assert.ok(lines.includes('  mappings/oracle-health-chargeitem.json: /events/0/amount [ChargeItem.priceOverride]: has no value (ChargeItem.priceOverride)'));
    assert.equal(lines.at(-1), '2 records: 1 mapped, 1 with errors');
  });

  it('prints every error of every CSV row, and HL7 messages', () => {
    const csv = run('csv-statement', `${fixtures}statement.csv`);
    assert.equal(csv.code, 1);
    assert.equal(csv.lines.at(-1), '6 records: 3 mapped, 3 with errors');
    assert.ok(csv.lines.includes('  mappings/csv-statement.json: /events/0/amount [Charges]: "12.345" has 3 decimal places; USD has 2'));
    const hl7 = run('hl7v2-dft-p03', `${fixtures}dft-p03.hl7`);
    assert.equal(hl7.code, 0);
    assert.equal(hl7.lines[0], 'MSH-10 MSG00042: OK');
    assert.ok(hl7.lines.includes('  ft1/4: payment 90.00 USD on 2026-01-20 (insurance) code INS'));
  });

  it('names a missing mapping or file', () => {
    assert.deepEqual(run('nope', 'x'), { code: 1, lines: [`no mapping "nope" in ${join(repoRoot, 'mappings')}`] });
    assert.deepEqual(run('csv-statement', join(dir, 'missing.csv')), { code: 1, lines: [`cannot read ${join(dir, 'missing.csv')}: ENOENT`] });
  });
});
