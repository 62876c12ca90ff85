/**
 * Which policy a practice follows: its own `policies/<practice slug>.json` when there is one, else
 * `policies/default.json`. Every policy is parsed (and so checked) once, when the book is made; the planner
 * reads the current book at every run, so a changed policy applies from each balance's next step on.
 */
import { parsePolicy, type Policy } from '../domain/policy.ts';

/** The name of the policy practices without their own follow. */
export const DEFAULT_POLICY_NAME = 'default';

/** Parsed policies by name. */
export class PolicyBook {
  readonly #byName: ReadonlyMap<string, Policy>;

  /** A book of already parsed policies (use {@link PolicyBook.from} for documents). */
  constructor(byName: ReadonlyMap<string, Policy>) {
    this.#byName = byName;
  }

  /**
   * Parses every policy document (already checked against `policies/policy.schema.json`).
   * @throws PolicyError naming the policy when one cannot be used.
   */
  static from(documents: readonly { name: string; data: Record<string, unknown> }[]): PolicyBook {
    return new PolicyBook(new Map(documents.map((d) => [d.name, parsePolicy(d.data)])));
  }

  /** The practice's own policy (named by its slug), else the default; undefined when neither exists. */
  forPractice(slug: string): Policy | undefined {
    return this.#byName.get(slug) ?? this.#byName.get(DEFAULT_POLICY_NAME);
  }

  /** The names of the policies in the book. */
  names(): string[] {
    return [...this.#byName.keys()];
  }
}
