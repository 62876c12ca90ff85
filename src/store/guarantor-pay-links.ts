/**
 * Pay links for outreach: `payLinkForGuarantor` returns the URL to put in a text, email or letter, issuing a
 * link only when the guarantor has no usable one (signed with the current key, not revoked, and valid for at
 * least another week), so a reminder sends the same link as the first message.
 *
 * The URL is `<public URL>/p/<32-character token>`: 62 characters on `https://pay.example-clinic.com`, which
 * leaves about 98 characters of a 160-character SMS segment for the message.
 */
import type { Clock } from '../domain/clock.ts';
import type { Database } from './database.ts';
import { PayLinkRepository } from './pay-links.ts';
import { issuePayLink, payLinkToken, payLinkUrl, type PayLinkKeyRing } from '../domain/pay-link.ts';

/** How long a new link is valid: 30 days. */
export const PAY_LINK_TTL_SECONDS = 30 * 24 * 60 * 60;
/** A link expiring sooner than this is not sent again; a new one is issued. */
export const PAY_LINK_REUSE_MARGIN_MS = 7 * 24 * 60 * 60 * 1000;
/** Where the pay page is served when no public URL is configured (the engine's default address). */
export const DEFAULT_PAY_BASE_URL = 'http://127.0.0.1:8080';

/** What {@link payLinkForGuarantor} needs. */
export interface PayLinkServiceDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly keys: PayLinkKeyRing;
  /** `SETTLE_PUBLIC_URL`; unset: {@link DEFAULT_PAY_BASE_URL}. */
  readonly publicUrl: string | undefined;
}

/**
 * The pay-page URL for a guarantor's open balances.
 * @throws RangeError when the guarantor id is empty; database errors as they are (a guarantor of another
 *   practice, or none, fails the foreign key).
 */
export async function payLinkForGuarantor(deps: PayLinkServiceDeps, input: { practiceId: string; guarantorId: string }): Promise<string> {
  const links = new PayLinkRepository(deps.db, deps.clock);
  const base = deps.publicUrl ?? DEFAULT_PAY_BASE_URL;
  const reusable = await links.findReusable(input.practiceId, input.guarantorId, deps.keys.current, new Date(deps.clock.now().getTime() + PAY_LINK_REUSE_MARGIN_MS));
  if (reusable) return payLinkUrl(base, payLinkToken(reusable, deps.keys));
  const issued = issuePayLink({ guarantorId: input.guarantorId, ttlSeconds: PAY_LINK_TTL_SECONDS, clock: deps.clock, keyRing: deps.keys });
  await links.create({ linkId: issued.linkId, practiceId: input.practiceId, guarantorId: input.guarantorId, keyId: issued.keyId, expiresAt: issued.expiresAt });
  return payLinkUrl(base, issued.token);
}
