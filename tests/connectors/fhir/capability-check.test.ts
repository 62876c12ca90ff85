import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { CapabilityStatement } from '@medplum/fhirtypes';
import { advertisedTokenUrl, checkCapabilities, formatCapabilityReport, runConnectorCheck } from '../../../src/connectors/fhir/capability-check.ts';
import { fhirConnectorConfig, type FhirConnectorConfig } from '../../../src/connectors/fhir/connector.ts';
import { startSandboxEhr, type SandboxEhr } from '../../../src/sandbox-ehr/server.ts';

const samples = new URL('../../../../shared/samples/capability-statements/', import.meta.url);
const samplesMissing = existsSync(samples)
  ? undefined
  : `${fileURLToPath(samples)} is absent: the vendor CapabilityStatement tests need the shared samples folder beside the repository`;

function sample(name: string): CapabilityStatement {
  return JSON.parse(readFileSync(new URL(name, samples), 'utf8')) as CapabilityStatement;
}

function preset(name: string): FhirConnectorConfig {
  return fhirConnectorConfig(JSON.parse(readFileSync(new URL(`../../../connectors/${name}.json`, import.meta.url), 'utf8')));
}

describe('capability check against vendor CapabilityStatements', { skip: samplesMissing }, () => {
  it('Oracle Health: Invoice is not offered, use the Oracle Health preset; Account and ChargeItem need incremental off', () => {
    const oracle = sample('oracle-health-millennium-r4-secure.json');
    const report = checkCapabilities(oracle, preset('generic-fhir-r4'));
    assert.equal(report.level, 'error');
    const byType = Object.fromEntries(report.resources.map((r) => [r.type, r]));
    assert.equal(byType.Invoice!.offered, false);
    assert.deepEqual(byType.Invoice!.findings, [
      { level: 'error', message: 'Invoice is not offered', fix: 'use the Oracle Health preset (Account + ChargeItem): connectors/oracle-health-fhir-r4.json' },
    ]);
    // Account { status: active }: Millennium has no "status" search for Account and no _lastUpdated.
    const account = byType.Account!;
    assert.equal(account.level, 'error');
    assert.deepEqual(account.searchParams.map((p) => [p.name, p.supported]), [['status', false], ['_lastUpdated', false], ['_sort', false], ['_count', true]]);
    assert.ok(account.findings.some((f) => f.message === 'search parameter "status" is not supported for Account' && f.fix === 'remove "status" from resources[1].search'));
    assert.ok(account.findings.some((f) => /cannot be searched by _lastUpdated/.test(f.message) && /"incremental": false in resources\[1\]/.test(f.fix!)));
    assert.ok(account.findings.some((f) => f.level === 'warning' && /; type: "Required in every search request\."$/.test(f.message)));
    assert.equal(advertisedTokenUrl(oracle), report.server.tokenUrl);
    assert.match(report.server.tokenUrl!, /^https:\/\/authorization\.cerner\.com\/tenants\/.*\/token$/);
  });

  it('Oracle Health with its preset: every type offered and searchable, with the documented required parameters as notes', () => {
    const report = checkCapabilities(sample('oracle-health-millennium-r4-secure.json'), preset('oracle-health-fhir-r4'), [
      { type: 'PaymentReconciliation', interaction: 'create', conditional: true },
    ]);
    assert.deepEqual(report.resources.map((r) => [r.type, r.level]), [['Patient', 'warning'], ['Coverage', 'warning'], ['Account', 'warning'], ['ChargeItem', 'warning']]);
    const chargeItem = report.resources.find((r) => r.type === 'ChargeItem')!;
    assert.deepEqual(chargeItem.searchParams, [{ name: '-status', purpose: 'configured', supported: true }, { name: '_count', purpose: 'paging', supported: true }]);
    assert.deepEqual(chargeItem.interactions, ['read', 'search-type']);
    assert.match(chargeItem.findings[0]!.message, /; account: "It is a required field if the _id or context fields are not given\."$/);
    const patient = report.resources.find((r) => r.type === 'Patient')!;
    assert.match(patient.findings[0]!.message, /^the server documents search parameters this connector does not send: _id, identifier, name, given, family, address-postalcode, birthdate, phone, email: "Either the '_id' parameter, or a combination of/);
    // The preset's placeholder token URL differs from Cerner's real one.
    assert.equal(report.findings[0]!.level, 'warning');
    assert.match(report.findings[0]!.message, /advertises the token URL https:\/\/authorization\.cerner\.com/);
    assert.deepEqual(report.writes[0]!.findings, [
      { level: 'error', message: 'PaymentReconciliation create is not offered', fix: "write payments back as the vendor's Basic resource (Oracle Health's payment write-back), or as HL7v2 DFT^P03" },
    ]);
    const lines = formatCapabilityReport(report, 'oracle-health-fhir-r4');
    assert.equal(lines[0], 'oracle-health-fhir-r4: Oracle Health Capability Statement, FHIR 4.0.1');
    assert.ok(lines.includes('  [warn] Coverage: interactions read, search-type, create, patch, delete; search _count (not supported)'));
    assert.match(lines.at(-1)!, /^4 of 4 resource types usable as configured; 1 problem, \d+ notes$/);
  });

  it('athenahealth: no financial resource at all, so balances must come over HL7v2 or files; Patient and Coverage sync incrementally', () => {
    const athena = sample('athenahealth-r4.json');
    const connector = { ...preset('generic-fhir-r4'), resources: [{ type: 'Patient' }, { type: 'Coverage' }, { type: 'Account' }, { type: 'Invoice' }, { type: 'ChargeItem' }] };
    const report = checkCapabilities(athena, connector);
    const byType = Object.fromEntries(report.resources.map((r) => [r.type, r]));
    for (const type of ['Account', 'Invoice', 'ChargeItem']) {
      assert.equal(byType[type]!.offered, false);
      assert.match(byType[type]!.findings[0]!.fix!, /offers no financial resource \(Invoice, Account or ChargeItem\).*hl7v2-mllp connector \(DFT\^P03\) or a csv statement export/);
    }
    assert.equal(byType.Patient!.offered, true);
    assert.deepEqual(byType.Patient!.searchParams.map((p) => [p.name, p.supported]), [['_lastUpdated', true], ['_sort', false], ['_count', true]]);
    assert.equal(byType.Patient!.level, 'warning');
    assert.deepEqual(byType.Coverage!.findings.map((f) => f.level), ['warning']);
    assert.equal(report.server.name, 'athenahealth FHIR Server');
    assert.equal(report.server.tokenUrl, 'https://api.platform.athenahealth.com/oauth2/v1/token');
    const lines = formatCapabilityReport(report, 'athena');
    assert.ok(lines.includes('  [FAIL] Invoice: not offered'));
    assert.match(lines.at(-1)!, /^2 of 5 resource types usable as configured; 3 problems, /);
  });

  it('suggests a vendor-prefixed search parameter and refuses a non-R4 server', () => {
    const oracle = sample('oracle-health-millennium-r4-secure.json');
    const report = checkCapabilities(oracle, { resources: [{ type: 'ChargeItem', search: { status: 'billable' }, incremental: false }] });
    assert.deepEqual(report.resources[0]!.findings[0], {
      level: 'error',
      message: 'search parameter "status" is not supported for ChargeItem',
      fix: 'this server offers "-status" instead: rename it in resources[0].search',
    });
    const stu3 = checkCapabilities({ ...oracle, fhirVersion: '3.0.1' }, { resources: [] });
    assert.equal(stu3.level, 'error');
    assert.match(stu3.findings[0]!.message, /speaks FHIR 3\.0\.1, not R4/);
  });
});

describe('settle connectors check against the sandbox EHR', () => {
  const keys = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const wrongKeys = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  let ehr: SandboxEhr;
  before(async () => {
    ehr = await startSandboxEhr({ clients: [{ clientId: 'settle', publicKeyPem: keys.publicKey.export({ type: 'spki', format: 'pem' }).toString(), kid: 'k1' }] });
  });
  after(() => ehr.close());

  function connector(): FhirConnectorConfig {
    return {
      ...preset('generic-fhir-r4'),
      baseUrl: ehr.baseUrl,
      auth: { method: 'smart-backend', tokenUrl: ehr.tokenUrl, clientId: 'settle', privateKeyEnv: 'SANDBOX_KEY', keyId: 'k1', algorithm: 'ES384', scope: 'system/*.rs' },
    };
  }

  it('authenticates, reads the CapabilityStatement and reports each type', async () => {
    const lines: string[] = [];
    const { code, report } = await runConnectorCheck({
      connector: connector(),
      out: (l) => lines.push(l),
      env: { SANDBOX_KEY: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
    });
    assert.equal(code, 0, lines.join('\n'));
    assert.equal(lines[0], 'generic-fhir-r4: authenticated (smart-backend)');
    assert.equal(report!.server.tokenUrl, ehr.tokenUrl);
    assert.deepEqual(report!.resources.map((r) => r.type), ['Patient', 'Account', 'Invoice']);
    assert.ok(report!.resources.every((r) => r.level === 'ok'), lines.join('\n'));
    assert.ok(lines.includes('  [ok  ] Account: interactions read, vread, search-type, create, update; search status, _lastUpdated, _sort, _count'), lines.join('\n'));
    assert.equal(lines.at(-1), '3 of 3 resource types usable as configured; 0 problems, 0 notes');
  });

  it('reports a bad key and a missing variable without reading anything', async () => {
    const lines: string[] = [];
    const bad = await runConnectorCheck({ connector: connector(), out: (l) => lines.push(l), env: { SANDBOX_KEY: wrongKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() } });
    assert.equal(bad.code, 1);
    assert.match(lines.join('\n'), /generic-fhir-r4: authentication failed: 400 from .*\/auth\/token: invalid_client: client_assertion signature does not verify/);
    const missing: string[] = [];
    assert.equal((await runConnectorCheck({ connector: connector(), out: (l) => missing.push(l), env: {} })).code, 1);
    assert.deepEqual(missing, ['connector generic-fhir-r4: environment variable SANDBOX_KEY (the SMART backend private key) is not set']);
  });
});
