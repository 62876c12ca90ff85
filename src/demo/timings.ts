/**
 * Where the fast-forwarded demo's time goes: wall time per step (each engine job it runs, and its own steps: the
 * practice-management system's visits, the patients' answers, the registration consents), so a slow run can be
 * traced to the stage that owns it, and the process's CPU time in it (user + system: the embedded database runs in
 * this process, so that is all of the step's work, and unlike wall time it hardly moves with the machine's load).
 * `settle demo --timings` prints it.
 */

/** One step's total. */
export interface StepTotal {
  step: string;
  runs: number;
  ms: number;
  /** Process CPU time (user + system) spent while the step ran. */
  cpuMs: number;
}

/** Process CPU time so far, in milliseconds (user + system). */
function cpuNow(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/**
 * Accumulates wall and CPU time per step. The time warp's steps run one after another; a step may be timed inside
 * another (`payments: checkout` inside `demo: answers`), and then its time is part of both.
 */
export class StepTimings {
  readonly #steps = new Map<string, StepTotal>();
  readonly #started = performance.now();
  readonly #cpuStarted = cpuNow();

  /** Runs `work`, adding its wall and CPU time to `step`. */
  async time<T>(step: string, work: () => Promise<T>): Promise<T> {
    const started = performance.now();
    const cpuStarted = cpuNow();
    try {
      return await work();
    } finally {
      const total = this.#steps.get(step) ?? { step, runs: 0, ms: 0, cpuMs: 0 };
      total.runs++;
      total.ms += performance.now() - started;
      total.cpuMs += cpuNow() - cpuStarted;
      this.#steps.set(step, total);
    }
  }

  /** The steps, slowest first. */
  totals(): StepTotal[] {
    return [...this.#steps.values()].sort((a, b) => b.ms - a.ms);
  }

  /** The table as printed: each step's runs, wall seconds and share of the wall time since this collector was made, and CPU seconds. */
  text(): string {
    const wall = performance.now() - this.#started;
    const cpu = cpuNow() - this.#cpuStarted;
    const seconds = (ms: number) => (ms / 1000).toFixed(1).padStart(8);
    const rows = this.totals().map((t) => `  ${t.step.padEnd(32)} ${String(t.runs).padStart(6)} runs ${seconds(t.ms)} s ${((100 * t.ms) / wall).toFixed(1).padStart(5)} % ${seconds(t.cpuMs)} s CPU`);
    return [`Where the time went (wall ${(wall / 1000).toFixed(1)} s, CPU ${(cpu / 1000).toFixed(1)} s):`, ...rows].join('\n');
  }
}
