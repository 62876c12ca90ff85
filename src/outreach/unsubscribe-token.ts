/**
 * Signed email unsubscribe tokens: the link in an email's footer and `List-Unsubscribe` header.
 *
 * A token names the outbox row the email was sent from, never the address: the unsubscribe page finds the
 * address by decrypting that row, so no PHI is ever in a URL, a proxy log or a mail provider's one-click POST.
 *
 * Layout (29 bytes, base64url without padding = 39 characters): 1 byte version (1), the 16 bytes of the outbox
 * row's UUID, and a 12-byte (96-bit) truncated HMAC-SHA256 over a domain label and the 17 bytes before it.
 * The key is derived from the PHI blind-index key (already required in production and generated for the
 * embedded database), through the blind index of a fixed label that no real email address can equal (it holds
 * a NUL), so there is no extra secret to manage and every process sharing a database computes the same key.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { PhiCipher } from '../store/phi-crypto.ts';

const VERSION = 1;
const MAC_BYTES = 12;
const DOMAIN = Buffer.from('settle/unsubscribe/v1\0', 'utf8');
const KEY_LABEL = 'settle\u0000unsubscribe-token-key/v1';
/** Length of a token in characters. */
export const UNSUBSCRIBE_TOKEN_LENGTH = 39;
/** The public path of the unsubscribe page (`/u/<token>`). */
export const UNSUBSCRIBE_PATH = '/u';

/** The HMAC key of unsubscribe tokens, derived from the cipher's blind-index key. */
export function unsubscribeKey(cipher: PhiCipher): Buffer {
  return Buffer.from(cipher.blindIndex('email', KEY_LABEL), 'hex');
}

function mac(key: Uint8Array, signed: Buffer): Buffer {
  return createHmac('sha256', key).update(DOMAIN).update(signed).digest().subarray(0, MAC_BYTES);
}

/**
 * Signs a token for an outbox row.
 * @throws RangeError when the id is not a UUID.
 */
export function signUnsubscribeToken(key: Uint8Array, outboxId: string): string {
  const hex = outboxId.replace(/-/g, '');
  if (!/^[0-9a-f]{32}$/i.test(hex)) throw new RangeError('an unsubscribe token names an outbox row by its UUID');
  const signed = Buffer.concat([Buffer.of(VERSION), Buffer.from(hex, 'hex')]);
  return Buffer.concat([signed, mac(key, signed)]).toString('base64url');
}

/** The outbox row a token names, or undefined when the token is malformed or its signature does not verify. */
export function verifyUnsubscribeToken(key: Uint8Array, token: string): { outboxId: string } | undefined {
  if (token.length !== UNSUBSCRIBE_TOKEN_LENGTH || !/^[A-Za-z0-9_-]+$/.test(token)) return undefined;
  const raw = Buffer.from(token, 'base64url');
  if (raw.length !== 1 + 16 + MAC_BYTES || raw.toString('base64url') !== token || raw[0] !== VERSION) return undefined;
  const signed = raw.subarray(0, 17);
  if (!timingSafeEqual(mac(key, signed), raw.subarray(17))) return undefined;
  const hex = signed.subarray(1).toString('hex');
  return { outboxId: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}` };
}

/**
 * The working unsubscribe URL of an email (what the delivery job puts in {@link OutboundMessage.unsubscribeUrl}).
 * @param publicUrl - SETTLE_PUBLIC_URL (default `http://localhost:8080`).
 */
export function unsubscribeUrlFor(cipher: PhiCipher, publicUrl: string | undefined, outboxId: string): string {
  const base = (publicUrl ?? 'http://localhost:8080').replace(/\/+$/, '');
  return `${base}${UNSUBSCRIBE_PATH}/${signUnsubscribeToken(unsubscribeKey(cipher), outboxId)}`;
}
