/**
 * The parts of a birth date and a ZIP code that may be kept in clear for analytics (HIPAA Safe Harbor,
 * 45 CFR 164.514(b)(2)): the year of birth, and the first three digits of a ZIP code, except for the 3-digit
 * areas of 20,000 people or fewer (2000 Census, as HHS lists them), which become `000`.
 */

/** 3-digit ZIP areas with 20,000 people or fewer: never shown, always `000`. */
export const RESTRICTED_ZIP3 = new Set(['036', '059', '063', '102', '203', '556', '692', '790', '821', '823', '830', '831', '878', '879', '884', '890', '893']);

/** The year of a `YYYY-MM-DD` birth date, or null when it is not one. */
export function birthYear(birthDate: string | null | undefined): number | null {
  const match = /^(\d{4})-\d{2}-\d{2}/.exec(birthDate?.trim() ?? '');
  if (!match) return null;
  const year = Number(match[1]);
  return year >= 1800 && year <= 2200 ? year : null;
}

/**
 * The 3-digit ZIP area of a US ZIP code (`02134`, `02134-1234`), `000` for restricted areas; null for anything
 * else, or an address in another country.
 */
export function zip3(postalCode: string | null | undefined, country?: string | null): string | null {
  if (country && !/^(us|usa|united states( of america)?)$/i.test(country.trim())) return null;
  const match = /^(\d{3})\d{2}(?:-?\d{4})?$/.exec(postalCode?.trim() ?? '');
  if (!match) return null;
  return RESTRICTED_ZIP3.has(match[1]!) ? '000' : match[1]!;
}
