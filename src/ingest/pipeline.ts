/**
 * The ingest pipeline, inside the caller's transaction: map source records with their compiled mappings,
 * resolve patients, guarantors and accounts, post their ledger lines idempotently; or, when a record cannot be
 * mapped or posted, leave the ledger untouched by it and quarantine it with an OperationOutcome. One record
 * ({@link ingestRecord}) and a batch (`batch.ts`) go through the same set-based writes ({@link postMapped}).
 */
import type { OperationOutcome, OperationOutcomeIssue } from '@medplum/fhirtypes';
import type { Clock } from '../domain/clock.ts';
import type { SourceRecord } from '../domain/source-record.ts';
import type { CompiledMapping, MappedRecord, MappingIssue } from '../mapping/compile.ts';
import type { Queryable } from '../store/database.ts';
import type { PersonIdentifier } from '../domain/contact.ts';
import { LedgerBatch, type SourcePosting } from '../store/ledger-batch.ts';
import { LedgerParties } from '../store/ledger-parties.ts';
import { LedgerError, type PostingResult } from '../store/ledger.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { QuarantineRepository } from '../store/quarantine.ts';

/** What ingest needs besides the transaction. */
export interface IngestContext {
  cipher: PhiCipher;
  clock: Clock;
  /** Extra checks of the source record (e.g. FHIR profile validation); issues quarantine the record. */
  validate?: (record: SourceRecord) => MappingIssue[];
  /** The practice's time zone, when the caller knows it (saves a query per record). */
  timeZone?: string;
  /** False: report a failing record without storing it in the quarantine (CSV import reports bad rows instead). Default true. */
  quarantine?: boolean;
  /**
   * True when the records are the caller's own and their bodies are not read again (claimed pending source records: a
   * batch the ledger refuses is read again from the database): a batch lets go of each record's body (sets it to
   * undefined) once it is mapped. Its statements then run for tens of milliseconds while other batches allocate, and
   * bodies held that long would be copied by the young generation's collections and promoted to the old generation.
   * Default false (CSV import posts a refused batch's rows again, one by one).
   */
  dropBodiesOnceMapped?: boolean;
}

/** What happened to one record. */
export type IngestResult =
  | {
      status: 'posted' | 'unchanged' | 'duplicate' | 'stale' | 'recorded';
      /** Ledger posting details; absent for mappings that produce no balance events (`recorded`). */
      posting?: PostingResult;
      patientId: string | null;
      guarantorId: string | null;
      accountId: string | null;
    }
  | { status: 'quarantined'; quarantineId: string | null; outcome: OperationOutcome; issues: MappingIssue[] };

/** A record its mapping accepted, mapped. */
export interface MappedSource {
  record: SourceRecord;
  mapping: CompiledMapping;
  mapped: MappedRecord;
}

/** Validates and maps one record in the practice's time zone: the mapped record, or every issue. */
export function mapSource(record: SourceRecord, mapping: CompiledMapping, context: IngestContext & { timeZone: string }): { ok: true; source: MappedSource } | { ok: false; issues: MappingIssue[] } {
  const issues = [...(context.validate?.(record) ?? [])];
  const result = mapping.map(record, { timeZone: context.timeZone });
  if (!result.ok) issues.push(...result.issues);
  if (issues.length > 0 || !result.ok) return { ok: false, issues };
  return { ok: true, source: { record, mapping, mapped: result.record } };
}

/**
 * Ingests one source record in the caller's transaction (`tx`): the same version twice changes nothing, a
 * newer version replaces the record's earlier contribution, an older one is ignored. A record that fails
 * mapping, validation or posting (mixed currencies) changes nothing in the ledger and is quarantined.
 */
export async function ingestRecord(tx: Queryable, record: SourceRecord, mapping: CompiledMapping, context: IngestContext): Promise<IngestResult> {
  let timeZone = context.timeZone;
  if (timeZone === undefined) {
    const { rows } = await tx.query<{ time_zone: string }>('SELECT time_zone FROM practices WHERE id = $1', [record.practiceId]);
    if (!rows[0]) throw new Error(`no practice ${record.practiceId}`);
    timeZone = rows[0].time_zone;
  }
  const result = mapSource(record, mapping, { ...context, timeZone });
  if (!result.ok) return quarantineRecord(tx, record, mapping, context, result.issues);
  return postOrQuarantine(tx, result.source, context);
}

/**
 * Posts one mapped record under a savepoint; when the ledger refuses it, rolls back to the savepoint and
 * quarantines it instead.
 */
export async function postOrQuarantine(tx: Queryable, source: MappedSource, context: IngestContext): Promise<IngestResult> {
  await tx.query('SAVEPOINT settle_ingest');
  try {
    // The savepoint is left to the commit (one round trip fewer); a rollback goes to the latest one of that name.
    const [outcome] = await postMapped(tx, [source], context);
    return outcome!;
  } catch (error) {
    await tx.query('ROLLBACK TO SAVEPOINT settle_ingest');
    if (error instanceof LedgerError) {
      return quarantineRecord(tx, source.record, source.mapping, context, [{ path: '/events', code: error.code, message: error.message }]);
    }
    throw error;
  }
}

