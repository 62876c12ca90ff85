/**
 * The recipient's own time zone, from their mailing address, for the rules judged in local time (quiet hours,
 * no-send days, one text a day): planning puts it on the balance it plans ({@link OutreachBalance.timeZone}),
 * and the outbox row keeps the zone the rules were judged in, so delivery re-checks quiet hours in the same zone.
 *
 * A US ZIP code gives its zone (`zipcode-to-timezone`), which places the towns of states split between zones
 * (El Paso is Mountain, Houston Central). Without a known ZIP, a US state (or territory) lying in one zone gives
 * that zone. A split state without a known ZIP, an address outside the US, or no address gives none: the
 * policy's zone applies, else the practice's (`recipientTimeZone` in src/domain/policy.ts).
 */
import { lookup as zipTimeZone } from 'zipcode-to-timezone';
import type { PostalAddress } from '../domain/contact.ts';

const EASTERN = 'America/New_York';
const CENTRAL = 'America/Chicago';
const MOUNTAIN = 'America/Denver';
const PACIFIC = 'America/Los_Angeles';

/** States and territories wholly in one zone, by USPS code. */
const ZONE_BY_STATE: Readonly<Record<string, string>> = {
  CT: EASTERN, DC: EASTERN, DE: EASTERN, GA: EASTERN, MA: EASTERN, MD: EASTERN, ME: EASTERN, NC: EASTERN, NH: EASTERN, NJ: EASTERN,
  NY: EASTERN, OH: EASTERN, PA: EASTERN, RI: EASTERN, SC: EASTERN, VA: EASTERN, VT: EASTERN, WV: EASTERN,
  AL: CENTRAL, AR: CENTRAL, IA: CENTRAL, IL: CENTRAL, LA: CENTRAL, MN: CENTRAL, MO: CENTRAL, MS: CENTRAL, OK: CENTRAL, WI: CENTRAL,
  CO: MOUNTAIN, MT: MOUNTAIN, NM: MOUNTAIN, UT: MOUNTAIN, WY: MOUNTAIN, AZ: 'America/Phoenix',
  CA: PACIFIC, WA: PACIFIC,
  HI: 'Pacific/Honolulu', PR: 'America/Puerto_Rico', VI: 'America/St_Thomas', GU: 'Pacific/Guam', MP: 'Pacific/Saipan', AS: 'Pacific/Pago_Pago',
};

const US = new Set(['', 'US', 'USA', 'UNITED STATES', 'UNITED STATES OF AMERICA']);

/** The IANA zone of a US mailing address, from its ZIP code, else its state when that lies in one zone; undefined when it cannot be told. */
export function addressTimeZone(address: PostalAddress | undefined): string | undefined {
  if (!address || !US.has((address.country ?? '').trim().toUpperCase().replace(/\./g, ''))) return undefined;
  const zip = /^(\d{5})(?:-?\d{4})?$/.exec(address.postalCode?.trim() ?? '')?.[1];
  const byZip = zip ? zipTimeZone(zip) : null;
  if (byZip) return byZip;
  const state = address.state?.trim().toUpperCase();
  return state ? ZONE_BY_STATE[state] : undefined;
}
