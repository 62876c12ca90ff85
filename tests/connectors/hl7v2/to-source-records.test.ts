import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import {
  hl7Date,
  hl7DateTime,
  toSourceRecords,
  type ConvertibleHl7Message,
  type Hl7AccountBody,
  type Hl7PatientBody,
  type Hl7TransactionBody,
} from '../../../src/connectors/hl7v2/to-source-records.ts';

const SAMPLES = new URL('../../../../shared/samples/hl7v2/', import.meta.url);
const samplesSkip = existsSync(fileURLToPath(SAMPLES)) ? undefined : `HL7v2 samples not found at ${fileURLToPath(SAMPLES)}: sample tests skipped`;

function stored(raw: string, overrides: Partial<ConvertibleHl7Message> = {}): ConvertibleHl7Message {
  const first = raw.split(/\r\n|\r|\n/, 1)[0];
  const f = first.split(first[3]);
  const type = f[8].split('^');
  return {
    id: '00000000-0000-4000-8000-000000000001',
    practiceId: '00000000-0000-4000-8000-0000000000aa',
    connector: 'pm-hl7v2',
    controlId: f[9],
    messageType: `${type[0]}^${type[1]}`,
    sendingApplication: f[2],
    sendingFacility: f[3],
    receivedAt: new Date('2026-03-01T15:00:00Z'),
    raw,
    rawBytesCharset: 'UTF-8',
    ...overrides,
  };
}

/** DFT^P03 (v2.5.1 DFT_P03): one FT1 of each transaction type, amounts as `amount&currency`. */
const DFT = [
  'MSH|^~\\&|PMS|RIVERSIDE|SETTLE|SETTLE|20260301103000-0500||DFT^P03^DFT_P03|DFT-77|P|2.5.1',
  'EVN|P03|20260301103000',
  'PID|1||MRN12345^^^RIVERSIDE^MR~555-44-3333^^^SSA^SS||O\'Brien^Seán^Q^^^^L||19800131|F|||12 Elm St^Apt 2^Springfield^IL^62701^USA||(217)555-0100^PRN^PH~^NET^Internet^sean@example.org|||||ACCT9001^^^RIVERSIDE^AN',
  'PV1|1|O|CLINIC^^^RIVERSIDE||||||||||||||||V5001',
  'FT1|1|TX1001|B1|20260228080000|20260301|CG|99213^Office visit^CPT4|Office \\T\\ visit||1|150.00&USD|150.00&USD',
  'FT1|2|TX1002|B1|20260301|20260301|PY|PAY^Patient payment^LOCAL||||-25.50&USD',
  'FT1|3|TX1003|B1|20260301|20260301|AJ|ADJ^Contractual^LOCAL|||1|-10.05',
  'FT1|4|TX1004|B1|20260301|20260301|CD|CR^Credit^LOCAL|||2.5|0.10&USD',
  'GT1|1|G77^^^RIVERSIDE|O\'Brien^Patrick||12 Elm St^^Springfield^IL^62701|(217)555-0101||||P|SPO',
].join('\r');

/** BAR^P01 (v2.5.1 BAR_P01): an account with a visit, a guarantor and a coverage. */
const BAR = [
  'MSH|^~\\&|PMS|RIVERSIDE|SETTLE|SETTLE|20260302090000||BAR^P01^BAR_P01|BAR-1|P|2.5.1',
  'EVN|P01|20260302090000',
  'PID|1||MRN12345^^^RIVERSIDE^MR||Doe^Jane||19800131|F||||||||||ACCT9001^^^RIVERSIDE^AN',
  'PV1|1|O|CLINIC^^^RIVERSIDE||||||||||||||||V5001|||||||||||||||||||||||||20260301|20260301',
  'GT1|1|G1|Doe^John||1 Main St^^Springfield^IL^62701|(217)555-0102|||||SPO',
  'IN1|1|PPO1^Blue PPO|BCBS01|Blue Cross|PO Box 1^^Chicago^IL^60601|||GRP-9|Acme Corp|||20260101|20261231||PPO|Doe^John|SPO|||||||||||||||||||POL-123',
].join('\r');

