import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Invoice } from '@medplum/fhirtypes';
import { importBulkExport, ndjsonLines } from '../../../src/connectors/fhir/bulk-export.ts';
import { createFhirClient, type FhirConnectorConfig } from '../../../src/connectors/fhir/connector.ts';
import { FhirError } from '../../../src/connectors/fhir/errors.ts';
import { FhirClient } from '../../../src/connectors/fhir/fhir-client.ts';
import { syncFhirConnector } from '../../../src/connectors/fhir/sync.ts';
import { systemClock } from '../../../src/domain/clock.ts';
import { CheckpointRepository } from '../../../src/store/checkpoints.ts';
import { PracticeRepository } from '../../../src/store/practices.ts';
import { ConnectorRunRepository, SourceRecordRepository } from '../../../src/store/source-records.ts';
import { describeOnEachDatabase } from '../../support/databases.ts';
import { startSandboxEhr, type SandboxEhr } from '../../../src/sandbox-ehr/server.ts';
import { seedPractice, type SeedSummary } from '../../../src/sandbox-ehr/seed.ts';

describe('NDJSON streaming', () => {
  it('splits lines across chunks, multi-byte characters and CRLF included, skipping blank lines', async () => {
    const text = '{"a":"Jos\u00e9"}\r\n\n{"b":"\u4e2d\u6587"}\n{"c":1}';
    const bytes = Buffer.from(text, 'utf8');
    const chunks = [bytes.subarray(0, 11), bytes.subarray(11, 25), bytes.subarray(25, 27), bytes.subarray(27)];
    const client = new FhirClient({
      baseUrl: 'http://ehr.invalid/fhir',
      fetch: (async () =>
        new Response(
          new ReadableStream({
            start(controller) {
              for (const c of chunks) controller.enqueue(new Uint8Array(c));
              controller.close();
            },
          }),
        )) as typeof fetch,
    });
    const lines: string[] = [];
    for await (const line of ndjsonLines(client, 'http://ehr.invalid/files/x.ndjson', true)) lines.push(line);
    assert.deepEqual(lines.map((l) => JSON.parse(l)), [{ a: 'Jos\u00e9' }, { b: '\u4e2d\u6587' }, { c: 1 }]);
  });
});

describeOnEachDatabase('Bulk Data $export against the sandbox EHR', (db) => {
  const keys = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const env = { SANDBOX_KEY: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
  let ehr: SandboxEhr;
  let seeded: SeedSummary;
  let practiceId: string;
  let connector: FhirConnectorConfig;

  before(async () => {
    ehr = await startSandboxEhr({ clients: [{ clientId: 'settle', publicKeyPem: keys.publicKey.export({ type: 'spki', format: 'pem' }).toString(), kid: 'k1' }], bulkPendingPolls: 2 });
    seeded = await seedPractice(ehr.repo, { patients: 20, seed: 9 });
    practiceId = (await new PracticeRepository(db().pool).ensure({ slug: 'riverside', name: 'Riverside Pediatrics' })).id;
    connector = {
      name: 'bulk-ehr',
      description: 'test',
      practice: 'riverside',
      transport: 'fhir-r4',
      baseUrl: ehr.baseUrl,
      auth: { method: 'smart-backend', tokenUrl: ehr.tokenUrl, clientId: 'settle', privateKeyEnv: 'SANDBOX_KEY', keyId: 'k1', algorithm: 'ES384', scope: 'system/*.rs' },
      resources: [{ type: 'Patient' }, { type: 'Account' }, { type: 'Invoice' }],
      schedule: { every: '1 hour' },
      pageSize: 10,
      rateLimitPerSecond: 1000,
    };
  });
  after(() => ehr.close());

  it('kicks off, polls with Retry-After and X-Progress, streams every file with the token, quarantines bad lines, moves the checkpoints and deletes the job', async () => {
    ehr.injectBulkLines('Invoice', ['{not json', '{"resourceType":"Invoice","meta":{"versionId":"1"}}', '{"resourceType":"Patient","id":"stray"}']);
    const sleeps: number[] = [];
    const progress: string[] = [];
    const client = createFhirClient(connector, { env });
    const summary = await importBulkExport({
      db: db(),
      connector,
      practiceId,
      client,
      batchSize: 7,
      sleep: async (ms) => void sleeps.push(ms),
      onProgress: (e) => void (e.phase === 'waiting' && progress.push(e.progress)),
    });
    ehr.injectBulkLines('Invoice', []);
    assert.deepEqual(sleeps, [1000, 1000]);
    assert.deepEqual(progress, ['33% done', '67% done']);
    assert.deepEqual(summary.files.map((f) => [f.type, f.stored, f.quarantined]), [
      ['Patient', seeded.patients, 0],
      ['Account', seeded.accounts, 0],
      ['Invoice', seeded.invoices, 3],
    ]);
    assert.equal(summary.lines, seeded.patients + seeded.accounts + seeded.invoices + 3);
    const quarantine = await new SourceRecordRepository(db().pool, systemClock).listQuarantine(practiceId, { connector: 'bulk-ehr' });
    assert.deepEqual(quarantine.items.map((q) => q.outcome.issue[0]!.details!.text), [
      'line ' + String(seeded.invoices + 1) + ' of the Invoice export file is not valid JSON',
      'the Invoice has no id',
      'the Invoice export file holds a Patient',
    ]);
    assert.equal(quarantine.items[0]!.raw, '{not json');
    for (const type of ['Patient', 'Account', 'Invoice']) {
      assert.equal((await new CheckpointRepository(db().pool, systemClock).get(practiceId, 'bulk-ehr', type))?.position, new Date(summary.transactionTime).toISOString());
    }
    assert.equal(ehr.bulkJobs(), 0, 'the job was deleted');
    const kickOff = ehr.stats.fhirRequests.find((r) => r.url.includes('$export'))!;
    assert.equal(kickOff.url, '/fhir/R4/$export?_type=Patient%2CAccount%2CInvoice');
    const run = await new ConnectorRunRepository(db().pool, systemClock).status(practiceId, 'bulk-ehr');
    assert.equal(run.lastSuccess?.stored, summary.stored);

    // Incremental sync carries on from the export: only what changed after it.
    const invoice = await ehr.repo.readResource<Invoice>('Invoice', seeded.ids.Invoice[0]!);
    await ehr.repo.updateResource<Invoice>({ ...invoice, status: 'cancelled' });
    const next = await syncFhirConnector({ db: db(), connector, practiceId, client, types: ['Invoice'] });
    assert.equal(next.stored, 1);

    // A second export asks only for what changed since the checkpoints, and stores nothing twice.
    const again = await importBulkExport({ db: db(), connector, practiceId, client, sleep: async () => {} });
    assert.equal(again.stored, 0);
    const second = ehr.stats.fhirRequests.filter((r) => r.url.includes('$export')).at(-1)!;
    assert.match(second.url, /_since=2026-/);
  });

  it('a Group export of an unknown group fails with the server outcome and is recorded', async () => {
    const client = createFhirClient(connector, { env });
    await assert.rejects(
      importBulkExport({ db: db(), connector, practiceId, client, level: { kind: 'group', id: 'no-such-group' }, sleep: async () => {} }),
      (e: unknown) => e instanceof FhirError && e.status === 404 && /Group\/no-such-group does not exist/.test(e.message),
    );
    const run = await new ConnectorRunRepository(db().pool, systemClock).status(practiceId, 'bulk-ehr');
    assert.match(run.lastFailure?.error ?? '', /^bulk export: 404 from .*Group\/no-such-group\/\$export/);
  });
});
