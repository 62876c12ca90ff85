/**
 * Backfill of the analytics demographics of patients stored before migration 0017: their birth year and ZIP3
 * (`patients.birth_year`, `patients.zip3`) come from the encrypted birth date and address, which the ledger
 * only turned into those two columns from 0017 on. Decrypts in batches (keyset by id), fills only what is still
 * missing, and changes nothing on a second run: idempotent. A field that cannot be decrypted is counted and left
 * as it is (its patient's id is logged, never the field).
 */
import type { PersonContact } from '../domain/contact.ts';
import { birthYear, zip3 } from '../domain/safe-harbor.ts';
import type { Database } from '../store/database.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';

/** What a backfill did. */
export interface DemographicsBackfill {
  /** Patients with a birth date or address and no birth year or ZIP3 yet, looked at. */
  scanned: number;
  birthYears: number;
  zip3s: number;
  /** Fields that could not be decrypted (a key no longer configured, or a damaged ciphertext). */
  undecryptable: number;
}

/** Patients per batch (one short transaction each). */
export const BACKFILL_BATCH_SIZE = 500;

interface Row {
  id: string;
  birth_date_enc: string | null;
  address_enc: string | null;
}

/**
 * Fills `birth_year` and `zip3` of every patient (of every practice) that has the encrypted field but not the
 * clear column yet, `batchSize` patients at a time.
 * @param onUndecryptable told the id of a patient whose field could not be decrypted.
 */
export async function backfillDemographics(
  db: Database,
  cipher: PhiCipher,
  options: { batchSize?: number; onUndecryptable?: (patientId: string, field: 'birthDate' | 'address') => void } = {},
): Promise<DemographicsBackfill> {
  const batchSize = options.batchSize ?? BACKFILL_BATCH_SIZE;
  const done: DemographicsBackfill = { scanned: 0, birthYears: 0, zip3s: 0, undecryptable: 0 };
  const open = <T>(token: string, field: 'birthDate' | 'address', id: string): T | undefined => {
    try {
      return JSON.parse(cipher.decrypt(token, `patients.${field}`)) as T;
    } catch {
      done.undecryptable += 1;
      options.onUndecryptable?.(id, field);
      return undefined;
    }
  };
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const { rows } = await db.pool.query<Row>(
      `SELECT id, CASE WHEN birth_year IS NULL THEN birth_date_enc END AS birth_date_enc, CASE WHEN zip3 IS NULL THEN address_enc END AS address_enc
       FROM patients
       WHERE id > $1 AND ((birth_year IS NULL AND birth_date_enc IS NOT NULL) OR (zip3 IS NULL AND address_enc IS NOT NULL))
       ORDER BY id LIMIT $2`,
      [after, batchSize],
    );
    if (rows.length === 0) return done;
    after = rows.at(-1)!.id;
    done.scanned += rows.length;
    const ids: string[] = [];
    const years: (number | null)[] = [];
    const areas: (string | null)[] = [];
    for (const row of rows) {
      const birthDate = row.birth_date_enc ? open<PersonContact['birthDate']>(row.birth_date_enc, 'birthDate', row.id) : undefined;
      const address = row.address_enc ? open<PersonContact['address']>(row.address_enc, 'address', row.id) : undefined;
      const year = birthDate === undefined ? null : birthYear(birthDate);
      const area = address ? zip3(address.postalCode, address.country) : null;
      if (year === null && area === null) continue;
      ids.push(row.id);
      years.push(year);
      areas.push(area);
    }
    if (ids.length === 0) continue;
    // Only what is still missing: a contact written meanwhile (with its own birth year and ZIP3) is kept.
    const yearsSet = await db.pool.query(
      `UPDATE patients p SET birth_year = x.birth_year FROM unnest($1::uuid[], $2::smallint[]) AS x(id, birth_year)
       WHERE p.id = x.id AND p.birth_year IS NULL AND x.birth_year IS NOT NULL`,
      [ids, years],
    );
    const areasSet = await db.pool.query(
      `UPDATE patients p SET zip3 = x.zip3 FROM unnest($1::uuid[], $2::text[]) AS x(id, zip3)
       WHERE p.id = x.id AND p.zip3 IS NULL AND x.zip3 IS NOT NULL`,
      [ids, areas],
    );
    done.birthYears += yearsSet.rowCount ?? 0;
    done.zip3s += areasSet.rowCount ?? 0;
  }
}
