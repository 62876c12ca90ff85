/**
 * Navigation of FHIRPath paths (`a.b.c`, `a.where(…).b`) over plain JSON, compiled per path to JavaScript that
 * reads each member by its literal name, in one walk that builds one output collection (not one per step).
 * Semantics of each step, as Medplum's evaluator on JSON resources: a name starting with an upper-case letter
 * also matches a resource of that type (`Invoice.id`); a missing name tries the choice element (`occurrence` →
 * `occurrenceDateTime`); null members are skipped; arrays are flattened; `where` keeps the items its criterion
 * is true for, in order.
 */
import { DotAtom, FhirPathAtom, FunctionAtom, SymbolAtom, type Atom } from '@medplum/core';

/** A `where` criterion as a test of one item (its FHIRPath truth value; undefined when empty). */
export type ItemTest = (item: unknown, resource: unknown) => boolean | undefined;

/** One step of a path: a member, or a `where` filter. */
export type PathStep =
  | {
      readonly name: string;
      /** The name may also be a resource type (it starts with an upper-case letter). */
      readonly typeName: boolean;
    }
  | { readonly filter: ItemTest };

/** {@link CompiledPathSteps.single}'s answer when the path selects nothing. */
export const NONE: unique symbol = Symbol('none');
/** {@link CompiledPathSteps.single}'s answer when the path selects more than one item. */
const MANY: unique symbol = Symbol('many');

/** A path of steps, compiled. */
export interface CompiledPathSteps {
  /** What the path selects from a collection. */
  collect(input: readonly unknown[], resource: unknown): unknown[];
  /** What the path selects from one item, without building a collection when it can: the one value, {@link NONE} or {@link MANY}. */
  single(item: unknown, resource: unknown): unknown;
}

/**
 * The steps of a path (`a`, `a.b.c`, `a.where(…).b`), or undefined when the atom is anything else (variables,
 * other functions, a criterion `compileTest` cannot compile).
 */
export function pathSteps(atom: Atom, compileTest: (criterion: Atom) => ItemTest | undefined): PathStep[] | undefined {
  if (atom instanceof FhirPathAtom) return pathSteps(atom.child, compileTest);
  if (atom instanceof SymbolAtom) {
    if (atom.name.startsWith('%') || atom.name.startsWith('$')) return undefined;
    return [{ name: atom.name, typeName: /^[A-Z]/.test(atom.name) }];
  }
  if (atom instanceof FunctionAtom && atom.name === 'where' && atom.args.length === 1) {
    const filter = compileTest(atom.args[0]!);
    return filter ? [{ filter }] : undefined;
  }
  if (atom instanceof DotAtom) {
    const left = pathSteps(atom.left, compileTest);
    const right = left && pathSteps(atom.right, compileTest);
    return left && right ? [...left, ...right] : undefined;
  }
  return undefined;
}

/**
 * Compiles a path to JavaScript. Names enter the code only as JSON string literals; filters as the functions
 * `f<k>`. `s<k>(v, out, r)` appends what steps k… select from the item v (r: the resource); `single` walks
 * while each step gives one value.
 */
export function compilePathSteps(steps: readonly PathStep[]): CompiledPathSteps {
  const code = steps.map((step, k) => {
    const next = `s${k + 1}`;
    if ('filter' in step) {
      return {
        step: `const f${k} = filters[${k}]; function s${k}(v, out, r) { if (f${k}(v, r) === true) ${next}(v, out, r); }`,
        single: `if (f${k}(v, r) !== true) return NONE;`,
      };
    }
    const name = JSON.stringify(step.name);
    const read = `let c = v[${name}]; if (c === undefined) c = choice(v, ${name}); if (c === undefined || c === null)`;
    const each = `for (let i = 0; i < c.length; i++) { const x = c[i]; if (x !== null && x !== undefined) ${next}(x, out, r); }`;
    return {
      step: `function s${k}(v, out, r) {
        if (typeof v !== 'object' || v === null) return;
        ${step.typeName ? `if (v.resourceType === ${name}) { ${next}(v, out, r); return; }` : ''}
        ${read} return;
        if (Array.isArray(c)) { ${each} } else ${next}(c, out, r);
      }`,
      single: `
        if (typeof v !== 'object' || v === null) return NONE;
        ${step.typeName ? `if (v.resourceType !== ${name})` : ''} {
          ${read} return NONE;
          if (Array.isArray(c)) { const out = []; ${each} return out.length === 0 ? NONE : out.length === 1 ? out[0] : MANY; }
          v = c;
        }`,
    };
  });
  const source = `"use strict";
    ${code.map((c) => c.step).join('\n')}
    function s${steps.length}(v, out) { out.push(v); }
    return {
      collect(input, r) { const out = []; for (let i = 0; i < input.length; i++) s0(input[i], out, r); return out; },
      single(v, r) { ${code.map((c) => c.single).join('\n')} return v; },
    };`;
  const filters = steps.map((step) => ('filter' in step ? step.filter : undefined));
  return new Function('choice', 'NONE', 'MANY', 'filters', source)(choice, NONE, MANY, filters) as CompiledPathSteps;
}

/** The choice element a missing member names (`occurrence` → `occurrenceDateTime`, `occurrencePeriod`), if any. */
function choice(object: Record<string, unknown>, name: string): unknown {
  for (const key in object) {
    if (key.length > name.length && key.startsWith(name)) {
      const next = key.charCodeAt(name.length);
      if (next >= 65 && next <= 90) return object[key];
    }
  }
  return undefined;
}
