/**
 * Health, readiness, metrics and the OpenAPI document.
 */
import type { AnyRoute, JsonSchema } from './routes.ts';
import type { EngineMetrics } from './metrics.ts';

/** One readiness check's state. */
export interface ReadinessCheck {
  ok: boolean;
  detail: string;
}

/** What `/readyz` asks of the engine. */
export interface Readiness {
  database(): Promise<ReadinessCheck>;
  migrations(): Promise<ReadinessCheck>;
  scheduler(): ReadinessCheck;
}

const READINESS_SCHEMA: JsonSchema = {
  type: 'object',
  required: ['status', 'checks'],
  properties: {
    status: { enum: ['ready', 'not ready'] },
    checks: {
      type: 'object',
      additionalProperties: { type: 'object', properties: { ok: { type: 'boolean' }, detail: { type: 'string' } } },
    },
  },
};

/** The routes every engine process serves. */
export function systemRoutes(readiness: Readiness, metrics: EngineMetrics, document: () => JsonSchema): AnyRoute[] {
  return [
    {
      method: 'get',
      path: '/healthz',
      summary: 'The process is alive.',
      tag: 'system',
      access: 'public',
      responses: { 200: { description: 'Alive.', schema: { type: 'object', properties: { status: { const: 'ok' } } } } },
      handler: () => ({ status: 'ok' }),
    },
    {
      method: 'get',
      path: '/readyz',
      summary: 'The database is reachable, migrations are current and the scheduler runs.',
      tag: 'system',
      access: 'public',
      responses: {
        200: { description: 'Ready to take traffic.', schema: READINESS_SCHEMA },
        503: { description: 'Not ready; `checks` says what is missing.', schema: READINESS_SCHEMA },
      },
      handler: async ({ res }) => {
        const database = await readiness.database();
        const migrations = database.ok ? await readiness.migrations() : { ok: false, detail: 'database unreachable' };
        const checks = { database, migrations, scheduler: readiness.scheduler() };
        const ready = Object.values(checks).every((c) => c.ok);
        res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', checks });
      },
    },
    {
      method: 'get',
      path: '/metrics',
      summary: 'Prometheus metrics: HTTP latency, job counts and durations, process figures.',
      tag: 'system',
      access: ['integration'],
      responses: { 200: { description: 'Prometheus text exposition format.', schema: { type: 'string' }, contentType: 'text/plain' } },
      handler: async ({ res }) => {
        res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
      },
    },
    {
      method: 'get',
      path: '/openapi.json',
      summary: 'This document: OpenAPI 3.1 of every route.',
      tag: 'system',
      access: ['staff', 'integration'],
      responses: { 200: { description: 'The OpenAPI document.', schema: { type: 'object' } } },
      handler: () => document(),
    },
  ];
}
