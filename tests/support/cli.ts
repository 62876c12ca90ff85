/**
 * Runs the real `settle` command in a child process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Output and exit code of a finished command. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `settle ...args` to completion. */
export async function runCli(args: string[], env: Record<string, string | undefined>, timeoutMs = 60_000): Promise<CliResult> {
  const child = spawn(process.execPath, ['bin/settle.js', ...args], { cwd: ROOT, env: { ...process.env, SETTLE_DEMO: 'off', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = await once(child, 'exit');
  clearTimeout(timer);
  return { code: code as number | null, stdout, stderr };
}

/** A long-running `settle` process (start, serve, worker). */
export interface EngineProcess {
  child: ChildProcess;
  /** The API URL it printed. */
  url: Promise<string>;
  exited: Promise<number | null>;
  output(): string;
}

const running = new Set<ChildProcess>();

/** Kills every engine {@link spawnEngine} started that is still running (a failed test leaves them behind). */
export function killEngines(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}

/** Starts `settle <mode>` and resolves its URL once it prints it (SETTLE_DEMO defaults to off here: pass it to test the demo). */
export function spawnEngine(mode: 'start' | 'serve' | 'worker', env: Record<string, string | undefined>): EngineProcess {
  const child = spawn(process.execPath, ['bin/settle.js', mode], { cwd: ROOT, env: { ...process.env, SETTLE_PORT: '0', SETTLE_DEMO: 'off', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  running.add(child);
  const exited = once(child, 'exit').then(([code]) => {
    running.delete(child);
    return code as number | null;
  });
  const url = new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', () => {
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match) resolve(match[1]);
    });
    exited.then((code) => reject(new Error(`settle ${mode} exited with ${code}:\n${output}`)));
  });
  return { child, url, exited, output: () => output };
}

/** Polls until `condition` holds; on timeout the error carries `context()` (say, the engine's output). */
export async function waitFor(condition: () => Promise<boolean>, timeoutMs: number, what: string, context?: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${context ? `:\n${context()}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
