/** Types for `zipcode-to-timezone` (it ships none): a US ZIP code's IANA time zone. */
declare module 'zipcode-to-timezone' {
  /** The IANA zone of a 5-digit US ZIP code, or null when the code is unknown. */
  export function lookup(zip: string): string | null;
}
