/**
 * Compiles the FHIRPath that mappings use most (paths, `where`, `first`, `exists`, `empty`, `not`, equality,
 * `and`/`or`, `|`, `matches`, `replaceMatches`, `startsWith`, `%resource`) from Medplum's parsed AST into
 * functions over plain JSON, once, at load. Paths (members and `where` filters) are compiled to JavaScript that
 * reads members by name in one walk (`fhirpath-navigate.ts`); the criteria of `where` and `exists` become tests of
 * one item, so filtering builds no collection per item; every other node is its own copy of a small closure
 * (`specialize.ts`), so V8 optimises each expression on its own. Anything else returns undefined and is evaluated by Medplum's `evalFhirPathTyped`
 * on the pre-parsed AST instead; tests check both agree on the shipped mappings and on edge cases.
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
import { compilePathSteps, NONE, pathSteps, type ItemTest } from './fhirpath-navigate.ts';
import { compileReplaceAll } from './regex-replace.ts';
import { specialize } from './specialize.ts';

const TRUE: readonly unknown[] = Object.freeze([true]);
const FALSE: readonly unknown[] = Object.freeze([false]);
const EMPTY: readonly unknown[] = Object.freeze([]);

/** A compiled expression: input collection and the resource (`%resource`) → output collection (do not mutate it). */
export type CompiledPath = (input: readonly unknown[], resource: unknown) => readonly unknown[];

type Truth = boolean | undefined;

/** Constants and helpers the node factories below receive (they are copied by `specialize` and see no module scope). */
interface Kit {
  TRUE: readonly unknown[];
  FALSE: readonly unknown[];
  EMPTY: readonly unknown[];
  /** FHIRPath singleton evaluation to a boolean: empty is unknown; one boolean is itself; one other item is true. */
  truth(collection: readonly unknown[]): Truth;
  /** FHIRPath equality of two items (primitives by value, objects by their JSON). */
  same(a: unknown, b: unknown): boolean;
}

const kit: Kit = {
  TRUE,
  FALSE,
  EMPTY,
  truth: (collection) => (collection.length === 1 ? (typeof collection[0] === 'boolean' ? collection[0] : true) : undefined),
  same: (a, b) => a === b || (typeof a === 'object' && typeof b === 'object' && a !== null && b !== null && JSON.stringify(a) === JSON.stringify(b)),
};

/** Compiles an AST, or returns undefined when it uses something this compiler does not handle. */
export function compileFhirPathAst(atom: Atom): CompiledPath | undefined {
  if (atom instanceof FhirPathAtom) return compileFhirPathAst(atom.child);
  const steps = pathSteps(atom, compileTest);
  if (steps) return compilePathSteps(steps).collect;
  if (atom instanceof LiteralAtom) {
    const value = atom.value.value;
    return () => [value];
  }
  if (atom instanceof SymbolAtom) {
    return atom.name === '%resource' || atom.name === '%context' ? (_input, resource) => [resource] : undefined;
  }
  if (atom instanceof FunctionAtom) return fn(atom);
  if (!(atom instanceof DotAtom || atom instanceof UnionAtom || atom instanceof EqualsAtom || atom instanceof NotEqualsAtom || atom instanceof OrAtom || atom instanceof AndAtom)) {
    return undefined;
  }
  const left = compileFhirPathAst(atom.left);
  const right = compileFhirPathAst(atom.right);
  if (!left || !right) return undefined;
  if (atom instanceof DotAtom) {
    return specialize((left: CompiledPath, right: CompiledPath): CompiledPath => (input, resource) => right(left(input, resource), resource))(left, right);
  }
  if (atom instanceof UnionAtom) {
    return specialize(
      (left: CompiledPath, right: CompiledPath, k: Kit): CompiledPath =>
        (input, resource) => {
          const out: unknown[] = [];
          for (const part of [left(input, resource), right(input, resource)]) {
            for (const v of part) if (!out.some((o) => k.same(o, v))) out.push(v);
          }
          return out;
        },
    )(left, right, kit);
  }
  if (atom instanceof EqualsAtom || atom instanceof NotEqualsAtom) {
    const negate = atom instanceof NotEqualsAtom;
    if (atom.right instanceof LiteralAtom && typeof atom.right.value.value !== 'object') {
      // `path = 'literal'`: compare without building the right-hand collection.
      return specialize(
        (left: CompiledPath, literal: unknown, negate: boolean, k: Kit): CompiledPath =>
          (input, resource) => {
            const l = left(input, resource);
            if (l.length === 0) return k.EMPTY;
            return (l.length === 1 && l[0] === literal) !== negate ? k.TRUE : k.FALSE;
          },
      )(left, atom.right.value.value, negate, kit);
    }
    return specialize(
      (left: CompiledPath, right: CompiledPath, negate: boolean, k: Kit): CompiledPath =>
        (input, resource) => {
          const l = left(input, resource);
          const r = right(input, resource);
          if (l.length === 0 || r.length === 0) return k.EMPTY;
          return (l.length === r.length && l.every((v, i) => k.same(v, r[i]))) !== negate ? k.TRUE : k.FALSE;
        },
    )(left, right, negate, kit);
  }
  // `and`, `or`: three-valued, the right side evaluated only when the left does not decide.
  if (atom instanceof OrAtom) {
    return specialize(
      (left: CompiledPath, right: CompiledPath, k: Kit): CompiledPath =>
        (input, resource) => {
          const l = k.truth(left(input, resource));
          if (l === true) return k.TRUE;
          const r = k.truth(right(input, resource));
          return r === true ? k.TRUE : l === false && r === false ? k.FALSE : k.EMPTY;
        },
    )(left, right, kit);
  }
  return specialize(
    (left: CompiledPath, right: CompiledPath, k: Kit): CompiledPath =>
      (input, resource) => {
        const l = k.truth(left(input, resource));
        if (l === false) return k.FALSE;
        const r = k.truth(right(input, resource));
        return r === false ? k.FALSE : l === true && r === true ? k.TRUE : k.EMPTY;
      },
  )(left, right, kit);
}

