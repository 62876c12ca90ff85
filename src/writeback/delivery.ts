/**
 * Delivers the write-back outbox to each practice's EHR, exactly once:
 *
 * - due rows are claimed with `FOR UPDATE SKIP LOCKED` in one short statement (no transaction stays open while
 *   the EHR is called), their attempt counted and a lease set, so two workers never deliver the same row at once
 *   and a worker that dies mid-delivery leaves the row to be claimed again;
 * - FHIR resources are validated (Medplum + HL7's fhir.schema.json) and sent with a conditional create,
 *   `If-None-Exist: identifier=<system>|<write-back id>`, so a redelivery after a lost answer finds the resource
 *   already there and creates nothing; HL7 DFT^P03 goes through the connector's MLLP sender with
 *   MSH-10 = the write-back's stored control id (20 characters at most, the same on every retry; the ACK is
 *   matched to it by MSA-2) and is done only on AA (AE/AR: failed with the peer's reason);
 * - a failed attempt is tried again after exponential backoff with jitter; after the connector's `maxAttempts`
 *   the row is dead-lettered and a `writeback-failed` staff task opened in the same transaction; a rendering or
 *   validation failure is dead at once (trying again cannot help); staff replay it from the API or CLI;
 * - when a target is unreachable (no answer, 5xx) the rest of its batch is given back untried, its attempt not
 *   counted, so an EHR outage of an hour costs each write-back a few attempts, not hundreds.
 *
 * Errors and logs carry ids (write-back, payment, connector), never patient details.
 */
import type { StructureDefinition } from '@medplum/fhirtypes';
import type { DataFile } from '../config/data-files.ts';
import type { Logger } from '../config/logger.ts';
import { createFhirClient, type ClientDependencies } from '../connectors/fhir/connector.ts';
import { FhirError } from '../connectors/fhir/errors.ts';
import type { FhirClient } from '../connectors/fhir/fhir-client.ts';
import { MllpSender } from '../connectors/hl7v2/mllp-sender.ts';
import type { Clock } from '../domain/clock.ts';
import type { MappingRegistry } from '../mapping/load.ts';
import type { JobDefinition } from '../scheduler/scheduler.ts';
import { AuditLog } from '../store/audit.ts';
import { withTransaction, type Database } from '../store/database.ts';
import { PaymentRepository, type WritebackBalance, type WritebackRow } from '../store/payments.ts';
import { PracticeRepository } from '../store/practices.ts';
import { StaffTaskRepository } from '../store/staff-tasks.ts';
import { renderVendorBasic, WritebackMappingError } from './render-basic.ts';
import { renderPaymentReconciliation, type WritebackDocument } from './render-fhir.ts';
import { renderDftP03 } from './render-hl7.ts';
import { nextAttemptDelayMs, writebackTargets, type FhirWritebackTarget, type Hl7WritebackTarget, type WritebackTarget } from './target.ts';
import { assertValidWriteback, WritebackValidationError } from './validate.ts';

/** The job that delivers due write-backs. */
export const WRITEBACK_DELIVER_JOB = 'writeback.deliver';
/** The actor of write-back audit events. */
export const WRITEBACK_ACTOR = 'system:writeback';

/** What delivery needs. */
export interface WritebackDeliveryDeps {
  db: Database;
  clock: Clock;
  logger: Logger;
  /** The connector files (their `writeBack` sections say where each practice's write-backs go). */
  connectors: readonly DataFile[];
  /** For vendor-mapping renderers. */
  mappings: MappingRegistry;
  /** fhir-profiles/ files; PaymentReconciliations are validated against those of their type. */
  profiles: readonly DataFile[];
  /** Passed to the FHIR client of each target (tests: fetch, env). */
  fhir?: ClientDependencies;
  /** Random numbers in [0, 1) for jitter. */
  random?: () => number;
  /** Rows claimed per round (default 100). */
  batchSize?: number;
  /** Deliveries in flight at once within a round (default 16; HL7 sends go one at a time per peer anyway). */
  concurrency?: number;
  /** How long a claimed row is left to its worker before another may take it (default 5 minutes). */
  leaseMs?: number;
}

/** What one {@link WritebackDelivery.deliverDue} run did. */
export interface DeliveryReport {
  claimed: number;
  delivered: number;
  failed: number;
  dead: number;
  /** Given back untried because their target was unreachable this round. */
  deferred: number;
}

