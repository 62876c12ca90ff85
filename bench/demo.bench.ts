/**
 * The demo on a fresh machine, through the real command in a fresh temporary data directory (removed afterwards),
 * run the way package.json runs it (`npm run settle`, `npm start`: the same Node flags):
 *
 * - `settle demo --days 90 --timings` until it exits: issue 8 asks for 90 days of cadence in about a minute (target
 *   ~60 s); also its CPU seconds, from the timings it prints;
 * - `npm start` (`settle start`) until the demo's dashboard is populated, i.e. it prints the DEMO ready line with
 *   the staff key: issue 8 asks for a populated dashboard within 2 minutes.
 *
 * Each line names the load average when the run ended: on a shared machine the wall time follows it.
 * BENCH_DEMO_DAYS runs fewer days (a quick check of the benchmark itself).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../tests/support/cli.ts';
import { demoStaffKey, FRESH_ENV } from '../tests/demo/fresh-machine.ts';

const DAYS = Number(process.env.BENCH_DEMO_DAYS ?? 90);
const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;

/** The Node arguments of an npm script `node <flags…> <file> <args…>`. */
function scriptArgs(name: string): string[] {
  const [node, ...args] = scripts[name]!.split(/\s+/);
  if (node !== 'node') throw new Error(`bench/demo: the npm script ${name} does not start with node: ${scripts[name]}`);
  return args;
}

/**
 * Runs the command in a fresh data directory until `done(output)` holds (or, without it, until it exits with 0).
 * @returns seconds from spawn to that moment, and the output.
 */
async function timed(args: string[], done: ((output: string) => boolean) | undefined, timeoutMs: number): Promise<{ seconds: number; output: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'settle-bench-demo-'));
  const started = performance.now();
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, ...FRESH_ENV, SETTLE_DATA_DIR: dataDir, SETTLE_CONFIG_DIR: ROOT, SETTLE_PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
  try {
    const seconds = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`bench/demo: ${args.join(' ')} took over ${timeoutMs / 1000} s:\n${output}`)), timeoutMs);
      const check = (chunk: Buffer) => {
        output += chunk;
        if (done?.(output)) resolve((performance.now() - started) / 1000);
      };
      child.stdout.on('data', check);
      child.stderr.on('data', check);
      void exited.then(([code]) => {
        clearTimeout(timer);
        if (!done && code === 0) resolve((performance.now() - started) / 1000);
        else reject(new Error(`bench/demo: ${args.join(' ')} exited with ${code}:\n${output}`));
      });
    });
    return { seconds, output };
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const load = () => `load ${loadavg()[0]!.toFixed(2)}`;

// --timings: the demo's own CPU seconds (the embedded database runs in its process), which on a shared machine
// compares two runs better than the wall time does.
const demo = await timed([...scriptArgs('settle'), 'demo', '--days', String(DAYS), '--timings'], undefined, 15 * 60_000);
const balances = /balances\s+(\d+)/.exec(demo.output)?.[1] ?? '?';
const payments = /payments\s+(\d+) succeeded/.exec(demo.output)?.[1] ?? '?';
const cpu = /Where the time went \(wall [\d.]+ s, CPU ([\d.]+) s\)/.exec(demo.output)?.[1] ?? '?';
console.log(`settle demo --days ${DAYS} (fresh embedded data directory; 2,000 patients, ${balances} balances, ${payments} sandbox payments): ${demo.seconds.toFixed(1)} s, ${cpu} s of CPU (target ~${Math.round((60 * DAYS) / 90)} s; ${load()})`);

const start = await timed(scriptArgs('start'), (output) => demoStaffKey(output) !== undefined, 10 * 60_000);
console.log(`npm start to a populated demo dashboard (fresh data directory, until the DEMO ready line with the staff key): ${start.seconds.toFixed(1)} s (target ≤ 120 s; ${load()})`);
