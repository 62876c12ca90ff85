/**
 * Staff API over the ledger and the ingest quarantine, and trying a mapping: RouteSpecs for the API to mount.
 *   GET  /balances                    filter by status, aging bucket, minimum amount, guarantor; paged
 *   GET  /balances/{id}               entries, sources, status history
 *   POST /balances/{id}/status        change status (holds need a reason), recorded with the calling key
 *   GET  /quarantine                  records that could not be mapped or posted, with their OperationOutcome
 *   POST /quarantine/{id}/reprocess   map and post the stored record again (after the mapping was fixed)
 *   POST /mappings/{name}/test        map a FHIR resource/Bundle, HL7 message or CSV text; nothing is stored
 */
import { ApiError } from '../api/problem.ts';
import type { AnyRoute, JsonSchema } from '../api/routes.ts';
import type { Principal } from '../domain/access.ts';
import type { Clock } from '../domain/clock.ts';
import { AGING_BUCKETS, BALANCE_STATUSES, HOLD_REASONS, type AgingBucket, type BalanceStatus, type HoldReason } from '../domain/ledger.ts';
import { formatMoney, type Money } from '../domain/money.ts';
import type { SourceRecord } from '../domain/source-record.ts';
import type { MappingRegistry } from '../mapping/load.ts';
import { tryMapping } from '../mapping/try.ts';
import { AuditLog } from '../store/audit.ts';
import { withTransaction, type Database } from '../store/database.ts';
import { LedgerError, LedgerRepository, type Balance } from '../store/ledger.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { QuarantineRepository, type QuarantineKey } from '../store/quarantine.ts';
import { ingestRecord } from './pipeline.ts';

/** What the ledger routes need. */
export interface LedgerRoutesDeps {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
  mappings: MappingRegistry;
  /**
   * The stored source record of a quarantine entry (from the source-record store), for reprocessing.
   * Without it, reprocess answers 501.
   */
  loadSourceRecord?: (key: QuarantineKey & { versionId: string }) => Promise<SourceRecord | undefined>;
}

const MONEY: JsonSchema = {
  type: 'object',
  required: ['amountMinor', 'currency', 'value'],
  properties: { amountMinor: { type: 'integer' }, currency: { type: 'string' }, value: { type: 'string', description: 'Decimal text, exact.' } },
};
const BALANCE: JsonSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' }, guarantorId: { type: 'string' }, accountId: { type: 'string' }, patientId: { type: ['string', 'null'] },
    patientAmount: MONEY, insuranceAmount: MONEY, status: { enum: [...BALANCE_STATUSES] }, holdReason: { enum: [...HOLD_REASONS, null] },
    oldestOpenDate: { type: ['string', 'null'], format: 'date' }, agingBucket: { enum: [...AGING_BUCKETS, null] },
    outreachEligible: { type: 'boolean' }, statusChangedAt: { type: 'string', format: 'date-time' }, updatedAt: { type: 'string', format: 'date-time' },
  },
};

const money = (m: Money) => ({ amountMinor: m.amount, currency: m.currency, value: formatMoney(m) });
const shownBalance = (b: Balance) => ({ ...b, practiceId: undefined, patientAmount: money(b.patientAmount), insuranceAmount: money(b.insuranceAmount) });
const actorOf = (principal: Principal | undefined) => (principal ? `apikey:${principal.keyId}` : 'anonymous');