/** How one attempt ended. */
type Attempt =
  | { status: 'delivered'; ref: string | null }
  | { status: 'failed'; error: string; unreachable: boolean }
  | { status: 'dead'; error: string };

/** Delivers write-backs; holds the MLLP connections until `close()`. */
export class WritebackDelivery {
  readonly #deps: WritebackDeliveryDeps;
  readonly #targets: Map<string, WritebackTarget>;
  readonly #profiles: StructureDefinition[];
  readonly #clients = new Map<string, FhirClient>();
  readonly #senders = new Map<string, MllpSender>();
  readonly #payments: PaymentRepository;

  /** @throws WritebackConfigError when the connector files name two targets for a practice or a missing mapping. */
  constructor(deps: WritebackDeliveryDeps) {
    this.#deps = deps;
    this.#targets = writebackTargets(deps.connectors, (name) => deps.mappings.get(name) !== undefined);
    this.#profiles = deps.profiles.map((p) => p.data as unknown as StructureDefinition);
    this.#payments = new PaymentRepository(deps.db.pool, deps.clock);
  }

  /** The configured target of a practice (by slug), if any. */
  target(practiceSlug: string): WritebackTarget | undefined {
    return this.#targets.get(practiceSlug);
  }

  /**
   * Claims and delivers due write-backs, round after round, until none is due (or `maxRounds`).
   * @param options.practiceId - only this practice's.
   */
  async deliverDue(options: { practiceId?: string; maxRounds?: number } = {}): Promise<DeliveryReport> {
    const report: DeliveryReport = { claimed: 0, delivered: 0, failed: 0, dead: 0, deferred: 0 };
    const practices = (await new PracticeRepository(this.#deps.db.pool).list()).filter((p) => this.#targets.has(p.slug) && (!options.practiceId || p.id === options.practiceId));
    if (practices.length === 0) return report;
    const slugById = new Map(practices.map((p) => [p.id, p.slug]));
    for (let round = 0; round < (options.maxRounds ?? 1000); round++) {
      const rows = await this.#payments.claimDueWritebacks({ limit: this.#deps.batchSize ?? 100, leaseMs: this.#deps.leaseMs ?? 300_000, practiceIds: [...slugById.keys()] });
      if (rows.length === 0) break;
      report.claimed += rows.length;
      await this.#deliverRound(rows, slugById, report);
      if (rows.length < (this.#deps.batchSize ?? 100)) break;
    }
    if (report.claimed > 0) this.#deps.logger.info('write-backs delivered', { ...report });
    return report;
  }

  /** Closes the MLLP connections. */
  async close(): Promise<void> {
    await Promise.all([...this.#senders.values()].map((s) => s.close()));
    this.#senders.clear();
  }

  async #deliverRound(rows: WritebackRow[], slugById: Map<string, string>, report: DeliveryReport): Promise<void> {
    const balances = new Map<string, WritebackBalance>();
    for (const practiceId of new Set(rows.map((r) => r.practiceId))) {
      const ids = [...new Set(rows.filter((r) => r.practiceId === practiceId).flatMap((r) => r.allocations.map((a) => a.balanceId)))];
      for (const b of await this.#payments.writebackBalances(practiceId, ids)) balances.set(b.balanceId, b);
    }
    const unreachable = new Map<string, Date>(); // connector → when its failed row is tried again
    const delivered: { id: string; target: string; deliveredRef: string | null }[] = [];
    const deliverOne = async (row: WritebackRow) => {
      const target = this.#targets.get(slugById.get(row.practiceId)!)!;
      const retryAt = unreachable.get(target.connector.name);
      if (retryAt) {
        await this.#payments.releaseWriteback(row.id, retryAt);
        report.deferred++;
        return;
      }
      const doc: WritebackDocument = {
        row, connector: target.connector.name, identifierSystem: target.transport === 'fhir-r4' ? target.identifierSystem : '',
        balances: row.allocations.flatMap((a) => balances.get(a.balanceId) ?? []),
      };
      await this.#finish(row, target, await this.#attempt(target, doc), report, unreachable, delivered);
    };
    // The first row of each target goes alone: when its EHR is down, the others are given back untried.
    const probes = new Map<string, WritebackRow>();
    for (const row of rows) {
      const connector = this.#targets.get(slugById.get(row.practiceId)!)!.connector.name;
      if (!probes.has(connector)) probes.set(connector, row);
    }
    await Promise.all([...probes.values()].map(deliverOne));
    const rest = rows.filter((row) => ![...probes.values()].includes(row));
    let next = 0;
    const worker = async () => {
      while (next < rest.length) await deliverOne(rest[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(this.#deps.concurrency ?? 16, rest.length) }, worker));
    // Successes are recorded together; were this process to stop first, the rows would be delivered again and
    // the EHR's conditional create (or the peer's MSH-10 check) would recognise them.
    if (delivered.length === 0) return;
    const byId = new Map(rows.map((r) => [r.id, r]));
    await withTransaction(this.#deps.db, async (tx) => {
      await this.#payments.on(tx).finishDelivered(delivered);
      // One chain segment per practice (one statement), its events in the order the rows were delivered.
      const audit = new AuditLog(this.#deps.db, this.#deps.clock);
      const events = delivered.map((d) => {
        const row = byId.get(d.id)!;
        return {
          practiceId: row.practiceId, actor: WRITEBACK_ACTOR, action: 'writeback.delivered', entityType: 'writeback', entityId: row.writebackId,
          detail: { paymentId: row.paymentId, kind: row.kind, connector: d.target, ref: d.deliveredRef, attempts: row.attempts },
        };
      });
      for (const practiceId of new Set(events.map((e) => e.practiceId))) await audit.appendSegment(events.filter((e) => e.practiceId === practiceId), tx);
    });
  }

  async #attempt(target: WritebackTarget, doc: WritebackDocument): Promise<Attempt> {
    try {
      return target.transport === 'fhir-r4' ? await this.#deliverFhir(target, doc) : await this.#deliverHl7(target, doc);
    } catch (error) {
      if (error instanceof WritebackValidationError || error instanceof WritebackMappingError || error instanceof RangeError) {
        return { status: 'dead', error: error.message };
      }
      if (error instanceof FhirError) {
        const unreachable = error.status === 0 || error.status >= 500 || error.status === 429;
        return { status: 'failed', error: error.message, unreachable };
      }
      return { status: 'failed', error: (error as Error).message ?? String(error), unreachable: false };
    }
  }

  async #deliverFhir(target: FhirWritebackTarget, doc: WritebackDocument): Promise<Attempt> {
    let resources;
    if (target.renderer === 'vendor-mapping') {
      const mapping = this.#deps.mappings.get(target.mapping!);
      if (!mapping) throw new WritebackMappingError(target.mapping!, ['the mapping is not loaded']);
      resources = renderVendorBasic(doc, mapping);
    } else {
      resources = [renderPaymentReconciliation(doc)];
    }
    for (const resource of resources) assertValidWriteback(resource, this.#profiles);
    const client = this.#client(target);
    const refs: string[] = [];
    for (const resource of resources) {
      const identifier = resource.identifier![0]!;
      const written = await client.create(resource, { ifNoneExist: { identifier: `${identifier.system}|${identifier.value}` } });
      refs.push(written.location?.replace(/\/_history\/.*$/, '').replace(`${client.baseUrl}/`, '') ?? (written.resource?.id ? `${resource.resourceType}/${written.resource.id}` : resource.resourceType));
    }
    return { status: 'delivered', ref: refs.join(' ') };
  }

  async #deliverHl7(target: Hl7WritebackTarget, doc: WritebackDocument): Promise<Attempt> {
    const messages = renderDftP03(doc, target.dft, this.#deps.clock.now());
    const sender = this.#sender(target);
    for (const message of messages) {
      const outcome = await sender.send(message.text, { timeoutMs: target.ackTimeoutMs });
      if (outcome.status === 'failed') return { status: 'failed', error: `the peer answered ${outcome.ackCode}: ${outcome.reason}`, unreachable: false };
      if (outcome.status !== 'delivered') return { status: 'failed', error: `${outcome.status === 'unsent' ? 'not sent' : 'no ACK'}: ${outcome.reason}`, unreachable: true };
    }
    return { status: 'delivered', ref: messages.map((m) => m.controlId).join(' ') };
  }

  async #finish(
    row: WritebackRow, target: WritebackTarget, attempt: Attempt, report: DeliveryReport, unreachable: Map<string, Date>,
    delivered: { id: string; target: string; deliveredRef: string | null }[],
  ): Promise<void> {
    const connector = target.connector.name;
    if (attempt.status === 'delivered') {
      delivered.push({ id: row.id, target: connector, deliveredRef: attempt.ref });
      report.delivered++;
      return;
    }
    const dead = attempt.status === 'dead' || row.attempts >= target.retry.maxAttempts;
    if (!dead) {
      const nextAttemptAt = new Date(this.#deps.clock.now().getTime() + nextAttemptDelayMs(row.attempts, target.retry, this.#deps.random));
      await this.#payments.finishWriteback(row.id, { status: 'failed', target: connector, error: attempt.error, nextAttemptAt });
      if (attempt.status === 'failed' && attempt.unreachable && !unreachable.has(connector)) unreachable.set(connector, nextAttemptAt);
      report.failed++;
      // The EHR's error text goes to the row (staff see it), not to the log: an EHR may echo what it was sent.
      this.#deps.logger.warn('write-back failed, will retry', { writebackId: row.writebackId, paymentId: row.paymentId, connector, attempts: row.attempts, nextAttemptAt: nextAttemptAt.toISOString() });
      return;
    }
    await withTransaction(this.#deps.db, async (tx) => {
      await this.#payments.on(tx).finishWriteback(row.id, { status: 'dead', target: connector, error: attempt.error });
      await new StaffTaskRepository(tx, this.#deps.clock).open({
        practiceId: row.practiceId,
        kind: 'writeback-failed',
        balanceId: row.allocations[0]?.balanceId ?? null,
        subjectRef: `writeback:${row.writebackId}`,
        note: `Write-back ${row.writebackId} (${row.kind} of payment ${row.paymentId}) to ${connector} gave up after ${row.attempts} attempt(s): ${attempt.error}`.slice(0, 2000),
      });
      await new AuditLog(this.#deps.db, this.#deps.clock).append({
        practiceId: row.practiceId, actor: WRITEBACK_ACTOR, action: 'writeback.dead', entityType: 'writeback', entityId: row.writebackId,
        detail: { paymentId: row.paymentId, kind: row.kind, connector, attempts: row.attempts },
      }, tx);
    });
    report.dead++;
    this.#deps.logger.error('write-back dead-lettered', { writebackId: row.writebackId, paymentId: row.paymentId, connector, attempts: row.attempts });
  }

  #client(target: FhirWritebackTarget): FhirClient {
    let client = this.#clients.get(target.connector.name);
    if (!client) {
      // The outbox does the retrying (with backoff across runs): one quick retry here rides out a blip only.
      const fhir = this.#deps.fhir ?? {};
      client = createFhirClient(target.connector, { clock: this.#deps.clock, ...fhir, client: { maxAttempts: 2, baseDelayMs: 200, maxDelayMs: 1000, timeoutMs: 30_000, ...fhir.client } });
      this.#clients.set(target.connector.name, client);
    }
    return client;
  }

  #sender(target: Hl7WritebackTarget): MllpSender {
    let sender = this.#senders.get(target.connector.name);
    if (!sender) {
      sender = new MllpSender({
        host: target.connector.outbound.host, port: target.connector.outbound.port, logger: this.#deps.logger.child({ connector: target.connector.name }),
        ackTimeoutMs: target.ackTimeoutMs, connectTimeoutMs: 5000, backoff: { initialMs: 250, maxMs: 5000 },
      });
      this.#senders.set(target.connector.name, sender);
    }
    return sender;
  }
}

/**
 * The `writeback.deliver` job: delivers everything due. One runs at a time per worker; workers on other machines
 * claim different rows.
 */
export function writebackDeliverJob(deps: WritebackDeliveryDeps): JobDefinition<Record<string, never>> {
  return {
    name: WRITEBACK_DELIVER_JOB,
    concurrency: 1,
    lockLifetimeMs: 10 * 60_000,
    async run() {
      // One per run: its MLLP connections close with the run, so nothing keeps reconnecting after shutdown.
      const delivery = new WritebackDelivery(deps);
      try {
        await delivery.deliverDue();
      } finally {
        await delivery.close();
      }
    },
  };
}
