import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runConfigCheck } from '../../src/cli/config-check.ts';
import { DataFilesError, formatProblem, loadDataFiles, type DataFileProblem } from '../../src/config/data-files.ts';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const temporaryDirs: string[] = [];
after(() => {
  for (const dir of temporaryDirs) rmSync(dir, { recursive: true, force: true });
});

/** A shipped example file, parsed, to copy and break. */
function example(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(repoRoot, path), 'utf8'));
}

/** A configuration directory holding these files: strings are written as they are, anything else as JSON. */
function configDir(files: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'settle-config-'));
  temporaryDirs.push(dir);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  }
  return dir;
}

function problemsIn(files: Record<string, unknown>): DataFileProblem[] {
  return loadDataFiles(configDir(files)).problems;
}

const fhirConnector = example('connectors/generic-fhir-r4.json');
const csvConnector = { name: 'pm-statements', description: 'Monthly statement export.', practice: 'demo-clinic', transport: 'csv', mapping: 'pm-statement', delimiter: ',', encoding: 'UTF-8' };
const csvMapping = {
  name: 'pm-statement',
  description: 'One row per open balance.',
  source: { transport: 'csv' },
  fields: { account: { column: 'Account No', required: true }, amount: { column: 'Balance', transform: 'money', currency: 'USD' } },
  produces: ['balance-event'],
};

