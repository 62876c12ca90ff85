/**
 * The V8 flags Settle runs with (package.json's scripts, bin/settle.js, the Dockerfile): a bench that measures the
 * engine's own work runs under them too, or it measures a process Settle never is (the young generation's size sets
 * how often the collector runs and how much of a batch's data it copies into the old generation).
 */
import { spawnSync } from 'node:child_process';

/** The flags, as the engine's command lines give them. */
export const ENGINE_NODE_FLAGS = ['--max-semi-space-size=16'] as const;

/**
 * Makes sure the bench at `entry` runs under {@link ENGINE_NODE_FLAGS}: started without them, it runs itself again
 * with them (and the flags it was given, `--expose-gc` say) and exits with that run's status; with them, it returns.
 */
export function runUnderEngineFlags(entry: string): void {
  if (ENGINE_NODE_FLAGS.every((flag) => process.execArgv.includes(flag))) return;
  const run = spawnSync(process.execPath, [...process.execArgv, ...ENGINE_NODE_FLAGS, entry, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(run.status ?? 1);
}
