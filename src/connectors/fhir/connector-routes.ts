/**
 * `GET /connectors` and `GET /connectors/{name}`: the caller's practice's connectors with their sync status — last
 * run, last success, last error, checkpoint per resource type, stored record counts, open quarantine.
 */
import { ApiError } from '../../api/problem.ts';
import type { AnyRoute, JsonSchema } from '../../api/routes.ts';
import { loadDataFiles, type DataFile } from '../../config/data-files.ts';
import type { Clock } from '../../domain/clock.ts';
import { CheckpointRepository } from '../../store/checkpoints.ts';
import type { Database } from '../../store/database.ts';
import { PracticeRepository } from '../../store/practices.ts';
import { ConnectorRunRepository, SourceRecordRepository, type ConnectorRun } from '../../store/source-records.ts';

const RUN_SCHEMA: JsonSchema = {
  type: ['object', 'null'],
  properties: {
    id: { type: 'string' },
    status: {
      enum: ['running', 'succeeded', 'failed', 'interrupted'],
      description: '`interrupted`: the process running it stopped without finishing (killed, crashed); a run is never shown running once its process is gone.',
    },
    full: { type: 'boolean' },
    startedAt: { type: 'string', format: 'date-time' },
    finishedAt: { type: ['string', 'null'], format: 'date-time' },
    pages: { type: 'integer' },
    resources: { type: 'integer' },
    stored: { type: 'integer', description: 'New source records stored.' },
    duplicates: { type: 'integer', description: 'Versions read again and recognised as already stored.' },
    quarantined: { type: 'integer' },
    error: { type: ['string', 'null'], description: 'Why it failed (status and URL with query values redacted, and the OperationOutcome text) or which process stopped without finishing it.' },
  },
};

const CONNECTOR_SCHEMA: JsonSchema = {
  type: 'object',
  required: ['name', 'transport', 'description'],
  properties: {
    name: { type: 'string' },
    transport: { enum: ['fhir-r4', 'hl7v2-mllp', 'csv'] },
    description: { type: 'string' },
    baseUrl: { type: 'string' },
    schedule: { type: 'object' },
    resourceTypes: { type: 'array', items: { type: 'string' } },
    lastRun: RUN_SCHEMA,
    lastSuccess: RUN_SCHEMA,
    lastError: { ...RUN_SCHEMA, description: 'The latest failed or interrupted run.' },
    checkpoints: {
      type: 'array',
      items: { type: 'object', properties: { resourceType: { type: 'string' }, position: { type: 'string' }, updatedAt: { type: 'string', format: 'date-time' } } },
    },
    records: {
      type: 'array',
      items: {
        type: 'object',
        properties: { resourceType: { type: 'string' }, total: { type: 'integer' }, pending: { type: 'integer' }, ingested: { type: 'integer' }, quarantined: { type: 'integer' } },
      },
    },
    openQuarantine: { type: 'integer' },
  },
};

const QUARANTINE_SCHEMA: JsonSchema = {
  type: 'array',
  description: 'Open quarantine entries, oldest first (at most 100), each with the OperationOutcome naming the problem. The raw input is not shown here: it may hold PHI.',
  items: {
    type: 'object',
    properties: {
      id: { type: 'string' },
      resourceType: { type: 'string' },
      sourceId: { type: ['string', 'null'] },
      outcome: { type: 'object' },
      createdAt: { type: 'string', format: 'date-time' },
    },
  },
};

function run(r: ConnectorRun | undefined) {
  if (!r) return null;
  return {
    id: r.id,
    status: r.status,
    full: r.fullSync,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    pages: r.pages,
    resources: r.resources,
    stored: r.stored,
    duplicates: r.duplicates,
    quarantined: r.quarantined,
    error: r.error,
  };
}

/** What the connector routes are built from. */
export interface ConnectorRouteDependencies {
  db: Database;
  clock: Clock;
  /** Where `connectors/` is (settings.configDir); read on each request, so edits show at once. */
  configDir: string;
}

/** `GET /connectors` and `GET /connectors/{name}`, for staff and integration keys. */
export function connectorRoutes(deps: ConnectorRouteDependencies): AnyRoute[] {
  const runs = new ConnectorRunRepository(deps.db.pool, deps.clock);
  const records = new SourceRecordRepository(deps.db.pool, deps.clock);
  const checkpoints = new CheckpointRepository(deps.db.pool, deps.clock);

  async function practiceConnectors(practiceId: string): Promise<DataFile[]> {
    const practice = await new PracticeRepository(deps.db.pool).findById(practiceId);
    if (!practice) throw new ApiError(404, 'not_found', 'The practice of this key no longer exists.');
    return loadDataFiles(deps.configDir).connectors.filter((c) => c.data.practice === practice.slug);
  }

  async function status(practiceId: string, file: DataFile) {
    const data = file.data;
    const [state, points, counts, openQuarantine] = await Promise.all([
      runs.status(practiceId, file.name),
      checkpoints.list(practiceId, file.name),
      records.counts(practiceId, file.name),
      records.countOpenQuarantine(practiceId, file.name),
    ]);
    return {
      name: file.name,
      transport: data.transport as string,
      description: data.description as string,
      ...(typeof data.baseUrl === 'string' ? { baseUrl: data.baseUrl } : {}),
      ...(data.schedule ? { schedule: data.schedule } : {}),
      ...(Array.isArray(data.resources) ? { resourceTypes: (data.resources as { type: string }[]).map((r) => r.type) } : {}),
      lastRun: run(state.last),
      lastSuccess: run(state.lastSuccess),
      lastError: run(state.lastFailure),
      checkpoints: points.map((c) => ({ resourceType: c.resourceType, position: c.position, updatedAt: c.updatedAt })),
      records: counts,
      openQuarantine,
    };
  }

  return [
    {
      method: 'get',
      path: '/connectors',
      summary: "The practice's connectors with their sync status.",
      tag: 'connectors',
      access: ['staff', 'integration'],
      responses: { 200: { description: 'Connectors, by name.', schema: { type: 'array', items: CONNECTOR_SCHEMA } } },
      handler: async ({ principal }) => {
        const files = await practiceConnectors(principal!.practiceId);
        return Promise.all(files.map((f) => status(principal!.practiceId, f)));
      },
    },
    {
      method: 'get',
      path: '/connectors/{name}',
      summary: 'One connector: sync status, checkpoints, record counts and its open quarantine.',
      tag: 'connectors',
      access: ['staff', 'integration'],
      responses: {
        200: { description: 'The connector.', schema: { ...CONNECTOR_SCHEMA, properties: { ...(CONNECTOR_SCHEMA.properties as object), quarantine: QUARANTINE_SCHEMA } } },
        404: { description: 'No connector of that name for this practice.' },
      },
      handler: async ({ principal, params }) => {
        const file = (await practiceConnectors(principal!.practiceId)).find((f) => f.name === params.name);
        if (!file) throw new ApiError(404, 'not_found', `No connector ${params.name} for this practice.`);
        const [detail, quarantine] = await Promise.all([
          status(principal!.practiceId, file),
          records.listQuarantine(principal!.practiceId, { connector: file.name, limit: 100 }),
        ]);
        return {
          ...detail,
          quarantine: quarantine.items.map((q) => ({ id: q.id, resourceType: q.resourceType, sourceId: q.sourceId, outcome: q.outcome, createdAt: q.createdAt })),
        };
      },
    },
  ];
}