/** The ledger, quarantine and mapping-test routes. */
export function ledgerRoutes(deps: LedgerRoutesDeps): AnyRoute[] {
  const ledger = new LedgerRepository(deps.db.pool, deps.cipher, deps.clock);
  const quarantine = new QuarantineRepository(deps.db.pool, deps.clock);
  const audit = new AuditLog(deps.db, deps.clock);
  const ownBalance = async (principal: Principal | undefined, id: string): Promise<Balance> => {
    const balance = /^[0-9a-f-]{36}$/i.test(id) ? await ledger.getBalance(id) : undefined;
    if (!balance || balance.practiceId !== principal?.practiceId) throw new ApiError(404, 'balance_not_found', `No balance ${id}.`);
    return balance;
  };
  return [
    {
      method: 'get',
      path: '/balances',
      summary: "The practice's balances, filtered and paged (newest id order, cursor paging).",
      tag: 'ledger',
      access: ['staff', 'integration'],
      query: {
        type: 'object',
        properties: {
          status: { enum: [...BALANCE_STATUSES] },
          agingBucket: { enum: [...AGING_BUCKETS] },
          minAmount: { type: 'integer', minimum: 0, description: 'Minimum patient amount in minor units (cents).' },
          guarantorId: { type: 'string', format: 'uuid' },
          limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
          cursor: { type: 'string', format: 'uuid' },
        },
        additionalProperties: false,
      },
      responses: { 200: { description: 'A page of balances.', schema: { type: 'object', properties: { balances: { type: 'array', items: BALANCE }, nextCursor: { type: ['string', 'null'] } } } } },
      handler: async ({ principal, query }: { principal: Principal | undefined; query: { status?: BalanceStatus; agingBucket?: AgingBucket; minAmount?: number; guarantorId?: string; limit?: number; cursor?: string } }) => {
        const page = await ledger.listBalances(principal!.practiceId, query);
        return { balances: page.balances.map(shownBalance), nextCursor: page.nextCursor };
      },
    },
    {
      method: 'get',
      path: '/balances/{id}',
      summary: 'One balance with its entries (each naming the source record version that posted it) and status history.',
      tag: 'ledger',
      access: ['staff', 'integration'],
      responses: { 200: { description: 'The balance.', schema: BALANCE }, 404: { description: 'No such balance in this practice.' } },
      handler: async ({ principal, params }) => {
        const balance = await ownBalance(principal, params.id!);
        // A PHI view: recorded before anything is shown.
        await audit.append({ practiceId: balance.practiceId, actor: actorOf(principal), action: 'balance.view', entityType: 'balance', entityId: balance.id });
        const entries = await ledger.entries(balance.id);
        const sources = [...new Map(entries.map((e) => [`${e.source.connector}/${e.source.resourceType}/${e.source.sourceId}`, { connector: e.source.connector, resourceType: e.source.resourceType, sourceId: e.source.sourceId }])).values()];
        return {
          ...shownBalance(balance),
          entries: entries.map((e) => ({ ...e, amount: money(e.amount), effectMinor: e.effect, effect: undefined })),
          sources,
          statusHistory: await ledger.statusHistory(balance.id),
        };
      },
    },
    {
      method: 'post',
      path: '/balances/{id}/status',
      summary: 'Changes a balance status (on_hold needs a holdReason); the change is recorded with the calling key.',
      tag: 'ledger',
      access: ['staff'],
      body: {
        type: 'object',
        required: ['status'],
        properties: { status: { enum: [...BALANCE_STATUSES] }, holdReason: { enum: [...HOLD_REASONS] }, note: { type: 'string', maxLength: 500 } },
        additionalProperties: false,
      },
      responses: { 200: { description: 'The balance after the change.', schema: BALANCE }, 404: { description: 'No such balance.' }, 422: { description: 'The change is not allowed.' } },
      handler: async ({ principal, params, body }: { principal: Principal | undefined; params: Record<string, string>; body: { status: BalanceStatus; holdReason?: HoldReason; note?: string } }) => {
        const balance = await ownBalance(principal, params.id!);
        try {
          await withTransaction(deps.db, async (tx) => {
            await ledger.on(tx).setStatus(balance.id, { status: body.status, holdReason: body.holdReason ?? null, note: body.note ?? null, actor: actorOf(principal) });
            await audit.append({
              practiceId: balance.practiceId, actor: actorOf(principal), action: 'balance.status', entityType: 'balance', entityId: balance.id,
              detail: { from: balance.status, to: body.status, ...(body.holdReason ? { holdReason: body.holdReason } : {}) },
            }, tx);
          });
        } catch (error) {
          if (error instanceof LedgerError) throw new ApiError(422, 'invalid_status_change', error.message);
          throw error;
        }
        return shownBalance((await ledger.getBalance(balance.id))!);
      },
    },
    {
      method: 'get',
      path: '/quarantine',
      summary: 'Source records that could not be mapped or posted, each with the OperationOutcome saying why.',
      tag: 'ledger',
      access: ['staff', 'integration'],
      query: {
        type: 'object',
        properties: { limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 }, offset: { type: 'integer', minimum: 0, default: 0 }, includeResolved: { type: 'boolean', default: false } },
        additionalProperties: false,
      },
      responses: { 200: { description: 'Quarantined records, most recent failure first.' } },
      handler: async ({ principal, query }: { principal: Principal | undefined; query: { limit?: number; offset?: number; includeResolved?: boolean } }) => ({
        entries: await quarantine.list(principal!.practiceId, query),
      }),
    },
    {
      method: 'post',
      path: '/quarantine/{id}/reprocess',
      summary: 'Maps and posts a quarantined record again with the current mapping (after it was fixed).',
      tag: 'ledger',
      access: ['staff', 'integration'],
      responses: {
        200: { description: 'What happened: posted, unchanged, duplicate, stale, recorded, or quarantined again with its OperationOutcome.' },
        404: { description: 'No such entry, or its source record is no longer stored.' },
        501: { description: 'This deployment has no source-record store to reprocess from.' },
      },
      handler: async ({ principal, params }) => {
        const entry = /^[0-9a-f-]{36}$/i.test(params.id!) ? await quarantine.get(params.id!) : undefined;
        if (!entry || entry.practiceId !== principal?.practiceId) throw new ApiError(404, 'quarantine_not_found', `No quarantine entry ${params.id}.`);
        if (!deps.loadSourceRecord) throw new ApiError(501, 'reprocess_unavailable', 'Reprocessing needs the source-record store.');
        const record = await deps.loadSourceRecord(entry);
        if (!record) throw new ApiError(404, 'source_record_not_found', `The source record ${entry.resourceType}/${entry.sourceId} version ${entry.versionId} is no longer stored.`);
        const mapping = deps.mappings.get(entry.mapping);
        if (!mapping) throw new ApiError(404, 'mapping_not_found', `No mapping "${entry.mapping}" is loaded.`);
        const result = await withTransaction(deps.db, async (tx) => {
          const outcome = await ingestRecord(tx, record, mapping, { cipher: deps.cipher, clock: deps.clock });
          await audit.append({
            practiceId: entry.practiceId, actor: actorOf(principal), action: 'quarantine.reprocess', entityType: 'quarantine', entityId: entry.id,
            detail: { mapping: entry.mapping, status: outcome.status },
          }, tx);
          return outcome;
        });
        return result.status === 'quarantined' ? { status: result.status, outcome: result.outcome } : { status: result.status, posting: result.posting ?? null };
      },
    },
    {
      method: 'post',
      path: '/mappings/{name}/test',
      summary: 'Maps a FHIR resource or Bundle, an HL7 v2 message or CSV text with a mapping and returns every result or error. Nothing is stored.',
      tag: 'mappings',
      access: ['staff', 'integration'],
      body: { type: 'object', required: ['content'], properties: { content: { type: 'string', minLength: 1, maxLength: 5_000_000 } }, additionalProperties: false },
      responses: { 200: { description: 'Each record: ok with the mapped result, or its issues.' }, 404: { description: 'No such mapping.' }, 422: { description: 'The content cannot be read.' } },
      handler: async ({ params, body }: { params: Record<string, string>; body: { content: string } }) => {
        const mapping = deps.mappings.get(params.name!);
        if (!mapping) throw new ApiError(404, 'mapping_not_found', `No mapping "${params.name}".`);
        try {
          const records = tryMapping(mapping, body.content);
          return { mapping: mapping.name, records, mapped: records.filter((r) => r.ok).length, failed: records.filter((r) => !r.ok).length };
        } catch (error) {
          throw new ApiError(422, 'unreadable_content', `The content cannot be read: ${(error as Error).message}`);
        }
      },
    },
  ];
}
