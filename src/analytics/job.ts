/**
 * The `analytics.refresh` job: keeps each practice's analytics rollup fresh, so the measures reflect what was
 * posted within minutes. It runs every {@link ANALYTICS_REFRESH_INTERVAL} and refreshes each practice whose rollup
 * is at least that old and at least {@link REFRESH_COST_FACTOR} times as old as its last refresh took (a small
 * practice every minute; one whose refresh takes two minutes every ten, so refreshing never takes more than a
 * fifth of a worker's time). With `practiceId` it refreshes that practice now. `POST /analytics/refresh` and
 * `settle analytics refresh` refresh on demand.
 */
import type { Logger } from '../config/logger.ts';
import type { JobDefinition } from '../scheduler/scheduler.ts';
import type { Database } from '../store/database.ts';
import { refreshRollup, type RollupRefresh } from './rollup.ts';

/** The job's name. */
export const ANALYTICS_REFRESH_JOB = 'analytics.refresh';

/** How often the job looks for rollups to refresh (an Agenda interval), and the youngest rollup it refreshes. */
export const ANALYTICS_REFRESH_INTERVAL = '1 minute';

/** A rollup is refreshed once it is this many times as old as its last refresh took. */
export const REFRESH_COST_FACTOR = 5;

/** The practices whose rollup is due: never refreshed, or old enough (see the module's TSDoc). */
export async function dueRollups(db: Database): Promise<string[]> {
  const { rows } = await db.pool.query<{ id: string }>(
    `SELECT p.id FROM practices p LEFT JOIN analytics_refreshes r ON r.practice_id = p.id
     WHERE r.as_of IS NULL
        OR now() - r.as_of >= greatest(interval '${ANALYTICS_REFRESH_INTERVAL}', r.duration_ms * ${REFRESH_COST_FACTOR} * interval '1 millisecond')
     ORDER BY r.as_of NULLS FIRST, p.id`,
  );
  return rows.map((r) => r.id);
}

/** The refresh job. */
export function analyticsRefreshJob(deps: { db: Database; logger: Logger }): JobDefinition<{ practiceId?: string }> {
  return {
    name: ANALYTICS_REFRESH_JOB,
    concurrency: 1,
    // A large practice's refresh reads its whole ledger: give it time before another worker may take it over.
    lockLifetimeMs: 30 * 60_000,
    async run(data) {
      const practiceIds = data?.practiceId ? [data.practiceId] : await dueRollups(deps.db);
      for (const practiceId of practiceIds) {
        const refresh: RollupRefresh = await refreshRollup(deps.db.pool, practiceId);
        deps.logger.info('analytics rollup refreshed', { practiceId, asOf: refresh.asOf.toISOString(), durationMs: refresh.durationMs });
      }
    },
  };
}
