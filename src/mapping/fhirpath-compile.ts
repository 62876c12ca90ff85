/**
 * Compiles the FHIRPath that mappings use most (paths, `where`, `first`, `exists`, `empty`, `not`, equality,
 * `and`/`or`, `|`, `matches`, `replaceMatches`, `startsWith`, `%resource`) from Medplum's parsed AST into
 * closures over plain JSON, once, at load. Anything else returns undefined and is evaluated by Medplum's
 * `evalFhirPathTyped` on the pre-parsed AST instead; tests check both agree on the shipped mappings.
 */
import {
  AndAtom,
  DotAtom,
  EqualsAtom,
  FhirPathAtom,
  FunctionAtom,
  LiteralAtom,
  NotEqualsAtom,
  OrAtom,
  SymbolAtom,
  UnionAtom,
  type Atom,
} from '@medplum/core';

const TRUE: readonly unknown[] = Object.freeze([true]);
const FALSE: readonly unknown[] = Object.freeze([false]);

/** A compiled expression: input collection and the resource (`%resource`) → output collection (do not mutate it). */
export type CompiledPath = (input: readonly unknown[], resource: unknown) => readonly unknown[];

/** Compiles an AST, or returns undefined when it uses something this compiler does not handle. */
export function compileFhirPathAst(atom: Atom): CompiledPath | undefined {
  if (atom instanceof FhirPathAtom) return compileFhirPathAst(atom.child);
  if (atom instanceof LiteralAtom) {
    const value = atom.value.value;
    return () => [value];
  }
  if (atom instanceof SymbolAtom) return symbol(atom.name);
  if (atom instanceof DotAtom) {
    const left = compileFhirPathAst(atom.left);
    const right = compileFhirPathAst(atom.right);
    if (!left || !right) return undefined;
    return (input, resource) => right(left(input, resource), resource);
  }
  if (atom instanceof UnionAtom) {
    const left = compileFhirPathAst(atom.left);
    const right = compileFhirPathAst(atom.right);
    if (!left || !right) return undefined;
    return (input, resource) => {
      const out: unknown[] = [];
      for (const v of [...left(input, resource), ...right(input, resource)]) if (!out.some((o) => same(o, v))) out.push(v);
      return out;
    };
  }
  if (atom instanceof EqualsAtom || atom instanceof NotEqualsAtom) {
    const left = compileFhirPathAst(atom.left);
    const right = compileFhirPathAst(atom.right);
    if (!left || !right) return undefined;
    const negate = atom instanceof NotEqualsAtom;
    if (atom.right instanceof LiteralAtom && typeof atom.right.value.value !== 'object') {
      // `path = 'literal'`: compare without building the right-hand collection.
      const literal = atom.right.value.value;
      return (input, resource) => {
        const l = left(input, resource);
        if (l.length === 0) return [];
        const equal = l.length === 1 && l[0] === literal;
        return [negate ? !equal : equal];
      };
    }
    return (input, resource) => {
      const l = left(input, resource);
      const r = right(input, resource);
      if (l.length === 0 || r.length === 0) return [];
      const equal = l.length === r.length && l.every((v, i) => same(v, r[i]));
      return [negate ? !equal : equal];
    };
  }
  if (atom instanceof OrAtom || atom instanceof AndAtom) {
    const left = compileFhirPathAst(atom.left);
    const right = compileFhirPathAst(atom.right);
    if (!left || !right) return undefined;
    const isOr = atom instanceof OrAtom;
    // Short-circuits: `x or y` is true when x is, `x and y` false when x is (FHIRPath three-valued logic).
    return isOr
      ? (input, resource) => {
          const l = truth(left(input, resource));
          if (l === true) return TRUE;
          const r = truth(right(input, resource));
          return r === true ? TRUE : l === false && r === false ? FALSE : [];
        }
      : (input, resource) => {
          const l = truth(left(input, resource));
          if (l === false) return FALSE;
          const r = truth(right(input, resource));
          return r === false ? FALSE : l === true && r === true ? TRUE : [];
        };
  }
  if (atom instanceof FunctionAtom) return fn(atom);
  return undefined;
}

