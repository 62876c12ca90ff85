/**
 * The CPU time of the PostgreSQL server's backends serving a benchmark's database, read from /proc: so only when the
 * server runs on this host (nothing otherwise). With the process's own CPU time, it tells a change apart from other
 * load on the machine better than a rate does.
 */
import { readFileSync } from 'node:fs';
import type { Queryable } from '../src/store/database.ts';

/** CPU milliseconds (user + system) used so far by each backend of the database, by process id (empty when not local). */
export async function backendCpu(db: { pool: Queryable }): Promise<Map<number, number>> {
  const { rows } = await db.pool.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database()');
  const ms = new Map<number, number>();
  for (const { pid } of rows) {
    const used = backendCpuOf(pid);
    if (used !== undefined) ms.set(pid, used);
  }
  return ms;
}

/** CPU milliseconds (user + system) one backend, by process id, has used so far; undefined when it is not on this host. */
export function backendCpuOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10; // utime + stime (fields 14, 15), in clock ticks of 10 ms
  } catch {
    return undefined; // not on this machine, or the backend has gone
  }
}

/** Milliseconds of CPU the backends spent between two {@link backendCpu} readings (a backend started since: all of it); undefined when not local. */
export function backendCpuSince(before: Map<number, number>, after: Map<number, number>): number | undefined {
  if (after.size === 0) return undefined;
  let ms = 0;
  for (const [pid, now] of after) ms += now - (before.get(pid) ?? 0);
  return ms;
}
