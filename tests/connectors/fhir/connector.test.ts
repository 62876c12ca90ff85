import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Patient } from '@medplum/fhirtypes';
import { loadDataFiles } from '../../../src/config/data-files.ts';
import {
  ConnectorConfigError,
  createFhirClient,
  fhirConnectorConfig,
  rateLimited,
  resolveAuth,
  type FhirConnectorConfig,
} from '../../../src/connectors/fhir/connector.ts';
import { startSandboxEhr, type SandboxEhr } from '../../../src/sandbox-ehr/server.ts';
import { seedPractice, type SeedSummary } from '../../../src/sandbox-ehr/seed.ts';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

function base(over: Partial<FhirConnectorConfig> = {}): FhirConnectorConfig {
  return {
    name: 'test-ehr',
    description: 'test',
    practice: 'riverside',
    transport: 'fhir-r4',
    baseUrl: 'https://ehr.example.invalid/r4',
    auth: { method: 'none' },
    resources: [{ type: 'Invoice' }],
    schedule: { every: '15 minutes' },
    pageSize: 50,
    rateLimitPerSecond: 5,
    ...over,
  };
}

describe('fhir-r4 connector files', () => {
  it('reads the shipped FHIR connectors, presets included', () => {
    const { connectors, problems } = loadDataFiles(repoRoot);
    assert.deepEqual(problems, []);
    const fhir = connectors.filter((c) => c.data.transport === 'fhir-r4').map((c) => fhirConnectorConfig(c.data));
    assert.deepEqual(fhir.map((c) => c.name).sort(), ['epic-fhir-r4', 'generic-fhir-r4', 'oracle-health-fhir-r4']);
    const oracle = fhir.find((c) => c.name === 'oracle-health-fhir-r4')!;
    assert.deepEqual(oracle.resources.map((r) => r.type), ['Patient', 'Coverage', 'Account', 'ChargeItem']);
    assert.equal(oracle.auth.method, 'smart-backend');
    assert.equal(oracle.baseUrl, 'https://fhir-ehr.example.invalid/r4/TENANT');
  });

  it('refuses another transport, a type that is not a FHIR R4 resource, and a type listed twice', () => {
    assert.throws(() => fhirConnectorConfig({ ...base(), transport: 'csv' } as never), /connector test-ehr: is a csv connector, not fhir-r4/);
    assert.throws(() => fhirConnectorConfig(base({ resources: [{ type: 'Invoice' }, { type: 'Bill' }] }) as never), /connector test-ehr: Bill is not a FHIR R4 resource type/);
    assert.throws(() => fhirConnectorConfig(base({ resources: [{ type: 'Invoice' }, { type: 'Invoice' }] }) as never), /lists Invoice twice/);
  });

  it('reads secrets from the variables the file names, and names the connector and the variable when one is missing', () => {
    const bearer = base({ auth: { method: 'bearer', tokenEnv: 'EHR_TOKEN' } });
    assert.deepEqual(resolveAuth(bearer, { EHR_TOKEN: ' abc \n' }), { method: 'bearer', token: 'abc' });
    assert.throws(() => resolveAuth(bearer, {}), (error: unknown) => {
      assert.ok(error instanceof ConnectorConfigError);
      assert.equal(error.message, 'connector test-ehr: environment variable EHR_TOKEN (the bearer token) is not set');
      return true;
    });
    assert.throws(() => resolveAuth(bearer, { EHR_TOKEN: '  ' }), /EHR_TOKEN \(the bearer token\) is not set/);

    const secret = base({ auth: { method: 'client-secret', tokenUrl: 'https://ehr.example.invalid/token', clientIdEnv: 'EHR_CLIENT_ID', clientSecretEnv: 'EHR_SECRET', style: 'basic', scope: 'system/*.rs' } });
    assert.deepEqual(resolveAuth(secret, { EHR_CLIENT_ID: 'settle', EHR_SECRET: 's3cret' }), {
      method: 'client-secret-basic',
      tokenUrl: 'https://ehr.example.invalid/token',
      clientId: 'settle',
      clientSecret: 's3cret',
      scope: 'system/*.rs',
    });
    assert.throws(() => resolveAuth(secret, { EHR_SECRET: 'x' }), /connector test-ehr: environment variable EHR_CLIENT_ID \(the client id\) is not set/);

    const smart = base({ auth: { method: 'smart-backend', tokenUrl: 'https://ehr.example.invalid/token', clientId: 'settle', privateKeyEnv: 'EHR_KEY', keyId: 'k1', algorithm: 'ES384', scope: 'system/Invoice.rs' } });
    assert.throws(() => resolveAuth(smart, {}), /connector test-ehr: environment variable EHR_KEY \(the SMART backend private key\) is not set/);
    assert.throws(() => resolveAuth(smart, { EHR_KEY: 'hunter2' }), /EHR_KEY holds neither a PEM private key nor a JWK/);
    assert.throws(() => resolveAuth(smart, { EHR_KEY: '{"kty": ' }), /EHR_KEY starts like a JWK but is not valid JSON/);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const flattened = rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString().replace(/\n/g, '\\n');
    assert.throws(() => createFhirClient(smart, { env: { EHR_KEY: flattened } }), /connector test-ehr: unusable credentials \(environment variable EHR_KEY\): ES384 needs an EC P-384 private key/);
    const auth = resolveAuth({ ...smart, auth: { ...(smart.auth as { method: 'smart-backend' }), algorithm: 'RS384' } as never }, { EHR_KEY: flattened });
    assert.ok(auth.method === 'smart-backend' && typeof auth.privateKey === 'string' && auth.privateKey.includes('\n'));
  });

  it('spaces requests to the connector rate, concurrent callers included', async () => {
    const waits: number[] = [];
    let calls = 0;
    const fetchFn = rateLimited(
      async () => {
        calls++;
        return new Response('{}');
      },
      4,
      () => 0,
      async (ms) => void waits.push(ms),
    );
    await Promise.all([fetchFn('a'), fetchFn('b'), fetchFn('c')]);
    await fetchFn('d');
    assert.equal(calls, 4);
    assert.deepEqual(waits, [250, 500, 750], 'at 4/s each request starts 250 ms after the previous one');
  });
});

