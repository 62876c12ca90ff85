/**
 * Staff API over write-backs: RouteSpecs for the API to mount, and their metric.
 *   GET  /writebacks                  counts by status and the practice's write-backs, newest first (?status=dead)
 *   GET  /writebacks/{id}             one write-back, by row id or write-back id (payment-…)
 *   POST /writebacks/{id}/replay      puts a failed or dead write-back back in line, due now (409 otherwise)
 *   GET  /payments/{id}/writebacks    the write-backs of one payment and where each stands
 * Responses carry ids, amounts, states and the EHR's own error text, never patient details.
 */
import type { Registry } from 'prom-client';
import { Gauge } from 'prom-client';
import { ApiError } from '../api/problem.ts';
import type { AnyRoute, JsonSchema } from '../api/routes.ts';
import type { Clock } from '../domain/clock.ts';
import { AuditLog } from '../store/audit.ts';
import type { Database } from '../store/database.ts';
import { PaymentRepository, type WritebackRow } from '../store/payments.ts';

/** What the write-back routes need. */
export interface WritebackRoutesDeps {
  db: Database;
  clock: Clock;
  /** Where to register the `settle_writebacks` gauge (the engine's metrics registry), when given. */
  metrics?: { registry: Registry };
  /** Called after a replay, to wake the delivery job (the engine's `enqueueSoon('writeback.deliver')`). */
  onReplay?: () => void;
}

const STATUSES = ['pending', 'delivered', 'failed', 'dead'] as const;

const WRITEBACK_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    id: { type: 'string', format: 'uuid' }, writebackId: { type: 'string' }, controlId: { type: 'string', maxLength: 16, description: 'The HL7 MSH-10 it is sent with' },
    paymentId: { type: 'string', format: 'uuid' },
    kind: { enum: ['payment', 'refund', 'reversal'] }, amountMinor: { type: 'integer' }, currency: { type: 'string' },
    allocations: { type: 'array', items: { type: 'object', properties: { balanceId: { type: 'string' }, amountMinor: { type: 'integer' } } } },
    status: { enum: [...STATUSES] }, attempts: { type: 'integer' }, nextAttemptAt: { type: 'string', format: 'date-time' },
    lastAttemptAt: { type: ['string', 'null'], format: 'date-time' }, lastError: { type: ['string', 'null'] }, target: { type: ['string', 'null'] },
    deliveredAt: { type: ['string', 'null'], format: 'date-time' }, deliveredRef: { type: ['string', 'null'] }, createdAt: { type: 'string', format: 'date-time' },
  },
};

/** A write-back as the API shows it (amounts in minor units). */
export function writebackView(row: WritebackRow) {
  return {
    id: row.id, writebackId: row.writebackId, controlId: row.controlId, paymentId: row.paymentId, kind: row.kind, amountMinor: row.amount.amount, currency: row.amount.currency,
    allocations: row.allocations, status: row.status, attempts: row.attempts, nextAttemptAt: row.nextAttemptAt.toISOString(),
    lastAttemptAt: row.lastAttemptAt?.toISOString() ?? null, lastError: row.lastError, target: row.target,
    deliveredAt: row.deliveredAt?.toISOString() ?? null, deliveredRef: row.deliveredRef, createdAt: row.createdAt.toISOString(),
  };
}

/** Registers `settle_writebacks{status}` (counted in the database at each scrape) unless already there. */
export function registerWritebackMetrics(registry: Registry, db: Database, clock: Clock): void {
  if (registry.getSingleMetric('settle_writebacks')) return;
  const repo = new PaymentRepository(db.pool, clock);
  new Gauge({
    name: 'settle_writebacks',
    help: 'Write-backs in the outbox by status (pending, delivered, failed, dead), all practices.',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      const counts = await repo.writebackCounts();
      for (const status of STATUSES) this.set({ status }, counts[status]);
    },
  });
}