describe('HL7 v2 → source records', () => {
  it('DFT^P03: one record per FT1 with kind, account, service date, quantity and exact amounts', () => {
    const { records, problems } = toSourceRecords(stored(DFT));
    assert.deepEqual(problems, []);
    assert.equal(records.length, 4);
    const bodies = records.map((r) => r.body as Hl7TransactionBody);
    assert.deepEqual(bodies.map((b) => b.kind), ['charge', 'payment', 'adjustment', 'credit']);
    assert.deepEqual(bodies.map((b) => b.transactionType), ['CG', 'PY', 'AJ', 'CD']);
    assert.deepEqual(bodies.map((b) => b.amount), [
      { minorUnits: 15000, currency: 'USD' },
      { minorUnits: -2550, currency: 'USD' },
      { minorUnits: -1005, currency: 'USD' }, // no currency sent: the default
      { minorUnits: 10, currency: 'USD' },
    ]);
    assert.deepEqual(bodies.map((b) => b.quantity), [1, 1, 1, 2.5]);
    assert.deepEqual(bodies.map((b) => b.serviceDate), ['2026-02-28', '2026-03-01', '2026-03-01', '2026-03-01']);
    assert.deepEqual(bodies[0].unitAmount, { minorUnits: 15000, currency: 'USD' });
    assert.equal(bodies[1].unitAmount, null);
    for (const b of bodies) assert.equal(b.account, 'ACCT9001');
    assert.equal(bodies[0].transactionId, 'TX1001');
    assert.equal(bodies[0].postingDate, '2026-03-01');
    assert.deepEqual(bodies[0].internal, { transactionCode: { code: '99213', text: 'Office visit', system: 'CPT4' }, description: 'Office & visit' });
    assert.equal(bodies[0].visit?.visitNumber, 'V5001');
    assert.equal(bodies[0].patient.name?.given, 'Seán');
    assert.deepEqual(bodies[0].patient.identifiers.map((i) => i.value), ['MRN12345', '555-44-3333']);
    assert.deepEqual(bodies[0].patient.homeTelecom.map((t) => t.value), ['(217)555-0100', 'sean@example.org']);
    assert.deepEqual(bodies[0].patient.address, { line1: '12 Elm St', line2: 'Apt 2', city: 'Springfield', state: 'IL', postalCode: '62701', country: 'USA' });
    assert.equal(bodies[0].guarantors[0].relationship, 'SPO');
    assert.equal(bodies[0].guarantors[0].name?.given, 'Patrick');

    // Identity and origin.
    assert.deepEqual(records.map((r) => r.sourceId), ['PMS|RIVERSIDE|DFT-77|4', 'PMS|RIVERSIDE|DFT-77|5', 'PMS|RIVERSIDE|DFT-77|6', 'PMS|RIVERSIDE|DFT-77|7']);
    for (const r of records) {
      assert.equal(r.resourceType, 'DFT^P03/FT1');
      assert.equal(r.transport, 'hl7v2-mllp');
      assert.equal(r.connector, 'pm-hl7v2');
      assert.match(r.versionId, /^[0-9a-f]{64}$/);
      assert.equal(r.versionId, r.contentHash);
      assert.deepEqual(r.lastUpdated, new Date('2026-03-01T15:30:00Z'), 'MSH-7 with its offset');
    }
    assert.equal(new Set(records.map((r) => r.versionId)).size, 4);
    const origin = bodies[1].hl7;
    assert.equal(origin.messageId, '00000000-0000-4000-8000-000000000001');
    assert.deepEqual([origin.segment, origin.occurrence, origin.controlId, origin.messageDateTime, origin.version], ['FT1', 2, 'DFT-77', '20260301103000-0500', '2.5.1']);
    // What the mapping layer reads: the message as sent, and the index of the record's own segment.
    for (const b of bodies) assert.equal(b.message, DFT);
    assert.deepEqual(bodies.map((b) => b.segmentIndex), [4, 5, 6, 7]);
    assert.equal(DFT.split('\r')[bodies[1].segmentIndex], DFT.split('\r')[5]);
  });

  it('gives the mapping layer what its hl7v2-dft-p03 preset reads: one balance line per FT1 record, keyed by its ordinal', async (t) => {
    let compileMapping: typeof import('../../../src/mapping/compile.ts').compileMapping;
    try {
      ({ compileMapping } = await import('../../../src/mapping/compile.ts'));
    } catch {
      t.skip('src/mapping is not available');
      return;
    }
    const file = new URL('../../../mappings/hl7v2-dft-p03.json', import.meta.url);
    if (!existsSync(file)) {
      t.skip('mappings/hl7v2-dft-p03.json is not available');
      return;
    }
    const mapping = compileMapping({ file: 'mappings/hl7v2-dft-p03.json', data: JSON.parse(readFileSync(file, 'utf8')) } as Parameters<typeof compileMapping>[0]);
    const { records } = toSourceRecords(stored(DFT));
    const lines = records.map((record) => {
      const result = mapping.map(record);
      if (!result.ok) assert.fail(JSON.stringify(result.issues));
      assert.deepEqual(result.record.account?.identifier.value, 'ACCT9001');
      return result.record.lines.map((l) => [l.lineKey, l.kind, l.amount.amount, l.serviceDate]);
    });
    assert.deepEqual(lines.map((l) => l.length), [1, 1, 1, 1], 'each record maps its own FT1 only');
    assert.deepEqual(lines.map((l) => l[0][0]), ['ft1/1', 'ft1/2', 'ft1/3', 'ft1/4']);
    assert.deepEqual(lines.map((l) => l[0][1]), ['charge', 'payment', 'adjustment', 'adjustment']);
  });

  it('is deterministic: converting the same stored message twice gives the same identities and hashes', () => {
    const a = toSourceRecords(stored(DFT)).records;
    const b = toSourceRecords(stored(DFT)).records;
    assert.deepEqual(a.map((r) => [r.sourceId, r.versionId]), b.map((r) => [r.sourceId, r.versionId]));
    // The same control id with other content (a sender re-using MSH-10) is another version of the same records.
    const changed = toSourceRecords(stored(DFT.replace('150.00&USD|150', '151.00&USD|151'))).records;
    assert.deepEqual(changed.map((r) => r.sourceId), a.map((r) => r.sourceId));
    for (let i = 0; i < 4; i++) assert.notEqual(changed[i].versionId, a[i].versionId);
  });

  it('DFT^P03: a bad FT1 is a located problem; the other FT1s still become records', () => {
    const raw = DFT.replace('-25.50&USD', '1,025.50&USD').replace('|CD|', '|XX|');
    const { records, problems } = toSourceRecords(stored(raw));
    assert.deepEqual(records.map((r) => (r.body as Hl7TransactionBody).transactionType), ['CG', 'AJ']);
    assert.deepEqual(problems.map((p) => [p.code, p.location]), [
      ['invalid_value', { segment: 'FT1', occurrence: 2, field: 11 }],
      ['unknown_transaction_type', { segment: 'FT1', occurrence: 4, field: 6 }],
    ]);
    for (const p of problems) assert.doesNotMatch(p.message, /O'Brien|MRN12345/);

    const noAccount = toSourceRecords(stored(DFT.replace('ACCT9001^^^RIVERSIDE^AN', '')));
    assert.deepEqual(noAccount.records, []);
    assert.deepEqual(noAccount.problems[0].location, { segment: 'PID', occurrence: 1, field: 18 });
    const noFt1 = toSourceRecords(stored(DFT.split('\r').filter((s) => !s.startsWith('FT1')).join('\r')));
    assert.equal(noFt1.problems[0].code, 'missing_segment');
    const badQuantity = toSourceRecords(stored(DFT.replace('||1|150.00', '||one|150.00')));
    assert.deepEqual(badQuantity.problems.map((p) => p.location), [{ segment: 'FT1', occurrence: 1, field: 10 }]);
    const noAmount = toSourceRecords(stored(DFT.replace('|-25.50&USD', '|')));
    assert.deepEqual(noAmount.problems.map((p) => [p.code, p.location?.field]), [['required_field_missing', 11]]);
  });

  it('reads the delimiters the message declares, and ISO-8859-1 escape bytes', () => {
    const raw = DFT.split('\r')
      .map((s) => s.replaceAll('^', '#').replaceAll('&', '$'))
      .join('\r')
      .replace('MSH|#~\\$|', 'MSH|#~\\$|')
      .replace('Office \\T\\ visit', 'Caf\\XE9\\');
    const { records, problems } = toSourceRecords(stored(raw, { rawBytesCharset: 'ISO-8859-1', messageType: 'DFT^P03' }));
    assert.deepEqual(problems, []);
    const first = records[0].body as Hl7TransactionBody;
    assert.deepEqual(first.amount, { minorUnits: 15000, currency: 'USD' });
    assert.equal(first.internal.description, 'Café');
    assert.equal(first.internal.transactionCode?.text, 'Office visit');
  });

  it('BAR^P01: one account record with its visit, guarantor and coverage', () => {
    const { records, problems } = toSourceRecords(stored(BAR));
    assert.deepEqual(problems, []);
    assert.equal(records.length, 1);
    const [record] = records;
    assert.equal(record.resourceType, 'BAR^P01/PID');
    assert.equal(record.sourceId, 'PMS|RIVERSIDE|BAR-1|2');
    assert.deepEqual(record.lastUpdated, new Date('2026-03-02T09:00:00Z'));
    const body = record.body as Hl7AccountBody;
    assert.equal(body.kind, 'account');
    assert.equal(body.event, 'P01');
    assert.equal(body.account, 'ACCT9001');
    assert.deepEqual(body.visits, [{ patientClass: 'O', visitNumber: 'V5001', admitDate: '2026-03-01', dischargeDate: '2026-03-01' }]);
    assert.equal(body.guarantors[0].name?.family, 'Doe');
    assert.equal(body.guarantors[0].relationship, 'SPO');
    assert.deepEqual(body.coverages[0], {
      setId: '1',
      plan: { code: 'PPO1', text: 'Blue PPO', system: null },
      companyId: 'BCBS01',
      companyName: 'Blue Cross',
      groupNumber: 'GRP-9',
      groupName: 'Acme Corp',
      effectiveDate: '2026-01-01',
      expirationDate: '2026-12-31',
      planType: 'PPO',
      insuredName: { family: 'Doe', given: 'John', middle: null, suffix: null, prefix: null },
      insuredRelationship: 'SPO',
      policyNumber: 'POL-123',
    });
    const p05 = toSourceRecords(stored(BAR.replace('BAR^P01^BAR_P01', 'BAR^P05^BAR_P05'))).records[0];
    assert.equal((p05.body as Hl7AccountBody).event, 'P05');
    assert.equal(p05.resourceType, 'BAR^P05/PID');
  });

  it('ADT^A31 written to v2.5.1 and ADT^A28 become patient records; other types none', () => {
    const a31 = BAR.replace('BAR^P01^BAR_P01', 'ADT^A31^ADT_A05').replace('EVN|P01', 'EVN|A31');
    const { records } = toSourceRecords(stored(a31));
    assert.equal(records[0].resourceType, 'ADT^A31/PID');
    const body = records[0].body as Hl7PatientBody;
    assert.equal(body.kind, 'patient');
    assert.equal(body.event, 'A31');
    assert.equal(body.patient.accountNumber, 'ACCT9001');
    assert.equal(body.coverages.length, 1);
    assert.equal(toSourceRecords(stored(a31.replace('ADT^A31', 'ADT^A28'))).records.length, 1);
    const a03 = toSourceRecords(stored(a31.replace('ADT^A31', 'ADT^A03')));
    assert.deepEqual([a03.records.length, a03.problems[0].code], [0, 'unsupported_message_type']);
    const garbage = toSourceRecords(stored(a31, { raw: 'not hl7' }));
    assert.equal(garbage.problems[0].code, 'unparseable');
    const noPid = toSourceRecords(stored(a31.split('\r').filter((s) => !s.startsWith('PID')).join('\r')));
    assert.equal(noPid.problems[0].code, 'missing_segment');
  });

  it('parses HL7 dates and times strictly', () => {
    assert.equal(hl7Date('20260229'), null);
    assert.equal(hl7Date('20240229'), '2024-02-29');
    assert.equal(hl7Date('2026'), null);
    assert.deepEqual(hl7DateTime('202603011030'), new Date('2026-03-01T10:30:00Z'));
    assert.deepEqual(hl7DateTime('20260301103000.12+0100'), new Date('2026-03-01T09:30:00.120Z'));
    assert.equal(hl7DateTime('2026-03-01'), null);
  });

  describe('the shared samples', { skip: samplesSkip }, () => {
    const sample = (name: string) => readFileSync(new URL(name, SAMPLES), 'utf8');

    it('ADT^A01 with GT1 and IN1 (v2.4, CRLF line ends): patient, guarantor, coverage', () => {
      const { records, problems } = toSourceRecords(stored(sample('adt-a01-gt1-in1-hl7-standard.hl7')));
      assert.deepEqual(problems, []);
      assert.equal(records.length, 1);
      assert.equal(records[0].resourceType, 'ADT^A01/PID');
      assert.equal(records[0].sourceId, 'ADT|General Hospital|24553|2');
      const body = records[0].body as Hl7PatientBody;
      assert.deepEqual(body.patient.name, { family: 'MotherToBe', given: 'Jane', middle: 'A', suffix: null, prefix: null });
      assert.equal(body.patient.birthDate, '1965-06-01');
      assert.equal(body.patient.accountNumber, '90000408');
      assert.equal(body.patient.address?.city, 'Pittsburgh');
      assert.equal(body.guarantors.length, 1);
      assert.equal(body.guarantors[0].number?.value, '100000644');
      assert.equal(body.guarantors[0].relationship, 'SELF');
      assert.equal(body.guarantors[0].homeTelecom[0].value, '(612)555-1234');
      assert.equal(body.coverages.length, 1);
      assert.equal(body.coverages[0].companyName, 'ACME - SELECT CARE');
      assert.equal(body.coverages[0].plan?.code, '3004');
      assert.equal(body.coverages[0].groupNumber, '1234');
      assert.equal(body.coverages[0].effectiveDate, '2007-01-01');
      assert.equal(body.coverages[0].insuredRelationship, 'SELF');
      assert.equal(body.segmentIndex, 2);
      const lines = sample('adt-a01-gt1-in1-hl7-standard.hl7').split(/\r\n|\r|\n/).filter((l) => l !== '');
      assert.equal(body.message, lines.join('\r'), 'CRLF line ends become CR');
      assert.ok(body.message.split('\r')[2].startsWith('PID|'));
      assert.deepEqual(records[0].lastUpdated, new Date('2007-05-10T09:26:26Z'));
    });

    for (const name of ['adt-a04-simple-hl7.hl7', 'adt-a04-hl7pkg-sample2.hl7', 'adt-a04-hl7pkg-sample4.hl7']) {
      it(`ADT^A04 ${name}: a patient record with no guarantor or coverage`, () => {
        const { records, problems } = toSourceRecords(stored(sample(name)));
        assert.deepEqual(problems, []);
        const body = records[0].body as Hl7PatientBody;
        assert.equal(records[0].sourceId, 'EPIC|EPICADT|1817457|1');
        assert.deepEqual(body.patient.name?.family, 'DOE');
        assert.equal(body.patient.birthDate, '1948-02-03');
        assert.equal(body.patient.accountNumber, '400003403', 'PID-18, first repetition');
        assert.deepEqual(body.patient.identifiers, [{ value: '454721', assigningAuthority: null, type: null }], 'PID-3 (PID-2 is the external id)');
        assert.deepEqual([body.guarantors, body.coverages], [[], []]);
      });
    }
  });
});
