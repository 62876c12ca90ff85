/**
 * Patient and guarantor identity and contact, as mappings produce them and the ledger stores them (encrypted).
 */

/** An identifier at the source: the same system and value name the same person in a practice. */
export interface PersonIdentifier {
  /** Identifier namespace (FHIR `Identifier.system`, an HL7 assigning authority, a mapping-declared constant). */
  system: string;
  value: string;
}

/** A postal address. */
export interface PostalAddress {
  lines?: string[];
  city?: string;
  state?: string;
  postalCode?: string;
  country?: string;
}

/** A person's name. */
export interface PersonName {
  family?: string;
  given?: string[];
  /** The full name as the source wrote it, when it gives no parts. */
  text?: string;
}

/** Contact details; each field is PHI and stored encrypted. An absent field leaves what is stored unchanged. */
export interface PersonContact {
  name?: PersonName;
  phones?: string[];
  email?: string;
  address?: PostalAddress;
  /** BCP 47 (`en`, `es`). */
  language?: string;
  /** `YYYY-MM-DD`. */
  birthDate?: string;
}

/** The contact fields, in storage order. */
export const CONTACT_FIELDS = ['name', 'phones', 'email', 'address', 'language', 'birthDate'] as const;
export type ContactField = (typeof CONTACT_FIELDS)[number];
