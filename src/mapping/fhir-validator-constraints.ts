/**
 * The constraints (FHIRPath invariants) of the compiled validator (`fhir-validator.ts`), evaluated as Medplum's
 * validator evaluates them (`isExpressionTrue` in its `validation.ts`: the same keys skipped, the same variables,
 * Medplum's `evalFhirPathTyped` on the expression parsed once), with two shortcuts that cannot change a verdict:
 * - an expression that reads nothing but members of the value (no `%` or `$` variable, no function that reads
 *   members by other means) takes, on an object without any of those members, the value it takes on an object
 *   without any member, computed once;
 * - an expression made only of `or`, `and`, `member.exists()` and `member = 'text'` (a profile's "an invoice has a
 *   subject or an account") is read on the JSON object directly when that surely makes it true ({@link quickCheck});
 *   whenever it does not, Medplum evaluates it.
 */
import {
  AndAtom, DotAtom, EqualsAtom, evalFhirPathTyped, FhirPathAtom, FunctionAtom, LiteralAtom, OrAtom, parseFhirPath, SymbolAtom, toTypedValue, UCUM,
  type InternalTypeSchema, type TypedValue,
} from '@medplum/core';
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
  /** True when the JSON object surely satisfies it, read without Medplum ({@link quickCheck}). */
  surelyHolds?: (object: Record<string, unknown>) => boolean;
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
    const quick = reads ? quickCheck(atom) : undefined;
    compiled.push({
      atom, reads, whenAbsent, resourceType: (empty as { resourceType?: unknown } | undefined)?.resourceType,
      ...(quick ? { surelyHolds: (object: Record<string, unknown>) => quick(object) === true } : {}),
    });
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
  if (constraint.surelyHolds?.(value.value as Record<string, unknown>)) return true;
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

/**
 * FHIRPath's three-valued result of a {@link quickCheck} term on an object: true, false, empty (`[]`), or undefined
 * when it cannot be read without Medplum.
 */
type Quick = true | false | 'empty' | undefined;

/**
 * A reader of an expression on a JSON object, for expressions made only of `or`, `and` and terms on a member of the
 * object: `member.exists()` and `member = 'text'` (undefined for any other expression). It reads a member only when
 * it is plainly there or plainly absent: no other key giving it beside it (`_member`, a primitive's extensions, or a
 * choice `memberType`: {@link namesMember}), and a present value that is a non-empty string, a number, a boolean, an object with members or an array
 * of such values; anything else is undefined, which leaves the expression to Medplum.
 *
 * Only a true result is used, and `or` and `and` can only lose truth where a term reads false or empty that Medplum
 * would read true: the verdict is Medplum's whenever the reader says true, and Medplum's own otherwise.
 */
export function quickCheck(atom: unknown): ((object: Record<string, unknown>) => Quick) | undefined {
  if (atom instanceof FhirPathAtom) return quickCheck(atom.child);
  if (atom instanceof OrAtom || atom instanceof AndAtom) {
    const left = quickCheck(atom.left);
    const right = quickCheck(atom.right);
    if (!left || !right) return undefined;
    return atom instanceof OrAtom ? (object) => or(left(object), right(object)) : (object) => and(left(object), right(object));
  }
  if (atom instanceof DotAtom && atom.left instanceof SymbolAtom && atom.right instanceof FunctionAtom && atom.right.name === 'exists' && atom.right.args.length === 0) {
    const name = atom.left.name;
    if (!plainName(name)) return undefined;
    return (object) => {
      const value = plainMember(object, name);
      return value === undefined ? undefined : value !== ABSENT;
    };
  }
  if (atom instanceof EqualsAtom && atom.left instanceof SymbolAtom && atom.right instanceof LiteralAtom && atom.right.value.type === 'string') {
    const name = atom.left.name;
    const text = atom.right.value.value as string;
    if (!plainName(name)) return undefined;
    return (object) => {
      const value = plainMember(object, name);
      if (value === ABSENT) return 'empty';
      return typeof value === 'string' ? value === text : undefined;
    };
  }
  return undefined;
}

/** A member name as JSON holds it (not a variable, a quoted name or a type). */
const plainName = (name: string): boolean => /^[a-z][A-Za-z0-9]*$/.test(name);

const ABSENT = Symbol('absent');

/** The member's JSON value when it is plainly present, {@link ABSENT} when plainly absent, else undefined. */
function plainMember(object: Record<string, unknown>, name: string): unknown {
  for (const key in object) if (key !== name && namesMember(key, name)) return undefined;
  const value = object[name];
  if (value === undefined) return ABSENT;
  if (Array.isArray(value)) return value.length > 0 && value.every(plainValue) ? value : undefined;
  return plainValue(value) ? value : undefined;
}

/** A value Medplum surely reads as present: a non-empty string, a number, a boolean or an object with members. */
function plainValue(value: unknown): boolean {
  if (typeof value === 'string') return value.trim() !== '';
  if (typeof value === 'number' || typeof value === 'boolean') return true;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  for (const _ in value) return true;
  return false;
}

/** FHIRPath's `or` on single results (unknown stays unknown unless the other side is true). */
function or(a: Quick, b: Quick): Quick {
  if (a === true || b === true) return true;
  if (a === undefined || b === undefined) return undefined;
  return a === false && b === false ? false : 'empty';
}

/** FHIRPath's `and` on single results (unknown stays unknown unless the other side is false). */
function and(a: Quick, b: Quick): Quick {
  if (a === false || b === false) return false;
  if (a === undefined || b === undefined) return undefined;
  return a === true && b === true ? true : 'empty';
}

/** Whether an object has a member of one of these names (as `name`, `_name` or a choice `nameType`). */
function readsAny(object: Record<string, unknown>, names: readonly string[]): boolean {
  for (const key of Object.keys(object)) for (const name of names) if (namesMember(key, name)) return true;
  return false;
}

/** Whether a JSON key gives a member: as `name`, `_name` or a choice `nameType` (or `_nameType`). */
function namesMember(key: string, name: string): boolean {
  if (key === name || key === `_${name}`) return true;
  const start = key.startsWith('_') ? 1 : 0;
  if (!key.startsWith(name, start) || key.length <= name.length + start) return false;
  const next = key.charCodeAt(name.length + start);
  return next >= 65 && next <= 90;
}
