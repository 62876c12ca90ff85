/**
 * Message store administration shared by the API and the CLI: viewing a message (a PHI view, audited),
 * reprocessing, the retention job `hl7.retention`, and the per-status gauge on `/metrics`.
 */
import { Gauge, type Registry } from 'prom-client';
import type { DataFile } from '../../config/data-files.ts';
import type { Logger } from '../../config/logger.ts';
import type { Clock } from '../../domain/clock.ts';
import type { JobDefinition } from '../../scheduler/scheduler.ts';
import { AuditLog } from '../../store/audit.ts';
import { withTransaction, type Database } from '../../store/database.ts';
import {
  Hl7MessageAdmin,
  Hl7MessageRepository,
  isHl7MessageId,
  type Hl7MessageFilter,
  type Hl7MessageRecord,
  type ReprocessResult,
} from '../../store/hl7-messages.ts';
import type { Hl7v2MllpConnector } from './mllp-server.ts';

/** The name of the retention job. */
export const HL7_RETENTION_JOB = 'hl7.retention';

/** Audit actions of the message store. */
export const HL7_AUDIT = {
  view: 'hl7.message.view',
  reprocess: 'hl7.message.reprocess',
  prune: 'hl7.message.prune',
} as const;

/**
 * Reads one message of a practice with its content, recording the view in the audit trail first (same
 * transaction: no audit event, no content).
 * @returns undefined when the practice has no such message (nothing is audited then).
 */
export async function viewHl7Message(
  db: Database,
  clock: Clock,
  request: { practiceId: string; id: string; actor: string },
): Promise<Hl7MessageRecord | undefined> {
  if (!isHl7MessageId(request.id)) return undefined;
  return withTransaction(db, async (tx) => {
    const message = await new Hl7MessageRepository(tx).findById(request.practiceId, request.id);
    if (!message) return undefined;
    await new AuditLog(db, clock).append(
      {
        practiceId: request.practiceId,
        actor: request.actor,
        action: HL7_AUDIT.view,
        entityType: 'hl7_message',
        entityId: message.id,
        detail: { connector: message.connector, messageType: message.messageType, controlId: message.controlId },
      },
      tx,
    );
    return message;
  });
}

/** Thrown when a reprocess request has no criterion (reprocessing everything must be asked for by a filter). */
export class EmptyFilterError extends Error {
  constructor() {
    super('give at least one filter (id, type, status, sender, connector, control id, since, until)');
    this.name = 'EmptyFilterError';
  }
}

/**
 * Marks the matching messages of a practice for processing again (status back to `received`), and audits
 * what was asked and how many changed.
 * @throws EmptyFilterError when the filter has no criterion.
 */
export async function reprocessHl7Messages(
  db: Database,
  clock: Clock,
  request: { practiceId: string; filter: Hl7MessageFilter; actor: string },
): Promise<ReprocessResult> {
  if (!Object.values(request.filter).some((v) => v !== undefined)) throw new EmptyFilterError();
  return withTransaction(db, async (tx) => {
    const result = await new Hl7MessageAdmin(tx).reprocess(request.practiceId, request.filter, clock.now());
    await new AuditLog(db, clock).append(
      {
        practiceId: request.practiceId,
        actor: request.actor,
        action: HL7_AUDIT.reprocess,
        entityType: 'hl7_message',
        entityId: request.filter.ids?.length === 1 ? request.filter.ids[0] : null,
        detail: { filter: describeFilter(request.filter), ...result },
      },
      tx,
    );
    return result;
  });
}

/** A filter as JSON for audit details and logs (ids, types, statuses, dates: no PHI). */
export function describeFilter(filter: Hl7MessageFilter): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(filter)) {
    if (value === undefined) continue;
    out[key] = value instanceof Date ? value.toISOString() : value;
  }
  return out;
}

/** What one retention run pruned for one connector. */
export interface RetentionReport {
  connector: string;
  retentionDays: number;
  cutoff: Date;
  /** Total deleted, and per practice. */
  count: number;
  practices: Array<{ practiceId: string; count: number }>;
}

/** The `hl7v2-mllp` connectors among connector data files. */
export function hl7Connectors(connectors: readonly (DataFile | Hl7v2MllpConnector)[]): Hl7v2MllpConnector[] {
  return connectors
    .map((c) => ('data' in c ? c.data : c) as unknown as Hl7v2MllpConnector)
    .filter((c) => c.transport === 'hl7v2-mllp');
}

/**
 * Prunes, for each connector, `processed` messages received more than its `retentionDays` ago. `received`
 * and `failed` messages are never deleted, nor messages of connectors no longer configured. Each practice
 * that lost messages gets an `hl7.message.prune` audit event; each connector's count is logged.
 */
export async function runHl7Retention(deps: {
  db: Database;
  clock: Clock;
  logger: Logger;
  connectors: readonly (DataFile | Hl7v2MllpConnector)[];
}): Promise<RetentionReport[]> {
  const admin = new Hl7MessageAdmin(deps.db.pool);
  const audit = new AuditLog(deps.db, deps.clock);
  const reports: RetentionReport[] = [];
  for (const connector of hl7Connectors(deps.connectors)) {
    const cutoff = new Date(deps.clock.now().getTime() - connector.retentionDays * 86_400_000);
    const practices = await admin.pruneProcessed(connector.name, cutoff);
    const count = practices.reduce((sum, p) => sum + p.count, 0);
    for (const p of practices) {
      await audit.append({
        practiceId: p.practiceId,
        actor: 'system',
        action: HL7_AUDIT.prune,
        entityType: 'hl7_message',
        detail: { connector: connector.name, count: p.count, retentionDays: connector.retentionDays, receivedBefore: cutoff.toISOString() },
      });
    }
    deps.logger.info('hl7 retention', { connector: connector.name, pruned: count, retentionDays: connector.retentionDays, receivedBefore: cutoff.toISOString() });
    reports.push({ connector: connector.name, retentionDays: connector.retentionDays, cutoff, count, practices });
  }
  return reports;
}

/** The `hl7.retention` job: {@link runHl7Retention} over the configured connectors. Schedule it daily. */
export function hl7RetentionJob(deps: {
  db: Database;
  clock: Clock;
  logger: Logger;
  connectors: readonly (DataFile | Hl7v2MllpConnector)[];
}): JobDefinition<Record<string, never>> {
  return {
    name: HL7_RETENTION_JOB,
    concurrency: 1,
    async run() {
      await runHl7Retention(deps);
    },
  };
}

/**
 * Registers `settle_hl7_messages{connector,status}` (messages in the store, read from the database at each
 * scrape) on a registry. A scrape while the database is unreachable reports the gauge empty rather than failing.
 */
export function registerHl7Metrics(registry: Registry, db: Pick<Database, 'pool'>): Gauge<'connector' | 'status'> {
  const admin = new Hl7MessageAdmin(db.pool);
  return new Gauge({
    name: 'settle_hl7_messages',
    help: 'HL7v2 messages in the message store, by connector and status (received, processed, failed).',
    labelNames: ['connector', 'status'],
    registers: [registry],
    async collect() {
      this.reset();
      try {
        const rows = await admin.countsByConnectorAndStatus();
        // Every status of every connector, zeros included, so an alert on `failed > 0` has a series to watch.
        for (const connector of new Set(rows.map((r) => r.connector))) {
          for (const status of ['received', 'processed', 'failed']) this.set({ connector, status }, 0);
        }
        for (const row of rows) this.set({ connector: row.connector, status: row.status }, row.count);
      } catch {
        // Unreachable or not yet migrated: /readyz says why; the gauge stays empty.
      }
    },
  });
}
