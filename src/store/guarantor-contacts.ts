/**
 * Reading stored contacts back: the one place the encrypted contact columns of `patients` and `guarantors` are
 * decrypted, and the one reader of guarantors' contacts (the patient's own, for a patient who is their own
 * guarantor), for one guarantor or a page of them in one query. A caller names the fields it needs and only
 * those are read and decrypted (PHI minimum necessary: planning never decrypts a birth date).
 */
import { CONTACT_FIELDS, type ContactField, type PersonContact, type PersonIdentifier } from '../domain/contact.ts';
import type { Queryable } from './database.ts';
import type { PhiCipher } from './phi-crypto.ts';

/** The encrypted column of each contact field, in `patients` and `guarantors` alike. */
export const ENC_COLUMNS = {
  name: 'name_enc',
  phones: 'phones_enc',
  email: 'email_enc',
  address: 'address_enc',
  language: 'language_enc',
  birthDate: 'birth_date_enc',
} as const satisfies Record<ContactField, string>;

/** A row's encrypted contact columns (those a query selected). */
type ContactColumns = { readonly [F in ContactField as (typeof ENC_COLUMNS)[F]]?: string | null };

/**
 * The contact `fields` of a `patients` or `guarantors` row (its encrypted columns named as in {@link ENC_COLUMNS}),
 * decrypted with the table's associated data; a field not stored is absent.
 */
export function decryptContact(
  cipher: PhiCipher,
  table: 'patients' | 'guarantors',
  row: ContactColumns,
  fields: readonly ContactField[] = CONTACT_FIELDS,
): PersonContact {
  const contact: Record<string, unknown> = {};
  for (const field of fields) {
    const token = row[ENC_COLUMNS[field]];
    if (token) contact[field] = JSON.parse(cipher.decrypt(token, `${table}.${field}`));
  }
  return contact as PersonContact;
}

/** A guarantor's contact as {@link readGuarantorContacts} gives it. */
export interface GuarantorContact {
  /** The fields asked for, decrypted: the guarantor's own, or the patient's for a patient who is their own guarantor. */
  contact: PersonContact;
  /** The patient who is their own guarantor; null for a guarantor named apart from the patient. */
  selfPatientId: string | null;
  /** The guarantor's identifier at the source (the patient's, for a patient who is their own guarantor). */
  identifier: PersonIdentifier;
}

/**
 * The select-list items of a guarantor's contact `fields`, each under its {@link ENC_COLUMNS} name, for a query reading
 * `guarantors g LEFT JOIN patients p ON p.id = g.self_patient_id`: a patient who is their own guarantor has no
 * contact of their own in `guarantors`, theirs is the patient's (decrypt it as `patients`).
 */
export function guarantorContactColumns(fields: readonly ContactField[]): string[] {
  return fields.map((f) => `CASE WHEN g.self_patient_id IS NULL THEN g.${ENC_COLUMNS[f]} ELSE p.${ENC_COLUMNS[f]} END AS ${ENC_COLUMNS[f]}`);
}

type GuarantorContactRow = { id: string; self_patient_id: string | null; identifier_system: string; identifier_value: string } & ContactColumns;

/**
 * Guarantors' contacts by guarantor id, in one query however many are asked for; an unknown id is absent.
 * @param fields - the contact fields to read and decrypt (all of them by default); the others are never read.
 */
export async function readGuarantorContacts(
  db: Queryable,
  cipher: PhiCipher,
  guarantorIds: readonly string[],
  fields: readonly ContactField[] = CONTACT_FIELDS,
): Promise<Map<string, GuarantorContact>> {
  if (guarantorIds.length === 0) return new Map();
  const { rows } = await db.query<GuarantorContactRow>(
    `SELECT ${[
      'g.id', 'g.self_patient_id', 'coalesce(p.identifier_system, g.identifier_system) AS identifier_system',
      'coalesce(p.identifier_value, g.identifier_value) AS identifier_value', ...guarantorContactColumns(fields),
    ].join(', ')}
     FROM guarantors g LEFT JOIN patients p ON p.id = g.self_patient_id WHERE g.id = ANY($1::uuid[])`,
    [[...new Set(guarantorIds)]],
  );
  return new Map(rows.map((row) => [row.id, {
    contact: decryptContact(cipher, row.self_patient_id ? 'patients' : 'guarantors', row, fields),
    selfPatientId: row.self_patient_id,
    identifier: { system: row.identifier_system, value: row.identifier_value },
  }]));
}
