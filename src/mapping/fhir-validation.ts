/**
 * Validation of inbound FHIR resources with @medplum/core's rules before they are mapped (`profileIssues`,
 * Medplum's verdicts, compiled once per profile): against every profile in `fhir-profiles/` of the resource's
 * type (`settle-invoice`, `settle-account`, …: the minimum Settle needs; a profile's snapshot includes the base R4
 * definition), or the base R4 definition when none is of its type. Issues quarantine the record (see
 * `IngestContext.validate`).
 */
import type { Resource, StructureDefinition } from '@medplum/fhirtypes';
import type { SourceRecord } from '../domain/source-record.ts';
import type { MappingIssue } from './compile.ts';
import { profileWithSnapshot } from './fhir-profiles.ts';
import { loadBaseDefinitions, profileIssues } from './fhir-validator.ts';

export { loadBaseDefinitions };

/**
 * A validator for FHIR source records.
 * @param profiles - StructureDefinitions (the `data` of `fhir-profiles/` files); those of the record's resource
 *   type are applied (their snapshots built now when they give only a differential).
 * @throws ProfileError when a profile's differential cannot be built into a snapshot.
 */
export function fhirValidator(profiles: readonly Record<string, unknown>[] = []): (record: SourceRecord) => MappingIssue[] {
  loadBaseDefinitions();
  const byType = new Map<string, StructureDefinition[]>();
  for (const profile of profiles as unknown as StructureDefinition[]) {
    if (profile.resourceType !== 'StructureDefinition' || !profile.type) continue;
    byType.set(profile.type, [...(byType.get(profile.type) ?? []), profileWithSnapshot(profile)]);
  }
  return (record) => {
    if (record.transport !== 'fhir-r4') return [];
    const resource = record.body as Resource;
    return profileIssues(resource, byType.get(resource.resourceType) ?? []).map(({ profile, path, message }) => ({
      path: `/source${profile ? ` (${profile.url ?? profile.id})` : ''}`, code: 'invalid-resource', message: `${path ? `${path}: ` : ''}${message}`,
    }));
  };
}
