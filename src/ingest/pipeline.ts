/**
 * The ingest pipeline for one source record, inside the caller's transaction: map it with its compiled
 * mapping, resolve patient, guarantor and account, post its ledger lines idempotently; or, when it cannot be
 * mapped or posted, leave the ledger untouched and quarantine it with an OperationOutcome.
 */
import type { OperationOutcome, OperationOutcomeIssue } from '@medplum/fhirtypes';
import type { Clock } from '../domain/clock.ts';
import type { SourceRecord } from '../domain/source-record.ts';
import type { CompiledMapping, MappedRecord, MappingIssue } from '../mapping/compile.ts';
import type { Queryable } from '../store/database.ts';
import { LedgerError, LedgerRepository, type PostingResult } from '../store/ledger.ts';
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
  const issues = [...(context.validate?.(record) ?? [])];
  const result = mapping.map(record, { timeZone });
  if (!result.ok) issues.push(...result.issues);
  if (issues.length > 0 || !result.ok) return quarantine(tx, record, mapping, context, issues);

  await tx.query('SAVEPOINT settle_ingest');
  try {
    // The savepoint is left to the commit (one round trip fewer); a rollback goes to the latest one of that name.
    const outcome = await post(tx, record, mapping, result.record, context);
    await new QuarantineRepository(tx, context.clock).resolve(record);
    return outcome;
  } catch (error) {
    await tx.query('ROLLBACK TO SAVEPOINT settle_ingest');
    if (error instanceof LedgerError) {
      return quarantine(tx, record, mapping, context, [{ path: '/events', code: error.code, message: error.message }]);
    }
    throw error;
  }
}

async function post(tx: Queryable, record: SourceRecord, mapping: CompiledMapping, mapped: MappedRecord, context: IngestContext): Promise<IngestResult> {
  const ledger = new LedgerRepository(tx, context.cipher, context.clock);
  const patientId = mapped.patient ? await ledger.upsertPatient(record.practiceId, mapped.patient.identifier, mapped.patient.contact) : null;
  const namedGuarantorId = mapped.guarantor
    ? await ledger.ensureGuarantor(record.practiceId, { identifier: mapped.guarantor.identifier, contact: mapped.guarantor.contact })
    : null;
  const accountIdentifier =
    mapped.account?.identifier ?? (mapped.patient ? { system: `urn:settle:patient-account:${mapped.patient.identifier.system}`, value: mapped.patient.identifier.value } : null);
  const account = accountIdentifier
    ? await ledger.upsertAccount(record.practiceId, { identifier: accountIdentifier, name: mapped.account?.name ?? null, patientId, guarantorId: namedGuarantorId })
    : null;
  const selfPatientId = patientId ?? account?.patientId ?? null;
  const guarantorId =
    namedGuarantorId ?? account?.guarantorId ?? (selfPatientId ? await ledger.ensureGuarantor(record.practiceId, { selfPatientId }) : null);
  const ids = { patientId, guarantorId, accountId: account?.id ?? null };
  if (!mapping.produces.includes('balance-event')) return { status: 'recorded', ...ids };
  if (!account || !guarantorId) throw new LedgerError('invalid-line', 'the record names no patient or account to post to');
  const posting = await ledger.postSource(
    record.practiceId,
    { connector: record.connector, resourceType: record.resourceType, sourceId: record.sourceId, versionId: record.versionId, lastUpdated: record.lastUpdated },
    { accountId: account.id, guarantorId, patientId: selfPatientId },
    mapped.void ? [] : mapped.lines,
  );
  return { status: posting.outcome, posting, ...ids };
}

async function quarantine(tx: Queryable, record: SourceRecord, mapping: CompiledMapping, context: IngestContext, issues: MappingIssue[]): Promise<IngestResult> {
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
