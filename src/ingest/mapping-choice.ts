/**
 * Which mapping ingests a source record: the one its CSV connector file names, else the one mapping that accepts
 * its transport and resource type. A record no mapping accepts (or that several accept) gets the intake
 * quarantine's OperationOutcome ({@link unmappedOutcome}).
 */
import type { OperationOutcome } from '@medplum/fhirtypes';
import type { DataFile } from '../config/data-files.ts';
import type { SourceRecord } from '../domain/source-record.ts';
import type { CompiledMapping, MappingIssue } from '../mapping/compile.ts';
import type { MappingRegistry } from '../mapping/load.ts';
import { fhirValidator } from '../mapping/fhir-validation.ts';

/** The OperationOutcome of a record no single mapping accepts. */
export function unmappedOutcome(record: Pick<SourceRecord, 'connector' | 'transport' | 'resourceType'>, candidates: readonly string[]): OperationOutcome {
  const what = `${record.resourceType} records from connector ${record.connector} (${record.transport})`;
  const text =
    candidates.length === 0
      ? `no mapping accepts ${what}; add a mapping file whose source accepts them, restart, then reprocess or re-sync`
      : `${candidates.length} mappings accept ${what} (${candidates.join(', ')}); name one in the connector file or narrow their sources`;
  return {
    resourceType: 'OperationOutcome',
    issue: [
      {
        severity: 'error',
        code: 'not-supported',
        details: { coding: [{ system: 'https://settle.dev/CodeSystem/mapping-issue', code: candidates.length === 0 ? 'no-mapping' : 'ambiguous-mapping' }], text },
        diagnostics: text,
      },
    ],
  };
}

/** Picks the mapping of a record: the one its CSV connector names, else the one that accepts it. */
export function mappingFor(
  record: Pick<SourceRecord, 'connector' | 'transport' | 'resourceType'>,
  mappings: MappingRegistry,
  connectors: readonly DataFile[] = [],
): { mapping: CompiledMapping } | { candidates: string[] } {
  if (record.transport === 'csv') {
    const named = connectors.find((c) => c.name === record.connector && c.data.transport === 'csv')?.data.mapping;
    const mapping = typeof named === 'string' ? mappings.get(named) : undefined;
    if (mapping) return { mapping };
  }
  const accepting = mappings.accepting(record.transport, record.resourceType);
  return accepting.length === 1 ? { mapping: accepting[0]! } : { candidates: accepting.map((m) => m.name) };
}

const validators = new WeakMap<readonly Record<string, unknown>[], (record: SourceRecord) => MappingIssue[]>();

/** The FHIR validator of these profiles (built once per profiles array), or none when they are not given. */
export function validatorFor(profiles: readonly Record<string, unknown>[] | undefined): ((record: SourceRecord) => MappingIssue[]) | undefined {
  if (profiles === undefined) return undefined;
  let validate = validators.get(profiles);
  if (!validate) {
    validate = fhirValidator(profiles);
    validators.set(profiles, validate);
  }
  return validate;
}

/** The raw text an intake quarantine entry keeps: the HL7 message, else the body as JSON. */
export function rawOf(record: SourceRecord): string {
  const body = record.body as { message?: unknown } | null;
  return record.transport === 'hl7v2-mllp' && typeof body?.message === 'string' ? body.message : JSON.stringify(record.body);
}
