/**
 * Agenda 6 on Settle's database, with a registry where each stage declares its jobs.
 *
 * On a PostgreSQL server, workers learn about new jobs through LISTEN/NOTIFY; on the embedded database
 * (one process) notifications stay in memory. Row locks (`FOR UPDATE SKIP LOCKED`) give each job to
 * exactly one worker.
 */
import { Agenda, InMemoryNotificationChannel, type Job } from 'agenda';
import { PostgresBackend } from '@agendajs/postgres-backend';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Database } from '../store/database.ts';

/** What a job handler is told besides its data. */
export interface JobContext {
  jobId: string;
  /** Runs so far that failed (0 on the first run). */
  failures: number;
}

/** A kind of job a stage can run. */
export interface JobDefinition<Data = unknown> {
  /** Dotted name, stage first: `fhir.sync`, `writeback.deliver`. */
  name: string;
  run(data: Data, context: JobContext): Promise<void>;
  /** Jobs of this kind one worker runs at once (default: the worker's concurrency). */
  concurrency?: number;
  /** How long a running job holds its lock before another worker may take it over (default 10 minutes). */
  lockLifetimeMs?: number;
}

/** The job kinds of every stage. Stages register here; the scheduler defines them all on start. */
export class JobRegistry {
  private readonly definitions = new Map<string, JobDefinition<never>>();

  /** Adds a job kind. Names are unique. */
  register<Data>(definition: JobDefinition<Data>): void {
    if (this.definitions.has(definition.name)) throw new Error(`job ${definition.name} is registered twice`);
    this.definitions.set(definition.name, definition as JobDefinition<never>);
  }

  /** Every registered job kind, in registration order. */
  list(): JobDefinition<never>[] {
    return [...this.definitions.values()];
  }
}

/** Options for {@link createScheduler}. */
export interface SchedulerOptions {
  db: Database;
  registry: JobRegistry;
  /** Identifies this process in job locks (`worker-<pid>`). */
  name: string;
  /** Jobs this process runs at once. */
  concurrency: number;
  /** How often to look for due jobs when no notification arrives. */
  pollIntervalMs?: number;
}

/** Events a scheduler reports, for metrics and logs. */
export interface JobOutcome {
  name: string;
  jobId: string;
  durationMs: number;
  error?: Error;
}

/** Settle's view of Agenda. */
export class Scheduler {
  readonly agenda: Agenda;
  private processing = false;
  private readonly listeners: ((outcome: JobOutcome) => void)[] = [];
  private readonly troubleListeners: ((error: Error) => void)[] = [];
  /** Jobs started here whose state Agenda has not yet saved. */
  private readonly inFlight = new Set<string>();

  constructor(options: SchedulerOptions) {
    const embedded = options.db.kind === 'embedded';
    const backend = new PostgresBackend({ pool: options.db.pool, ensureSchema: false, disableNotifications: embedded });
    const channel = embedded ? new InMemoryNotificationChannel() : backend.notificationChannel;
    this.agenda = new Agenda({
      backend,
      notificationChannel: channel,
      name: options.name,
      maxConcurrency: options.concurrency,
      defaultConcurrency: options.concurrency,
      processEvery: options.pollIntervalMs ?? 5000,
      defaultLockLifetime: 10 * 60_000,
      // Finished one-off jobs stay for a week as history (the `jobs.prune` job removes them): deleting each
      // on completion costs a query per job, about 30% of job throughput.
      removeOnComplete: false,
    });
    for (const definition of options.registry.list()) {
      this.agenda.define(
        definition.name,
        async (job: Job<unknown>) => {
          const started = performance.now();
          const jobId = String(job.attrs._id);
          this.inFlight.add(jobId);
          try {
            await definition.run(job.attrs.data as never, { jobId, failures: job.attrs.failCount ?? 0 });
            this.report({ name: definition.name, jobId, durationMs: performance.now() - started });
          } catch (error) {
            this.report({ name: definition.name, jobId, durationMs: performance.now() - started, error: error as Error });
            throw error;
          }
        },
        {
          concurrency: definition.concurrency ?? options.concurrency,
          lockLifetime: definition.lockLifetimeMs ?? 10 * 60_000,
        },
      );
    }
    // Agenda emits 'error' for backend trouble; unhandled it would crash the process. So does the
    // notification channel when its LISTEN connection drops (a server restart, a terminated backend): Agenda
    // 6.2.6 attaches no listener there, and the channel reconnects by itself. The listen client goes back to
    // the pool on stop still carrying the channel's listener, so this one stays for the pool's lifetime.
    this.agenda.on('error', (error: Error) => this.reportTrouble(error));
    channel?.on('error', (error: Error) => this.reportTrouble(error));
    // 'complete' comes once Agenda has saved the job's outcome (success or failure). On a server it is
    // also relayed from other workers, as a notification without `attrs`: those are not ours.
    this.agenda.on('complete', (job: Job<unknown> | { jobId?: string }) => {
      if ('attrs' in job) this.inFlight.delete(String(job.attrs._id));
    });
  }

  /** Subscribes to job outcomes. */
  onOutcome(listener: (outcome: JobOutcome) => void): void {
    this.listeners.push(listener);
  }

  private report(outcome: JobOutcome): void {
    for (const listener of this.listeners) listener(outcome);
  }

  /** Subscribes to scheduler trouble that is not a job's own failure (a lost notification connection). */
  onTrouble(listener: (error: Error) => void): void {
    this.troubleListeners.push(listener);
  }

  private reportTrouble(error: Error): void {
    for (const listener of this.troubleListeners) listener(error);
  }

  /** Starts taking jobs (workers). A process that only enqueues never calls this. */
  async start(): Promise<void> {
    await this.agenda.start();
    this.processing = true;
  }

  /** Whether this process is taking jobs. */
  get running(): boolean {
    return this.processing;
  }

  /** Enqueues a job to run as soon as a worker is free. */
  async now<Data>(name: string, data: Data): Promise<string> {
    const job = await this.agenda.now(name, data);
    return String(job.attrs._id);
  }

  /** Enqueues a job for a given time. */
  async at<Data>(when: Date, name: string, data: Data): Promise<string> {
    const job = await this.agenda.schedule(when, name, data);
    return String(job.attrs._id);
  }

  /** Runs a job kind repeatedly ("15 minutes", or a cron expression), once per schedule across workers. */
  async every<Data>(interval: string, name: string, data: Data, timeZone?: string): Promise<void> {
    await this.agenda.every(interval, name, data, { timezone: timeZone });
  }

  /**
   * Stops taking jobs, releases the ones locked here but not started (another worker takes them at once),
   * and lets running ones finish up to `deadlineMs`. Does not close the database.
   * @returns how many jobs were still running at the deadline (their locks expire for another worker).
   */
  async stop(deadlineMs: number): Promise<number> {
    this.processing = false;
    // Agenda's stop() keeps running jobs going (and their locks); its drain() is not used because 6.2.6
    // announces 'complete' before it forgets the job and can wait for the whole deadline.
    await this.agenda.stop(false);
    const deadline = Date.now() + deadlineMs;
    while (this.inFlight.size > 0 && Date.now() < deadline) await sleep(25);
    return this.inFlight.size;
  }
}
