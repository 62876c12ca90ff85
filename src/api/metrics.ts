/**
 * Prometheus metrics: HTTP latency, job counts and durations, and the process's own.
 */
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import type { JobOutcome } from '../scheduler/scheduler.ts';

/** The metrics of one engine process. */
export class EngineMetrics {
  readonly registry = new Registry();
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  readonly jobs: Counter<'name' | 'outcome'>;
  readonly jobDuration: Histogram<'name'>;

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'settle_' });
    this.httpDuration = new Histogram({
      name: 'settle_http_request_duration_seconds',
      help: 'HTTP request latency by route pattern and status.',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [this.registry],
    });
    this.jobs = new Counter({
      name: 'settle_jobs_total',
      help: 'Jobs run by this process, by job name and outcome (success, failure).',
      labelNames: ['name', 'outcome'],
      registers: [this.registry],
    });
    this.jobDuration = new Histogram({
      name: 'settle_job_duration_seconds',
      help: 'Job run time by job name.',
      labelNames: ['name'],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300],
      registers: [this.registry],
    });
  }

  /** Records one job run. */
  recordJob(outcome: JobOutcome): void {
    this.jobs.inc({ name: outcome.name, outcome: outcome.error ? 'failure' : 'success' });
    this.jobDuration.observe({ name: outcome.name }, outcome.durationMs / 1000);
  }
}