describe('loadDataFiles', () => {
  it('loads the shipped example files with no problems', () => {
    const loaded = loadDataFiles(repoRoot);
    assert.deepEqual(loaded.problems.map(formatProblem), []);
    const names = (files: { name: string }[]) => files.map((f) => f.name);
    assert.ok(names(loaded.connectors).includes('generic-fhir-r4'));
    assert.ok(names(loaded.connectors).includes('pm-hl7v2'));
    assert.ok(names(loaded.mappings).includes('generic-fhir-invoice'));
    assert.ok(names(loaded.policies).includes('default'));
    assert.ok(names(loaded.profiles).includes('settle-payment-reconciliation'));
    const connector = loaded.connectors.find((c) => c.name === 'pm-hl7v2');
    assert.equal(connector?.file, 'connectors/pm-hl7v2.json');
    assert.equal(connector?.absolutePath, join(repoRoot, 'connectors', 'pm-hl7v2.json'));
    assert.equal(connector?.data.transport, 'hl7v2-mllp');
  });

  it('treats missing folders as empty and ignores schema, hidden and non-JSON files', () => {
    const dir = configDir({
      'connectors/connector.schema.json': '{ not even JSON',
      'connectors/.draft.json': '{',
      'connectors/notes.txt': 'hello',
    });
    assert.deepEqual(loadDataFiles(dir), { connectors: [], mappings: [], policies: [], profiles: [], problems: [] });
  });

  it('reports a configuration directory that does not exist', () => {
    const missing = join(tmpdir(), 'settle-config-that-does-not-exist');
    assert.deepEqual(loadDataFiles(missing).problems, [{ file: missing, path: '', message: 'is not a directory' }]);
  });

  it('reports every schema mistake in a file with its own pointer', () => {
    const { schedule: _schedule, ...withoutSchedule } = fhirConnector;
    const problems = problemsIn({
      'connectors/generic-fhir-r4.json': { ...withoutSchedule, baseUrl: 'hapi.fhir.org/baseR4', pageSize: '100' },
    });
    assert.deepEqual(problems.map(formatProblem).sort(), [
      'connectors/generic-fhir-r4.json: /baseUrl: must be an absolute http:// or https:// URL',
      'connectors/generic-fhir-r4.json: /pageSize: must be a whole number',
      'connectors/generic-fhir-r4.json: /schedule: is required',
    ]);
  });

  it('leaves a file with problems out of the loaded files', () => {
    const loaded = loadDataFiles(configDir({ 'connectors/generic-fhir-r4.json': { ...fhirConnector, pageSize: 0 } }));
    assert.deepEqual(loaded.connectors, []);
    assert.deepEqual(loaded.problems, [{ file: 'connectors/generic-fhir-r4.json', path: '/pageSize', message: 'must be >= 1' }]);
  });

  it('lists the allowed values of an enum and names an unknown property', () => {
    const problems = problemsIn({ 'connectors/generic-fhir-r4.json': { ...fhirConnector, transport: 'fhir', baseURL: 'x' } });
    assert.deepEqual(problems.map(formatProblem), [
      'connectors/generic-fhir-r4.json: /transport: must be one of: fhir-r4, hl7v2-mllp, csv (got "fhir")',
    ]);
    const typo = problemsIn({ 'connectors/generic-fhir-r4.json': { ...fhirConnector, pageSzie: 10 } });
    assert.deepEqual(typo, [{ file: 'connectors/generic-fhir-r4.json', path: '/pageSzie', message: 'unknown property "pageSzie"' }]);
  });

  it('checks the shape that belongs to the transport and the auth method', () => {
    const problems = problemsIn({
      'connectors/generic-fhir-r4.json': { ...fhirConnector, auth: { method: 'smart-backend', tokenUrl: 'https://ehr.example/token', clientId: 'settle', keyId: 'k1', algorithm: 'RS256', scope: 'system/Invoice.rs' }, listen: { host: '0.0.0.0', port: 2575 } },
    });
    assert.deepEqual(problems.map((p) => [p.path, p.message]), [
      ['/auth/privateKeyEnv', 'is required'],
      ['/auth/algorithm', 'must be one of: RS384, ES384 (got "RS256")'],
      ['/listen', 'unknown property "listen"'],
    ]);
  });

  it('rejects a literal secret and points to the Env property to use instead', () => {
    const auth = { method: 'client-secret', tokenUrl: 'https://ehr.example/oauth2/token', clientId: 'settle', clientSecret: 'hunter2', clientSecretEnv: 'EHR_CLIENT_SECRET', style: 'basic' };
    const problems = problemsIn({ 'connectors/generic-fhir-r4.json': { ...fhirConnector, auth } });
    assert.equal(problems.length, 1);
    assert.equal(problems[0]?.path, '/auth/clientSecret');
    assert.match(problems[0]?.message ?? '', /^unknown property "clientSecret": secrets never go in data files.*"clientSecretEnv"$/);
    assert.doesNotMatch(formatProblem(problems[0]!), /hunter2/);
  });

  it('requires exactly one of clientId and clientIdEnv, and env-var names in Env properties', () => {
    const auth = { method: 'client-secret', tokenUrl: 'https://ehr.example/oauth2/token', clientSecretEnv: 'hunter2', style: 'post' };
    const problems = problemsIn({ 'connectors/generic-fhir-r4.json': { ...fhirConnector, auth } });
    assert.deepEqual(problems.map((p) => [p.path, p.message]), [
      ['/auth', 'must have exactly one of: clientId, clientIdEnv'],
      ['/auth/clientSecretEnv', 'must be the NAME of an environment variable (like FHIR_CLIENT_SECRET), never the secret itself'],
    ]);
  });

  it('names the line and column of invalid JSON', () => {
    const problems = problemsIn({
      'connectors/missing-comma.json': '{\n  "name": "missing-comma"\n  "transport": "csv"\n}\n',
      'connectors/trailing-comma.json': '{\n  "name": "trailing-comma",\n  "transport": "csv",\n}\n',
      'connectors/trailing-comma-in-list.json': '{\n  "acceptedMessageTypes": ["DFT^P03",],\n}\n',
      'connectors/truncated.json': '\uFEFF{\n  "name": "truncated",\n  "transport": "c',
    });
    assert.deepEqual(problems.map(formatProblem), [
      "connectors/missing-comma.json: invalid JSON at line 3, column 3: Expected ',' or '}' after property value",
      "connectors/trailing-comma-in-list.json: invalid JSON at line 2, column 38: Unexpected token ']' (JSON allows no trailing comma)",
      'connectors/trailing-comma.json: invalid JSON at line 4, column 1: Expected double-quoted property name (JSON allows no trailing comma)',
      'connectors/truncated.json: invalid JSON at line 3, column 18: Unterminated string',
    ]);
  });

  it('reports a file that cannot be read', () => {
    const dir = configDir({});
    mkdirSync(join(dir, 'policies'));
    symlinkSync(join(dir, 'nowhere.json'), join(dir, 'policies', 'broken.json'));
    assert.deepEqual(loadDataFiles(dir).problems, [
      { file: 'policies/broken.json', path: '', message: 'cannot read the file: no such file or directory (ENOENT)' },
    ]);
  });

  it('requires the name to equal the file name', () => {
    const problems = problemsIn({ 'policies/gentle.json': example('policies/default.json') });
    assert.deepEqual(problems, [{ file: 'policies/gentle.json', path: '/name', message: 'must equal the file name "gentle" (got "default")' }]);
  });

  it('matches a profile by its id, not its name', () => {
    const profile = example('fhir-profiles/settle-payment-reconciliation.json');
    assert.deepEqual(problemsIn({ 'fhir-profiles/settle-payment-reconciliation.json': profile }), []);
    assert.deepEqual(problemsIn({ 'fhir-profiles/payment.json': profile }).map(formatProblem), [
      'fhir-profiles/payment.json: /id: must equal the file name "payment" (got "settle-payment-reconciliation")',
    ]);
  });

  it('reports every file that shares a name', () => {
    const mapping = example('mappings/generic-fhir-invoice.json');
    const problems = problemsIn({
      'mappings/generic-fhir-invoice.json': mapping,
      'mappings/vendor/generic-fhir-invoice.json': mapping,
    });
    assert.deepEqual(problems.map(formatProblem), [
      'mappings/generic-fhir-invoice.json: /name: "generic-fhir-invoice" is also the name of mappings/vendor/generic-fhir-invoice.json',
      'mappings/vendor/generic-fhir-invoice.json: /name: "generic-fhir-invoice" is also the name of mappings/generic-fhir-invoice.json',
    ]);
  });

  it('resolves a csv connector mapping and reports one that names no mapping file', () => {
    assert.deepEqual(problemsIn({ 'connectors/pm-statements.json': csvConnector, 'mappings/pm-statement.json': csvMapping }), []);
    assert.deepEqual(problemsIn({ 'connectors/pm-statements.json': csvConnector }), [
      { file: 'connectors/pm-statements.json', path: '/mapping', message: 'names no mapping: there is no mappings/pm-statement.json' },
    ]);
    const fhirMapping = { ...example('mappings/generic-fhir-invoice.json'), name: 'pm-statement' };
    assert.deepEqual(problemsIn({ 'connectors/pm-statements.json': csvConnector, 'mappings/pm-statement.json': fhirMapping }), [
      { file: 'connectors/pm-statements.json', path: '/mapping', message: 'names mapping "pm-statement", which reads fhir-r4 records, not csv' },
    ]);
  });

  it('checks mapping fields against their source and code tables', () => {
    const fields = {
      ...csvMapping.fields,
      status: { hl7: 'PV1-41', transform: 'code-table', codeTable: 'statuses' },
      total: { column: 'Total', transform: 'money' },
    };
    const problems = problemsIn({ 'mappings/pm-statement.json': { ...csvMapping, fields } });
    assert.deepEqual(problems.map((p) => [p.path, p.message]), [
      ['/fields/status', 'must read its value with "column", as the source is CSV'],
      ['/fields/total/currency', 'is required'],
      ['/fields/status/codeTable', 'names no code table "statuses": there are no codeTables'],
    ]);
  });

  it('keeps money in whole cents and step ids unique in a policy', () => {
    const policy = example('policies/default.json');
    const steps = policy.steps as Record<string, unknown>[];
    const broken = { ...policy, steps: [...steps, { ...steps[0], conditions: { minimumAmountCents: 25.5 } }] };
    assert.deepEqual(problemsIn({ 'policies/default.json': broken }).map((p) => [p.path, p.message]), [
      [`/steps/${steps.length}/conditions/minimumAmountCents`, 'must be a whole number'],
      [`/steps/${steps.length}/id`, 'repeats the id of /steps/0'],
    ]);
  });
});

