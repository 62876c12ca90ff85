/**
 * The constraints (FHIRPath invariants) of the compiled validator (`fhir-validator.ts`), evaluated as Medplum's
 * validator evaluates them (`isExpressionTrue` in its `validation.ts`: the same keys skipped, the same variables,
 * Medplum's `evalFhirPathTyped` on the expression parsed once), with one shortcut that cannot change a verdict: an
 * expression that reads nothing but members of the value (no `%` or `$` variable, no function that reads
 * members by other means) takes, on an object without any of those members, the value it takes on an object
 * without any member, computed once.
 */
import { evalFhirPathTyped, FunctionAtom, LiteralAtom, parseFhirPath, SymbolAtom, toTypedValue, UCUM, type InternalTypeSchema, type TypedValue } from '@medplum/core';
import type { Resource } from '@medplum/fhirtypes';

/** Constraint keys Medplum's validator does not evaluate (`skippedConstraintKeys` in its `validation.ts`). */
const SKIPPED = new Set(['ele-1', 'dom-3', 'org-1', 'sdf-19']);

/** Functions whose result depends only on their input collection and arguments (not on other members). */
const PURE_FUNCTIONS = new Set([
  'exists', 'empty', 'not', 'all', 'count', 'where', 'select', 'first', 'last', 'single', 'hasValue', 'matches', 'startsWith', 'endsWith', 'length', 'substring',
  'distinct', 'isDistinct', 'allTrue', 'anyTrue', 'allFalse', 'anyFalse', 'lower', 'upper', 'iif',
]);
const OPERATORS = new Set(['.', 'and', 'or', 'xor', 'implies', '=', '!=', '~', '!~', '<', '>', '<=', '>=', '|', 'in', 'contains', '+', '-', '*', '/', '&', 'div', 'mod']);

type Atom = ReturnType<typeof parseFhirPath>;

/** The FHIRPath variables Medplum gives a constraint. */
export interface ConstraintContext {
  /** `%rootResource`. */
  root: TypedValue;
  /** `%resource` is the last one (contained resources are pushed while walked). */
  resources: Resource[];
}

/** A constraint Medplum evaluates, compiled. */
export interface Constraint {
  atom: Atom;
  /** The member names it reads, when it reads nothing else. */
  reads?: readonly string[];
  /** Its value on an object without any of `reads` (undefined: always evaluated)… */
  whenAbsent?: boolean;
  /** …and of this `resourceType` (undefined for datatypes). */
  resourceType?: unknown;
}

/**
 * The error constraints Medplum evaluates, parsed once; undefined when one is not FHIRPath (Medplum reports it).
 * @param type - the FHIR type of the values they apply to (`%context`)
 * @param empty - a value of that type without members (for a resource, only its `resourceType`), or undefined
 *   for primitive values.
 */
export function compileConstraints(constraints: InternalTypeSchema['constraints'], type: string, empty: object | undefined): Constraint[] | undefined {
  const compiled: Constraint[] = [];
  for (const constraint of constraints ?? []) {
    if (constraint.severity !== 'error' || SKIPPED.has(constraint.key)) continue;
    let atom: Atom;
    try {
      atom = parseFhirPath(constraint.expression);
    } catch {
      return undefined;
    }
    const reads = empty ? memberNames(atom) : undefined;
    let whenAbsent: boolean | undefined;
    if (reads && empty) {
      try {
        const value = { type, value: empty };
        whenAbsent = isTrue(atom, value, { '%context': value });
      } catch {
        whenAbsent = undefined;
      }
    }
    compiled.push({ atom, reads, whenAbsent, resourceType: (empty as { resourceType?: unknown } | undefined)?.resourceType });
  }
  return compiled;
}

/** The names of the symbols of an expression, or undefined when it uses a variable or an impure function or operator. */
function memberNames(atom: Atom): string[] | undefined {
  const names = new Set<string>();
  const visit = (node: unknown): boolean => {
    if (node === null || typeof node !== 'object' || node instanceof LiteralAtom) return true;
    if (Array.isArray(node)) return node.every(visit);
    if (node instanceof SymbolAtom) {
      if (node.name.startsWith('%') || node.name.startsWith('$')) return false;
      names.add(node.name);
      return true;
    }
    if (node instanceof FunctionAtom && !PURE_FUNCTIONS.has(node.name)) return false;
    const operator = (node as { operator?: unknown }).operator;
    if (operator !== undefined && !OPERATORS.has(String(operator))) return false;
    return Object.values(node).every(visit);
  };
  return visit(atom) ? [...names] : undefined;
}

const ucum = toTypedValue(UCUM);

/** Whether a constraint holds on a value, as Medplum's validator evaluates it. */
export function holds(constraint: Constraint, value: TypedValue, context: ConstraintContext): boolean {
  if (constraint.whenAbsent !== undefined) {
    const object = value.value as Record<string, unknown>;
    if (object.resourceType === constraint.resourceType && !readsAny(object, constraint.reads!)) return constraint.whenAbsent;
  }
  const variables: Record<string, TypedValue> = { '%context': value, '%ucum': ucum, '%rootResource': context.root };
  const resource = context.resources.at(-1);
  if (resource) variables['%resource'] = toTypedValue(resource);
  try {
    return isTrue(constraint.atom, value, variables);
  } catch {
    return false;
  }
}

function isTrue(atom: Atom, value: TypedValue, variables: Record<string, TypedValue>): boolean {
  const result = evalFhirPathTyped(atom, [value], variables);
  return result.length === 1 && result[0]?.value === true;
}

/** Whether an object has a member of one of these names (as `name`, `_name` or a choice `nameType`). */
function readsAny(object: Record<string, unknown>, names: readonly string[]): boolean {
  for (const key of Object.keys(object)) {
    for (const name of names) {
      if (key === name || key === `_${name}`) return true;
      const start = key.startsWith('_') ? 1 : 0;
      if (key.startsWith(name, start) && key.length > name.length + start) {
        const next = key.charCodeAt(name.length + start);
        if (next >= 65 && next <= 90) return true;
      }
    }
  }
  return false;
}
