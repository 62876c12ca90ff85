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
