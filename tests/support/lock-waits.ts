/**
 * Waiting, in concurrency tests on the PostgreSQL server, until one transaction is blocked by another.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Queryable } from '../../src/store/database.ts';

/**
 * Resolves once some backend waits for the open transaction of `holder` (a row lock or a unique-key check on a
 * version it has not committed), polling `pg_locks` through `observer`; rejects after about 5 seconds of no one waiting.
 */
export async function waitUntilBlockedBy(observer: Queryable, holder: { query(text: string): Promise<{ rows: { pid: number }[] }> }): Promise<void> {
  const { pid } = (await holder.query('SELECT pg_backend_pid() AS pid')).rows[0]!;
  for (let tries = 0; tries < 500; tries++) {
    const { rows: waiting } = await observer.query(
      `SELECT 1 FROM pg_locks w JOIN pg_locks h ON h.locktype = 'transactionid' AND h.transactionid = w.transactionid AND h.granted
       WHERE w.locktype = 'transactionid' AND NOT w.granted AND h.pid = $1`,
      [pid],
    );
    if (waiting.length > 0) return;
    await sleep(10);
  }
  throw new Error(`nothing ever waited for backend ${pid}`);
}