/**
 * Posts mapped records of one practice, each a different source, in the caller's transaction with set-based
 * statements ({@link LedgerParties}, {@link LedgerBatch}): patients, guarantors and accounts resolved as if one record after another
 * in this order, then every record's lines, then each touched balance recomputed once; each record's open
 * quarantine entry is resolved.
 * @throws LedgerError when the ledger refuses any of them: roll back (or to a savepoint), as others may be written.
 */
export async function postMapped(tx: Queryable, sources: readonly MappedSource[], context: Pick<IngestContext, 'cipher' | 'clock'>): Promise<IngestResult[]> {
  if (sources.length === 0) return [];
  const practiceId = sources[0]!.record.practiceId;
  if (sources.some((s) => s.record.practiceId !== practiceId)) throw new Error('postMapped takes the records of one practice');
  const parties = await new LedgerParties(tx, context.cipher, context.clock).resolveParties(practiceId, sources.map(({ mapped }) => ({ patient: mapped.patient, guarantor: mapped.guarantor, account: accountOf(mapped) })));
  const postings: SourcePosting[] = [];
  const postingIndex = sources.map(({ record, mapping, mapped }, n) => {
    if (!mapping.produces.includes('balance-event')) return -1;
    const { accountId, guarantorId, selfPatientId } = parties[n]!;
    if (!accountId || !guarantorId) throw new LedgerError('invalid-line', 'the record names no patient or account to post to');
    const version = { connector: record.connector, resourceType: record.resourceType, sourceId: record.sourceId, versionId: record.versionId, lastUpdated: record.lastUpdated };
    return postings.push({ version, target: { accountId, guarantorId, patientId: selfPatientId }, lines: mapped.void ? [] : mapped.lines }) - 1;
  });
  const postingResults = await new LedgerBatch(tx, context.clock).postSources(practiceId, postings);
  await new QuarantineRepository(tx, context.clock).resolveMany(sources.map((s) => s.record));
  return sources.map((_, n): IngestResult => {
    const { patientId, guarantorId, accountId } = parties[n]!;
    const posting = postingResults[postingIndex[n]!];
    return posting ? { status: posting.outcome, posting, patientId, guarantorId, accountId } : { status: 'recorded', patientId, guarantorId, accountId };
  });
}

/** The account a record posts to: the one it names, else the patient's own account. */
function accountOf(mapped: MappedRecord): { identifier: PersonIdentifier; name: string | null } | null {
  if (mapped.account) return mapped.account;
  if (!mapped.patient) return null;
  return { identifier: { system: `urn:settle:patient-account:${mapped.patient.identifier.system}`, value: mapped.patient.identifier.value }, name: null };
}

/** Quarantines a record with the OperationOutcome of its issues (unless `context.quarantine` is false); the ledger is untouched. */
export async function quarantineRecord(tx: Queryable, record: SourceRecord, mapping: CompiledMapping, context: IngestContext, issues: MappingIssue[]): Promise<IngestResult> {
  const outcome = toOperationOutcome(mapping, issues);
  const quarantineId = context.quarantine === false ? null : await new QuarantineRepository(tx, context.clock).put({ ...record, mapping: mapping.name }, outcome);
  return { status: 'quarantined', quarantineId, outcome, issues };
}

const ISSUE_CODES: Record<string, OperationOutcomeIssue['code']> = {
  required: 'required',
  'missing-patient': 'required',
  'wrong-source': 'not-supported',
  'currency-mismatch': 'business-rule',
  'balance-mismatch': 'business-rule',
  'negative-amount': 'business-rule',
  'zero-amount': 'business-rule',
  'invalid-line': 'business-rule',
  'unknown-code': 'code-invalid',
};

/**
 * The OperationOutcome of mapping issues: one error issue each, its code a FHIR issue type, its details the
 * Settle issue code, its diagnostics the mapping file, JSON path, item and reason (never a source value).
 */
export function toOperationOutcome(mapping: Pick<CompiledMapping, 'file'>, issues: readonly MappingIssue[]): OperationOutcome {
  return {
    resourceType: 'OperationOutcome',
    issue: issues.map((issue) => ({
      severity: 'error',
      code: ISSUE_CODES[issue.code] ?? (issue.code.startsWith('invalid') || issue.code === 'too-many-decimals' ? 'value' : 'invalid'),
      details: { coding: [{ system: 'https://settle.dev/CodeSystem/mapping-issue', code: issue.code }], text: issue.message },
      diagnostics: `${mapping.file}: ${issue.path}${issue.item === undefined ? '' : ` (item ${issue.item})`}: ${issue.message}`,
    })),
  };
}