function symbol(name: string): CompiledPath | undefined {
  if (name === '%resource' || name === '%context') return (_input, resource) => [resource];
  if (name.startsWith('%') || name.startsWith('$')) return undefined;
  const typeName = /^[A-Z]/.test(name);
  return (input) => {
    const out: unknown[] = [];
    for (const item of input) {
      if (typeof item !== 'object' || item === null) continue;
      const object = item as Record<string, unknown>;
      if (typeName && object.resourceType === name) {
        out.push(item);
        continue;
      }
      let value = object[name];
      if (value === undefined) value = choice(object, name);
      if (value === undefined || value === null) continue;
      if (Array.isArray(value)) {
        for (const v of value) if (v !== null && v !== undefined) out.push(v);
      } else out.push(value);
    }
    return out;
  };
}

/** A choice element (`occurrence` → `occurrenceDateTime`, `occurrencePeriod`). */
function choice(object: Record<string, unknown>, name: string): unknown {
  for (const key in object) {
    if (key.length > name.length && key.startsWith(name) && /[A-Z]/.test(key[name.length]!)) return object[key];
  }
  return undefined;
}

function fn(atom: FunctionAtom): CompiledPath | undefined {
  const literal = (i: number): unknown => (atom.args[i] instanceof LiteralAtom ? (atom.args[i] as LiteralAtom).value.value : undefined);
  const literals = atom.args.every((a) => a instanceof LiteralAtom);
  const singleString = (input: readonly unknown[]) => (input.length === 1 && typeof input[0] === 'string' ? input[0] : undefined);
  switch (atom.name) {
    case 'where':
    case 'exists': {
      if (atom.args.length === 0 && atom.name === 'exists') return (input) => [input.length > 0];
      if (atom.args.length !== 1) return undefined;
      const criterion = compileFhirPathAst(atom.args[0]!);
      if (!criterion) return undefined;
      if (atom.name === 'where') return (input, resource) => input.filter((item) => truth(criterion([item], resource)) === true);
      return (input, resource) => [input.some((item) => truth(criterion([item], resource)) === true)];
    }
    case 'first':
      return atom.args.length === 0 ? (input) => input.slice(0, 1) : undefined;
    case 'last':
      return atom.args.length === 0 ? (input) => input.slice(-1) : undefined;
    case 'empty':
      return atom.args.length === 0 ? (input) => [input.length === 0] : undefined;
    case 'count':
      return atom.args.length === 0 ? (input) => [input.length] : undefined;
    case 'not':
      return atom.args.length === 0
        ? (input) => {
            const t = truth(input);
            return t === undefined ? [] : [!t];
          }
        : undefined;
    case 'matches': {
      if (!literals || typeof literal(0) !== 'string') return undefined;
      const regex = new RegExp(literal(0) as string);
      return (input) => {
        const s = singleString(input);
        return s === undefined ? [] : [regex.test(s)];
      };
    }
    case 'replaceMatches': {
      if (!literals || typeof literal(0) !== 'string' || typeof literal(1) !== 'string') return undefined;
      const regex = new RegExp(literal(0) as string, 'g');
      const substitution = literal(1) as string;
      return (input) => {
        const s = singleString(input);
        return s === undefined ? [] : [s.replace(regex, substitution)];
      };
    }
    case 'startsWith':
    case 'endsWith': {
      if (!literals || typeof literal(0) !== 'string') return undefined;
      const prefix = literal(0) as string;
      const starts = atom.name === 'startsWith';
      return (input) => {
        const s = singleString(input);
        return s === undefined ? [] : [starts ? s.startsWith(prefix) : s.endsWith(prefix)];
      };
    }
    default:
      return undefined;
  }
}

/** FHIRPath singleton evaluation to a boolean: empty is unknown; one boolean is itself; one other item is true. */
function truth(collection: readonly unknown[]): boolean | undefined {
  if (collection.length === 0) return undefined;
  if (collection.length === 1) return typeof collection[0] === 'boolean' ? collection[0] : true;
  return undefined;
}

function same(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a === 'object' && typeof b === 'object' && a !== null && b !== null) return JSON.stringify(a) === JSON.stringify(b);
  return false;
}
