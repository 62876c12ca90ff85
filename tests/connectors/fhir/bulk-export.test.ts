import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
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
import { runChild, urlOf } from './child-process.ts';
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
    const groups: string[][] = [];
    for await (const lines of ndjsonLines(client, 'http://ehr.invalid/files/x.ndjson', true)) groups.push(lines);
    assert.deepEqual(groups.flat().map((l) => JSON.parse(l)), [{ a: 'Jos\u00e9' }, { b: '\u4e2d\u6587' }, { c: 1 }]);
    assert.deepEqual(groups.map((g) => g.length), [1, 1, 1], 'the complete lines of each chunk together, as they arrive');
  });
});

describe('NDJSON download time', () => {
  /** A client whose per-request timeout is 100 ms, fetching a body written by `write` (which may pause), as fetch does: aborting the signal fails the body. */
  function slowClient(write: (enqueue: (text: string) => void) => Promise<void>) {
    return new FhirClient({
      baseUrl: 'http://ehr.invalid/fhir',
      timeoutMs: 100,
      fetch: (async (_url: string, init: RequestInit) =>
        new Response(
          new ReadableStream({
            async start(controller) {
              init.signal!.addEventListener('abort', () => controller.error(init.signal!.reason));
              await write((text) => controller.enqueue(new TextEncoder().encode(text)));
              if (!init.signal!.aborted) controller.close();
            },
          }),
        )) as typeof fetch,
    });
  }
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it('takes as long as the file takes while data keeps coming, and however long the caller takes with each line', async () => {
    const client = slowClient(async (enqueue) => {
      for (let i = 0; i < 8; i++) {
        enqueue(`{"n":${i}}\n`);
        await pause(40); // 320 ms in all: more than the 100 ms timeout
      }
    });
    const lines: string[] = [];
    for await (const chunk of ndjsonLines(client, 'http://ehr.invalid/files/x.ndjson', true)) {
      for (const line of chunk) lines.push(line);
      if (lines.length === 2) await pause(250); // storing a batch, say
    }
    assert.equal(lines.length, 8);
  });

  it('fails with a timeout outcome when the server stops sending', async () => {
    const client = slowClient(async (enqueue) => {
      enqueue('{"n":1}\n');
      await pause(1000);
    });
    const lines: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const chunk of ndjsonLines(client, 'http://ehr.invalid/files/x.ndjson', true)) lines.push(...chunk);
      })(),
      (e: unknown) => e instanceof FhirError && e.outcome.issue[0]!.code === 'timeout' && /the download stalled: nothing received for 0\.1 s/.test(e.message),
    );
    assert.deepEqual(lines, ['{"n":1}']);
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

  it('an import killed half-way shows as interrupted, moves no checkpoint, and the next one stores every line exactly once', async () => {
    const killedConnector = { ...connector, name: 'bulk-killed', resources: [{ type: 'Invoice' }] };
    const records = new SourceRecordRepository(db().pool, systemClock);
    const stored = async () => (await records.list(practiceId, { connector: 'bulk-killed', limit: 1000 })).items;
    const killed = await runChild({ databaseUrl: urlOf(db()), practiceId, connector: killedConnector, env, bulk: { batchSize: 5, killAfterBatch: 2 } });
    assert.equal(killed.signal, 'SIGKILL', killed.stderr);
    const before = (await stored()).length;
    assert.ok(before >= 10 && before < seeded.invoices, `two batches or more of 5 were stored, not all (${before} of ${seeded.invoices})`);
    assert.equal(await new CheckpointRepository(db().pool, systemClock).get(practiceId, 'bulk-killed', 'Invoice'), undefined);
    const runs = new ConnectorRunRepository(db().pool, systemClock);
    const status = await runs.status(practiceId, 'bulk-killed');
    assert.equal(status.last?.status, 'interrupted');
    assert.match(status.last?.error ?? '', new RegExp(`^interrupted: process ${killed.pid} on `));

    const again = await importBulkExport({ db: db(), connector: killedConnector, practiceId, client: createFhirClient(killedConnector, { env }), batchSize: 5, sleep: async () => {} });
    assert.equal(again.stored, seeded.invoices - before);
    assert.equal(again.duplicates, before);
    const all = await stored();
    assert.equal(all.length, seeded.invoices);
    assert.equal(new Set(all.map((r) => `${r.sourceId}/${r.versionId}`)).size, all.length, 'none twice');
    assert.deepEqual((await runs.list(practiceId, 'bulk-killed')).map((r) => r.status), ['succeeded', 'interrupted']);
  });

  it('stores each line as received and hashed as received; a resource\'s versions keep their file order across writers; a repeated version is stored once', async () => {
    const lines = [
      '{"resourceType": "Invoice", "id": "ord-1", "meta": {"versionId": "1"}, "status": "draft", "totalNet": {"value": 10.10, "currency": "USD"}}',
      '{"resourceType":"Invoice","id":"ord-2","meta":{"versionId":"1"},"status":"issued"}',
      '{"resourceType":"Invoice","id":"ord-1","meta":{"versionId":"2"},"status":"issued"}',
      '{"resourceType":"Invoice","id":"ord-3","meta":{"versionId":"7"},"status":"issued"}',
      '{"resourceType":"Invoice","id":"ord-1","meta":{"versionId":"3"},"status":"balanced"}',
      '{"resourceType":"Invoice","id":"ord-2","meta":{"versionId":"1"},"status":"issued"}',
      // JSON that JavaScript reads but jsonb refused, failing the whole batch (and so the import) with it.
      '{"resourceType":"Invoice","id":"ord-4","meta":{"versionId":"1"},"note":[{"text":"nul \\u0000, lone \\ud800"}]}',
    ];
    ehr.injectBulkLines('Invoice', lines);
    const ordered = { ...connector, name: 'bulk-order', resources: [{ type: 'Invoice' }] };
    const summary = await importBulkExport({ db: db(), connector: ordered, practiceId, client: createFhirClient(ordered, { env }), batchSize: 1, writers: 3, sleep: async () => {} });
    ehr.injectBulkLines('Invoice', []);
    assert.equal(summary.stored, seeded.invoices + 6);
    assert.equal(summary.duplicates, 1, 'ord-2 version 1 twice');
    const records = new SourceRecordRepository(db().pool, systemClock);
    const versions = await records.versions(practiceId, 'bulk-order', 'Invoice', 'ord-1');
    assert.deepEqual(versions.map((v) => v.versionId), ['1', '2', '3'], 'stored in file order, ids ascending');
    assert.equal(versions[0]!.contentHash, createHash('sha256').update(lines[0]!).digest('hex'), 'the hash of the line as received');
    const { rows } = await db().pool.query<{ body: string }>('SELECT body FROM source_records WHERE id = $1', [versions[0]!.id]);
    assert.equal(rows[0]!.body, lines[0], 'the body as received, byte for byte: not parsed and serialised again');
    assert.equal((versions[0]!.body as Invoice).totalNet!.value, 10.1, 'read back parsed');
    const [escapes] = await records.versions(practiceId, 'bulk-order', 'Invoice', 'ord-4');
    assert.equal((escapes!.body as Invoice).note![0]!.text, 'nul \u0000, lone \ud800');
    assert.equal(escapes!.contentHash, createHash('sha256').update(lines.at(-1)!).digest('hex'));
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

describe('the sandbox EHR serving an export file', () => {
  it('sends a file of several mebibytes whole, with its Content-Length in bytes, multi-byte characters included', async () => {
    const ehr = await startSandboxEhr({ bulkPendingPolls: 0 });
    try {
      const lines = Array.from({ length: 3000 }, (_, i) => JSON.stringify({ resourceType: 'Patient', id: `p${i}`, name: [{ family: `Zoë-${'é'.repeat(400)}` }] }));
      ehr.injectBulkLines('Patient', lines);
      const kick = await fetch(`${ehr.baseUrl}/$export?_type=Patient`, { headers: { prefer: 'respond-async' } });
      assert.equal(kick.status, 202);
      const manifest = (await (await fetch(kick.headers.get('content-location')!)).json()) as { output: { url: string; count: number }[] };
      assert.equal(manifest.output[0]!.count, lines.length);
      const res = await fetch(manifest.output[0]!.url);
      const bytes = Buffer.from(await res.arrayBuffer());
      assert.ok(bytes.length > 2 * 2 ** 20, 'more than one piece of the file is sent');
      assert.equal(res.headers.get('content-length'), String(bytes.length));
      assert.deepEqual(bytes.toString('utf8').split('\n'), [...lines, '']);
    } finally {
      await ehr.close();
    }
  });
});
