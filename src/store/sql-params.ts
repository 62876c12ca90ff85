/**
 * The parameters of one SQL statement built in parts (CTEs written by different functions, such as a payment's
 * change, its write-backs and its audit event in the statement that finishes a Stripe event): each part adds its
 * values here and writes the `$n` it gets back, so no part needs to know how many came before it.
 */
export class SqlParams {
  /** The values, in `$n` order: pass them with the statement. */
  readonly values: unknown[] = [];

  /** @returns the placeholder (`$n`) of a new parameter holding `value`. */
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

/**
 * A PostgreSQL array literal of these values, for a `$n::type[]` parameter: numbers as they are, booleans as t or f,
 * strings quoted with `"` and `\` escaped, null as NULL. The driver's conversion does the same for any value, element
 * by element, several times slower: batches of thousands of values (ledger lines, a batch's parties) use this.
 */
export function arrayLiteral(values: readonly (string | number | boolean | null)[]): string {
  let literal = '{';
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (i > 0) literal += ',';
    if (value === null || value === undefined) literal += 'NULL';
    else if (typeof value === 'number') literal += value;
    else if (typeof value === 'boolean') literal += value ? 't' : 'f';
    else literal += `"${/["\\]/.test(value) ? value.replace(/["\\]/g, '\\$&') : value}"`;
  }
  return `${literal}}`;
}
