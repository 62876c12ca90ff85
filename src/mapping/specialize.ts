/**
 * Per-use copies of closure factories. V8 keeps type feedback and optimised code per function literal, so every
 * closure made by one factory shares them: a factory used for twenty different expressions ends up with
 * megamorphic property reads and calls it cannot inline. A copy compiled from the factory's source text is a new
 * literal, with feedback of its own, so each compiled expression runs as if it had been written out by hand.
 */

/**
 * A fresh copy of `factory`, compiled from its source text. The factory must be self-contained: it may use its
 * parameters and globals only (pass helpers in as arguments), since the copy does not see the module's scope.
 */
export function specialize<F extends (...args: never[]) => unknown>(factory: F): F {
  return new Function(`"use strict"; return (${factory.toString()});`)() as F;
}