describe('a connector client against the sandbox EHR', () => {
  const keys = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  let ehr: SandboxEhr;
  let seeded: SeedSummary;
  before(async () => {
    ehr = await startSandboxEhr({ clients: [{ clientId: 'settle', publicKeyPem: keys.publicKey.export({ type: 'spki', format: 'pem' }).toString(), kid: 'k1' }] });
    seeded = await seedPractice(ehr.repo, { patients: 3, seed: 5 });
  });
  after(() => ehr.close());

  it('authenticates with SMART backend services using a key from the environment, at the configured rate', async () => {
    const config = base({
      baseUrl: ehr.baseUrl,
      rateLimitPerSecond: 20,
      auth: { method: 'smart-backend', tokenUrl: ehr.tokenUrl, clientId: 'settle', privateKeyEnv: 'SANDBOX_KEY', keyId: 'k1', algorithm: 'ES384', scope: 'system/*.rs' },
    });
    const client = createFhirClient(config, { env: { SANDBOX_KEY: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() } });
    const started = performance.now();
    const patients: Patient[] = [];
    for (let i = 0; i < 5; i++) patients.push(await client.read<Patient>('Patient', seeded.ids.Patient[i % 3]!));
    const elapsed = performance.now() - started;
    assert.equal(patients.length, 5);
    assert.ok(elapsed >= 195, `5 requests at 20/s take at least 200 ms (took ${elapsed.toFixed(0)})`);
    assert.equal(ehr.stats.tokenRequests, 1);
  });
});