/**
 * Compiles a criterion (of `where`, `exists`) to a test of one item: the truth value of the expression on the
 * collection `[item]`, as {@link compileFhirPathAst} would give it, without building collections where it can.
 */
function compileTest(atom: Atom): ItemTest | undefined {
  if (atom instanceof FhirPathAtom) return compileTest(atom.child);
  if ((atom instanceof EqualsAtom || atom instanceof NotEqualsAtom) && atom.right instanceof LiteralAtom && typeof atom.right.value.value !== 'object') {
    const steps = pathSteps(atom.left, compileTest);
    // `path = 'literal'`: equal when the path selects exactly the literal (more than one item is not equal).
    if (steps) {
      return specialize(
        (single: (item: unknown, resource: unknown) => unknown, literal: unknown, negate: boolean, none: symbol): ItemTest =>
          (item, resource) => {
            const value = single(item, resource);
            return value === none ? undefined : (value === literal) !== negate;
          },
      )(compilePathSteps(steps).single, atom.right.value.value, atom instanceof NotEqualsAtom, NONE);
    }
  }
  if (atom instanceof OrAtom || atom instanceof AndAtom) {
    const left = compileTest(atom.left);
    const right = compileTest(atom.right);
    if (!left || !right) return undefined;
    if (atom instanceof OrAtom) {
      return specialize(
        (left: ItemTest, right: ItemTest): ItemTest =>
          (item, resource) => {
            const l = left(item, resource);
            if (l === true) return true;
            const r = right(item, resource);
            return r === true ? true : l === false && r === false ? false : undefined;
          },
      )(left, right);
    }
    return specialize(
      (left: ItemTest, right: ItemTest): ItemTest =>
        (item, resource) => {
          const l = left(item, resource);
          if (l === false) return false;
          const r = right(item, resource);
          return r === false ? false : l === true && r === true ? true : undefined;
        },
    )(left, right);
  }
  const compiled = compileFhirPathAst(atom);
  if (!compiled) return undefined;
  return specialize((compiled: CompiledPath, k: Kit): ItemTest => (item, resource) => k.truth(compiled([item], resource)))(compiled, kit);
}

function fn(atom: FunctionAtom): CompiledPath | undefined {
  const literal = (i: number): unknown => (atom.args[i] instanceof LiteralAtom ? (atom.args[i] as LiteralAtom).value.value : undefined);
  const literals = atom.args.every((a) => a instanceof LiteralAtom);
  const singleString = (input: readonly unknown[]) => (input.length === 1 && typeof input[0] === 'string' ? input[0] : undefined);
  switch (atom.name) {
    // `where` is a step of a path (`fhirpath-navigate.ts`).
    case 'exists': {
      if (atom.args.length === 0) return (input) => (input.length > 0 ? TRUE : FALSE);
      if (atom.args.length !== 1) return undefined;
      const test = compileTest(atom.args[0]!);
      if (!test) return undefined;
      return specialize(
        (test: ItemTest, k: Kit): CompiledPath =>
          (input, resource) => {
            for (let i = 0; i < input.length; i++) if (test(input[i], resource) === true) return k.TRUE;
            return k.FALSE;
          },
      )(test, kit);
    }
    case 'first':
      return atom.args.length === 0 ? (input) => input.slice(0, 1) : undefined;
    case 'last':
      return atom.args.length === 0 ? (input) => input.slice(-1) : undefined;
    case 'empty':
      return atom.args.length === 0 ? (input) => (input.length === 0 ? TRUE : FALSE) : undefined;
    case 'count':
      return atom.args.length === 0 ? (input) => [input.length] : undefined;
    case 'not':
      return atom.args.length === 0
        ? (input) => {
            const t = kit.truth(input);
            return t === undefined ? EMPTY : t ? FALSE : TRUE;
          }
        : undefined;
    case 'matches': {
      if (!literals || typeof literal(0) !== 'string') return undefined;
      const regex = new RegExp(literal(0) as string);
      return (input) => {
        const s = singleString(input);
        return s === undefined ? EMPTY : regex.test(s) ? TRUE : FALSE;
      };
    }
    case 'replaceMatches': {
      if (!literals || typeof literal(0) !== 'string' || typeof literal(1) !== 'string') return undefined;
      const regex = new RegExp(literal(0) as string, 'g');
      // As Medplum: `${name}` in the substitution names a group (JavaScript's `$<name>`).
      const substitution = (literal(1) as string).replaceAll(/\$\{(\w+)\}/g, '$<$1>');
      const replace = compileReplaceAll(regex, substitution) ?? ((s: string) => s.replace(regex, substitution));
      return (input) => {
        const s = singleString(input);
        return s === undefined ? EMPTY : [replace(s)];
      };
    }
    case 'startsWith':
    case 'endsWith': {
      if (!literals || typeof literal(0) !== 'string') return undefined;
      const prefix = literal(0) as string;
      const starts = atom.name === 'startsWith';
      return (input) => {
        const s = singleString(input);
        return s === undefined ? EMPTY : (starts ? s.startsWith(prefix) : s.endsWith(prefix)) ? TRUE : FALSE;
      };
    }
    default:
      return undefined;
  }
}