/** The write-back routes. */
export function writebackRoutes(deps: WritebackRoutesDeps): AnyRoute[] {
  const payments = new PaymentRepository(deps.db.pool, deps.clock);
  const audit = new AuditLog(deps.db, deps.clock);
  if (deps.metrics) registerWritebackMetrics(deps.metrics.registry, deps.db, deps.clock);
  return [
    {
      method: 'get',
      path: '/writebacks',
      summary: "The practice's write-backs to its EHR, newest first, with counts by status.",
      tag: 'payments',
      access: ['staff', 'integration'],
      query: {
        type: 'object',
        additionalProperties: false,
        properties: {
          status: { enum: [...STATUSES] },
          limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
          offset: { type: 'integer', minimum: 0, default: 0 },
        },
      },
      responses: {
        200: {
          description: 'Counts by status and a page of write-backs.',
          schema: { type: 'object', properties: { counts: { type: 'object' }, writebacks: { type: 'array', items: WRITEBACK_SCHEMA } } },
        },
      },
      async handler({ principal, query }) {
        const q = query as { status?: (typeof STATUSES)[number]; limit: number; offset: number };
        const [counts, rows] = await Promise.all([
          payments.writebackCounts(principal!.practiceId),
          payments.listWritebacks(principal!.practiceId, { status: q.status, limit: q.limit, offset: q.offset }),
        ]);
        return { counts, writebacks: rows.map(writebackView) };
      },
    },
    {
      method: 'get',
      path: '/writebacks/{id}',
      summary: 'One write-back, by its row id or its write-back id (payment-…, refund-…, reversal-…).',
      tag: 'payments',
      access: ['staff', 'integration'],
      responses: { 200: { description: 'The write-back.', schema: WRITEBACK_SCHEMA }, 404: { description: 'No such write-back in this practice.' } },
      async handler({ principal, params }) {
        const row = await payments.getWriteback(principal!.practiceId, params.id!);
        if (!row) throw new ApiError(404, 'not_found', `No write-back ${params.id} in this practice.`);
        return writebackView(row);
      },
    },
    {
      method: 'post',
      path: '/writebacks/{id}/replay',
      summary: 'Put a failed or dead-lettered write-back back in line, due now, with its attempts reset (audited).',
      tag: 'payments',
      access: ['staff'],
      responses: {
        200: { description: 'Replayed: the write-back as it is now (pending).', schema: { type: 'object', properties: { replayed: { type: 'boolean' }, writeback: WRITEBACK_SCHEMA } } },
        404: { description: 'No such write-back in this practice.' },
        409: { description: 'The write-back is delivered or already waiting: nothing to replay.' },
      },
      async handler({ principal, params }) {
        const result = await payments.replayWriteback(principal!.practiceId, params.id!);
        if (!result) throw new ApiError(404, 'not_found', `No write-back ${params.id} in this practice.`);
        if (!result.replayed) {
          throw new ApiError(409, 'writeback_not_replayable', `Write-back ${result.row.writebackId} is ${result.row.status}: only failed or dead write-backs are replayed.`);
        }
        await audit.append({
          practiceId: principal!.practiceId, actor: `apikey:${principal!.keyId}`, action: 'writeback.replay',
          entityType: 'writeback', entityId: result.row.id, detail: { writebackId: result.row.writebackId },
        });
        deps.onReplay?.();
        return { replayed: true, writeback: writebackView(result.row) };
      },
    },
    {
      method: 'get',
      path: '/payments/{id}/writebacks',
      summary: 'The write-backs of one payment (the payment, its refunds and reversals) and where each stands.',
      tag: 'payments',
      access: ['staff', 'integration'],
      responses: {
        200: { description: 'The write-backs, oldest first.', schema: { type: 'object', properties: { paymentId: { type: 'string' }, writebacks: { type: 'array', items: WRITEBACK_SCHEMA } } } },
        404: { description: 'No such payment in this practice.' },
      },
      async handler({ principal, params }) {
        const payment = await payments.get(principal!.practiceId, params.id!);
        if (!payment) throw new ApiError(404, 'not_found', `No payment ${params.id} in this practice.`);
        return { paymentId: payment.id, writebacks: (await payments.writebacks(principal!.practiceId, payment.id)).map(writebackView) };
      },
    },
  ];
}
