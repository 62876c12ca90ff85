/**
 * Runs `sync-child.ts` (a sync or a Bulk import in a process of its own, for the kill tests) and collects what it
 * printed.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { Database } from '../../../src/store/database.ts';

const CHILD = fileURLToPath(new URL('./sync-child.ts', import.meta.url));

/** What the child did: its pid, how it ended, the JSON lines it printed. */
export interface ChildResult {
  pid: number;
  code: number | null;
  signal: string | null;
  lines: Record<string, unknown>[];
  stderr: string;
}

/** Runs the child with `input` (see sync-child.ts) until it exits or is killed. */
export async function runChild(input: Record<string, unknown>): Promise<ChildResult> {
  const child = spawn(process.execPath, [CHILD], { env: { ...process.env, SYNC_CHILD: JSON.stringify(input) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
  return { pid: child.pid!, code, signal, stderr, lines: stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/** The URL another process uses to reach the same database (the embedded one through its loopback server). */
export function urlOf(db: Database): string {
  const c = db.connection;
  return c.connectionString ?? `postgresql://${c.user}@${c.host}:${c.port}/${c.database}`;
}
