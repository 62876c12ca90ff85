/**
 * A sync in its own process, for the kill tests: `SYNC_CHILD` holds JSON {databaseUrl, practiceId, connector, env?,
 * full?, killAfterPage?, killBeforePage?, bulk?}. With `killAfterPage: N` it SIGKILLs itself right after page N's
 * transaction committed; with `killBeforePage: N`, right after fetching page N, before storing it. With
 * `bulk: {batchSize, killAfterBatch}` it runs a Bulk import instead and SIGKILLs itself once that many batches
 * are stored.
 * Prints one JSON line per committed page or batch, then the summary.
 */
import { importBulkExport } from '../../../src/connectors/fhir/bulk-export.ts';
import { createFhirClient, type FhirConnectorConfig } from '../../../src/connectors/fhir/connector.ts';
import { syncFhirConnector } from '../../../src/connectors/fhir/sync.ts';
import { openDatabase } from '../../../src/store/database.ts';

const input = JSON.parse(process.env.SYNC_CHILD ?? '{}') as {
  databaseUrl: string;
  practiceId: string;
  connector: FhirConnectorConfig;
  env?: Record<string, string>;
  full?: boolean;
  killAfterPage?: number;
  killBeforePage?: number;
  bulk?: { batchSize: number; killAfterBatch: number };
};

const db = await openDatabase({ databaseUrl: input.databaseUrl, dataDir: 'unused', poolSize: 2 });
const client = createFhirClient(input.connector, { env: input.env ?? {} });
let pagesCommitted = 0;
try {
  if (input.bulk) {
    const { batchSize, killAfterBatch } = input.bulk;
    const summary = await importBulkExport({
      db,
      connector: input.connector,
      practiceId: input.practiceId,
      client,
      batchSize,
      sleep: async () => {},
      onProgress(event) {
        if (event.phase !== 'importing') return;
        pagesCommitted++;
        process.stdout.write(`${JSON.stringify({ batch: pagesCommitted, lines: event.lines })}\n`);
        if (pagesCommitted === killAfterBatch) process.kill(process.pid, 'SIGKILL');
      },
    });
    process.stdout.write(`${JSON.stringify({ summary })}\n`);
  } else {
    const summary = await syncFhirConnector({
      db,
      connector: input.connector,
      practiceId: input.practiceId,
      client,
      full: input.full,
      onPageFetched() {
        if (input.killBeforePage !== undefined && pagesCommitted + 1 === input.killBeforePage) process.kill(process.pid, 'SIGKILL');
      },
      onPageCommitted(info) {
        pagesCommitted++;
        process.stdout.write(`${JSON.stringify({ ...info, page: pagesCommitted })}\n`);
        if (input.killAfterPage !== undefined && pagesCommitted === input.killAfterPage) process.kill(process.pid, 'SIGKILL');
      },
    });
    process.stdout.write(`${JSON.stringify({ summary })}\n`);
  }
} finally {
  await db.close();
}
