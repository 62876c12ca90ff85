/**
 * A sync in its own process, for the kill tests: `SYNC_CHILD` holds JSON {databaseUrl, practiceId, connector,
 * full?, killAfterPage?, killBeforePage?}. With `killAfterPage: N` it SIGKILLs itself right after page N's
 * transaction committed; with `killBeforePage: N`, right after fetching page N, before storing it.
 * Prints one JSON line per committed page, then the summary.
 */
import { createFhirClient, type FhirConnectorConfig } from '../../../src/connectors/fhir/connector.ts';
import { syncFhirConnector } from '../../../src/connectors/fhir/sync.ts';
import { openDatabase } from '../../../src/store/database.ts';

const input = JSON.parse(process.env.SYNC_CHILD ?? '{}') as {
  databaseUrl: string;
  practiceId: string;
  connector: FhirConnectorConfig;
  full?: boolean;
  killAfterPage?: number;
  killBeforePage?: number;
};

const db = await openDatabase({ databaseUrl: input.databaseUrl, dataDir: 'unused', poolSize: 2 });
let pagesCommitted = 0;
try {
  const summary = await syncFhirConnector({
    db,
    connector: input.connector,
    practiceId: input.practiceId,
    client: createFhirClient(input.connector, { env: {} }),
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
} finally {
  await db.close();
}
