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

/** Text an array literal must quote: empty, NULL in any letter case, or holding a quote, backslash, brace, comma or white space. */
const NEEDS_QUOTES = /^$|^null$|["\\{},\s]/i;

/** One element of an {@link arrayLiteral}. */
function arrayElement(value: string | number | boolean | null): string {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'number') return String(value);
  if (typeof value === 'boolean') return value ? 't' : 'f';
  if (!NEEDS_QUOTES.test(value)) return value;
  return `"${/["\\]/.test(value) ? value.replace(/["\\]/g, '\\$&') : value}"`;
}

/**
 * A PostgreSQL array literal of these values, for a `$n::type[]` parameter: numbers as they are, booleans as t or f,
 * null as NULL, strings as they are unless PostgreSQL would read them otherwise (empty, NULL, or holding a quote,
 * backslash, brace, comma or white space): those quoted with `"` and `\` escaped. The driver's conversion does the
 * same for any value, element by element, several times slower: batches of thousands of values (ledger lines, a
 * batch's parties) use this. The text is made in one piece (a join), not grown element by element: a batch's
 * columns are tens of kilobytes, and every partial string would be garbage.
 */
export function arrayLiteral(values: readonly (string | number | boolean | null)[]): string {
  if (values.length === 0) return '{}';
  const elements = values.map(arrayElement);
  elements[0] = `{${elements[0]}`;
  elements[elements.length - 1] += '}';
  return elements.join(',');
}
