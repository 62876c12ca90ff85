/**
 * Where the fast-forwarded demo's time goes: wall time per step (each engine job it runs, and its own steps: the
 * practice-management system's visits, the patients' answers, the registration consents), so a slow run can be
 * traced to the stage that owns it. `settle demo --timings` prints it.
 */

/** One step's total. */
export interface StepTotal {
  step: string;
  runs: number;
  ms: number;
}

/**
 * Accumulates wall time per step. The time warp's steps run one after another; a step may be timed inside another
 * (`payments: checkout` inside `demo: answers`), and then its time is part of both.
 */
export class StepTimings {
  readonly #steps = new Map<string, StepTotal>();
  readonly #started = performance.now();

  /** Runs `work`, adding its wall time to `step`. */
  async time<T>(step: string, work: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await work();
    } finally {
      const total = this.#steps.get(step) ?? { step, runs: 0, ms: 0 };
      total.runs++;
      total.ms += performance.now() - started;
      this.#steps.set(step, total);
    }
  }

  /** The steps, slowest first. */
  totals(): StepTotal[] {
    return [...this.#steps.values()].sort((a, b) => b.ms - a.ms);
  }

  /** The table as printed: each step's runs, seconds and share of the wall time since this collector was made. */
  text(): string {
    const wall = performance.now() - this.#started;
    const rows = this.totals().map((t) => `  ${t.step.padEnd(32)} ${String(t.runs).padStart(6)} runs ${(t.ms / 1000).toFixed(1).padStart(8)} s ${((100 * t.ms) / wall).toFixed(1).padStart(5)} %`);
    return [`Where the time went (wall ${(wall / 1000).toFixed(1)} s):`, ...rows].join('\n');
  }
}