describe('DataFilesError', () => {
  it('carries every problem and lists them in its message', () => {
    const problems = [
      { file: 'connectors/a.json', path: '/name', message: 'is required' },
      { file: 'policies/b.json', path: '', message: 'cannot read the file: permission denied (EACCES)' },
    ];
    const error = new DataFilesError(problems);
    assert.equal(error.problems, problems);
    assert.equal(error.message, 'Invalid configuration files:\n  connectors/a.json: /name: is required\n  policies/b.json: cannot read the file: permission denied (EACCES)');
  });
});

describe('runConfigCheck', () => {
  const examples = [
    'connectors/generic-fhir-r4.json',
    'connectors/pm-hl7v2.json',
    'mappings/generic-fhir-invoice.json',
    'policies/default.json',
    'fhir-profiles/settle-payment-reconciliation.json',
  ];

  it('prints a summary and returns 0 when every file is valid', () => {
    const lines: string[] = [];
    const dir = configDir(Object.fromEntries(examples.map((path) => [path, example(path)])));
    assert.equal(runConfigCheck(dir, (line) => lines.push(line)), 0);
    assert.deepEqual(lines, ['2 connectors, 1 mapping, 1 policy, 1 profile: OK']);
  });

  it('prints each problem as file: /json/path: message and returns 1', () => {
    const lines: string[] = [];
    const files = Object.fromEntries(examples.map((path) => [path, example(path)]));
    const dir = configDir({ ...files, 'connectors/pm-statements.json': csvConnector, 'policies/default.json': { ...example('policies/default.json'), caps: {} } });
    assert.equal(runConfigCheck(dir, (line) => lines.push(line)), 1);
    assert.deepEqual(lines, [
      'connectors/pm-statements.json: /mapping: names no mapping: there is no mappings/pm-statement.json',
      'policies/default.json: /caps/perBalancePer7Days: is required',
      'policies/default.json: /caps/perChannelPerDay: is required',
      '3 connectors, 1 mapping, 0 policies, 1 profile: 3 problems',
    ]);
  });

  it('reports a profile whose differential cannot be built into a snapshot', () => {
    const lines: string[] = [];
    const invoice = example('fhir-profiles/settle-invoice.json');
    const differential = { element: [...(invoice.differential as { element: unknown[] }).element, { id: 'Invoice.price', path: 'Invoice.price', min: 1 }] };
    const dir = configDir({ ...Object.fromEntries(examples.map((path) => [path, example(path)])), 'fhir-profiles/settle-invoice.json': { ...invoice, differential } });
    assert.equal(runConfigCheck(dir, (line) => lines.push(line)), 1);
    assert.deepEqual(lines, [
      `fhir-profiles/settle-invoice.json: /differential/element/${differential.element.length - 1}/path: Invoice.price is not an element of Invoice`,
      '2 connectors, 1 mapping, 1 policy, 2 profiles: 1 problem',
    ]);
  });
});
