/**
 * The practice: the tenant every record of Settle belongs to.
 */

/** A medical practice using Settle. */
export interface Practice {
  id: string;
  /** Short name used in URLs, files and the CLI (`riverside-pediatrics`). */
  slug: string;
  name: string;
  /** IANA time zone of the practice, used when a patient's own is unknown. */
  timeZone: string;
  /** Phone number patients call about their bill. */
  phone: string | null;
  createdAt: Date;
}
