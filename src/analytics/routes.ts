/**
 * Analytics over the API: `GET /analytics/{measure}?from=&to=` answers JSON, or CSV with `Accept: text/csv` or
 * `?format=csv` (a download; every CSV export is recorded in the audit trail as `analytics.export`).
 * `GET /analytics` lists the measures; `POST /analytics/refresh` refreshes the practice's analytics rollup now.
 */
import { ApiError } from '../api/problem.ts';
import type { AnyRoute, JsonSchema, RouteContext } from '../api/routes.ts';
import type { Clock } from '../domain/clock.ts';
import { AuditLog } from '../store/audit.ts';
import type { Database } from '../store/database.ts';
import { PracticeRepository } from '../store/practices.ts';
import { toCsv } from './csv.ts';
import { MEASURES, type MeasureOptions } from './index.ts';
import { PeriodError, resolvePeriod } from './period.ts';
import { ROI_DEFAULTS } from './roi.ts';
import { refreshRollup } from './rollup.ts';
import { MEASURE_NAMES, type MeasureName } from './types.ts';

/** What the analytics routes need. */
export interface AnalyticsRoutesDeps {
  db: Database;
  clock: Clock;
}

interface AnalyticsQuery extends MeasureOptions {
  from?: string;
  to?: string;
  currency: string;
  format?: 'json' | 'csv';
}

const BASE_QUERY: Record<string, JsonSchema> = {
  from: { type: 'string', format: 'date', description: 'First day (YYYY-MM-DD, practice time zone, inclusive). Default: the first day of the month 11 months back.' },
  to: { type: 'string', format: 'date', description: 'Last day (YYYY-MM-DD, practice time zone, inclusive). Default: today.' },
  currency: { type: 'string', pattern: '^[A-Z]{3}$', default: 'USD', description: 'ISO 4217; other currencies are left out, never converted.' },
  format: { enum: ['json', 'csv'], description: 'csv: a CSV download (also chosen by `Accept: text/csv`); audited.' },
};

const EXTRA_QUERY: Partial<Record<MeasureName, Record<string, JsonSchema>>> = {
  'unpaid-by-service-code': { limit: { type: 'integer', minimum: 1, maximum: 100, default: 20, description: 'How many service codes.' } },
  roi: {
    agencyCommissionPercent: {
      type: 'number', minimum: 0, maximum: 100, multipleOf: 0.01, default: ROI_DEFAULTS.agencyCommissionPercent,
      description: 'What a collection agency would keep, in percent.',
    },
    minutesPerCall: { type: 'integer', minimum: 0, maximum: 240, default: ROI_DEFAULTS.minutesPerCall, description: 'Staff minutes one phone call takes.' },
  },
};

const RESULT_SCHEMA: JsonSchema = {
  type: 'object',
  required: ['measure', 'from', 'to', 'currency', 'asOf', 'columns', 'rows'],
  properties: {
    measure: { enum: [...MEASURE_NAMES] },
    from: { type: 'string', format: 'date' },
    to: { type: 'string', format: 'date' },
    currency: { type: 'string' },
    asOf: {
      type: 'string', format: 'date-time',
      description: 'The instant the figures reflect: the last refresh of the analytics rollup (every few minutes, or POST /analytics/refresh); for plans, the time of the query.',
    },
    columns: { type: 'array', items: { type: 'string' }, description: 'Row fields in CSV column order; amounts (…Minor) are integer minor units.' },
    rows: { type: 'array', items: { type: 'object' } },
  },
};

function wantsCsv(ctx: RouteContext<unknown, AnalyticsQuery>): boolean {
  if (ctx.query.format) return ctx.query.format === 'csv';
  const accept = ctx.req.get('accept') ?? '';
  return /\btext\/csv\b/i.test(accept) && ctx.req.accepts(['application/json', 'text/csv']) === 'text/csv';
}

/** The analytics routes. */
export function analyticsRoutes(deps: AnalyticsRoutesDeps): AnyRoute[] {
  const practices = new PracticeRepository(deps.db.pool);
  const audit = new AuditLog(deps.db, deps.clock);
  const measureRoute = (name: MeasureName): AnyRoute => ({
    method: 'get',
    path: `/analytics/${name}`,
    summary: `${MEASURES[name].title}. JSON, or CSV with Accept: text/csv or ?format=csv (audited). See the README for the definition.`,
    tag: 'analytics',
    access: ['staff', 'integration'],
    query: { type: 'object', additionalProperties: false, properties: { ...BASE_QUERY, ...EXTRA_QUERY[name] } },
    responses: {
      200: { description: 'The measure over the period.', schema: RESULT_SCHEMA },
    },
    handler: async (ctx: RouteContext<unknown, AnalyticsQuery>) => {
      const practiceId = ctx.principal!.practiceId;
      const practice = await practices.findById(practiceId);
      let dates;
      try {
        dates = resolvePeriod({ from: ctx.query.from, to: ctx.query.to }, deps.clock, practice?.timeZone ?? 'UTC');
      } catch (error) {
        if (error instanceof PeriodError) throw new ApiError(400, 'invalid_request', 'The query is invalid.', [{ path: error.path, message: error.message }]);
        throw error;
      }
      const period = { practiceId, ...dates, currency: ctx.query.currency };
      let result;
      try {
        result = await MEASURES[name].run(deps.db.pool, period, ctx.query);
      } catch (error) {
        if (error instanceof RangeError) throw new ApiError(400, 'invalid_request', error.message);
        throw error;
      }
      if (!wantsCsv(ctx)) return result;
      await audit.append({
        practiceId,
        actor: `apikey:${ctx.principal!.keyId}`,
        action: 'analytics.export',
        entityType: 'analytics',
        entityId: name,
        detail: { format: 'csv', from: period.from, to: period.to, currency: period.currency, rows: result.rows.length },
      });
      ctx.res
        .status(200)
        .type('text/csv; charset=utf-8')
        .attachment(`settle-${name}-${period.from}-to-${period.to}.csv`)
        .send(toCsv(result as Parameters<typeof toCsv>[0]));
      return undefined;
    },
  });
  return [
    {
      method: 'get',
      path: '/analytics',
      summary: 'The analytics measures, each at GET /analytics/{measure}.',
      tag: 'analytics',
      access: ['staff', 'integration'],
      responses: {
        200: {
          description: 'The measures.',
          schema: { type: 'object', properties: { measures: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, title: { type: 'string' }, path: { type: 'string' } } } } } },
        },
      },
      handler: () => ({ measures: MEASURE_NAMES.map((name) => ({ name, title: MEASURES[name].title, path: `/analytics/${name}` })) }),
    },
    {
      method: 'post',
      path: '/analytics/refresh',
      summary: 'Refreshes the caller\'s practice\'s analytics rollup now (the analytics.refresh job does every few minutes), so the measures reflect everything posted so far.',
      tag: 'analytics',
      access: ['staff', 'integration'],
      responses: {
        200: {
          description: 'The refresh: the instant the measures now reflect, and how long it took.',
          schema: { type: 'object', required: ['asOf', 'durationMs'], properties: { asOf: { type: 'string', format: 'date-time' }, durationMs: { type: 'integer' } } },
        },
      },
      handler: async (ctx: RouteContext<unknown, unknown>) => {
        const refresh = await refreshRollup(deps.db.pool, ctx.principal!.practiceId);
        return { asOf: refresh.asOf.toISOString(), durationMs: refresh.durationMs };
      },
    },
    ...MEASURE_NAMES.map(measureRoute),
  ];
}
