/**
 * Pay links: the short, signed, expiring token that outreach puts in a text message
 * (`https://pay.example-clinic.com/p/<token>`), and the light identity check a patient passes before any
 * balance detail is shown.
 *
 * Token layout (24 bytes, base64url without padding = exactly 32 characters):
 *
 * | bytes | field |
 * |---|---|
 * | 1  | key id (0–255): which signing key of the key ring made the MAC (rotation) |
 * | 9  | link id: 72 random bits; the server maps it to one guarantor (the `pay_links` row), so revocation, audit of every open and the guarantor scope live server-side |
 * | 4  | expiry, unsigned big-endian Unix seconds (valid until 2106) |
 * | 10 | MAC: HMAC-SHA256 truncated to 80 bits over a domain label, the 14 bytes above and the guarantor id |
 *
 * Why 80 bits of MAC: truncating HMAC is sound (RFC 2104 §5, NIST SP 800-107r1 §5.3.3 accepts ≥ 32 bits and
 * recommends ≥ 64); a forger can only guess online, one request per guess, against a rate-limited pay page.
 * Even at a million guesses a second, an expected 2^79 guesses take ~1.9 × 10^10 years. Because the guarantor
 * id is inside the MAC but not in the token, a link is valid only for the guarantor the server's row names:
 * a link row re-pointed to another guarantor (bug or tampering) fails verification.
 * The link id is random rather than a counter so that links are not enumerable even when the MAC key leaks.
 *
 * The full URL is 30 + 32 = 62 characters on `https://pay.example-clinic.com/p/`, leaving ~98 of the 160
 * GSM-7 characters of one SMS segment for the message text.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from './clock.ts';

/** Length of a pay-link token in characters. */
export const PAY_LINK_TOKEN_LENGTH = 32;
const RAW_LENGTH = 24;
const LINK_ID_BYTES = 9;
const MAC_BYTES = 10;
const SIGNED_BYTES = 1 + LINK_ID_BYTES + 4;
const DOMAIN = Buffer.from('settle/pay-link/v1\0', 'utf8');
/** The shortest signing key accepted (HMAC-SHA256 keys should carry at least 256 bits). */
export const MIN_KEY_BYTES = 32;

/** Signing keys by id; `current` signs new links, every key in `keys` verifies. */
export interface PayLinkKeyRing {
  readonly current: number;
  readonly keys: ReadonlyMap<number, Uint8Array>;
}

/** Why a key ring is unusable. */
export class PayLinkKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PayLinkKeyError';
  }
}

/**
 * A key ring from `{ id: base64url-or-base64 key }` text (as held in an env var, e.g.
 * `SETTLE_PAY_LINK_KEYS=2:…,1:…`), or from raw bytes.
 * @throws PayLinkKeyError when the current key is missing, an id is not 0–255 or a key is shorter than 32 bytes.
 */
export function payLinkKeyRing(current: number, keys: Iterable<readonly [number, Uint8Array | string]>): PayLinkKeyRing {
  const map = new Map<number, Uint8Array>();
  for (const [id, key] of keys) {
    if (!Number.isInteger(id) || id < 0 || id > 255) throw new PayLinkKeyError(`pay-link key id ${id} is not an integer 0–255`);
    const bytes = typeof key === 'string' ? Buffer.from(key, 'base64url') : key;
    if (bytes.length < MIN_KEY_BYTES) throw new PayLinkKeyError(`pay-link key ${id} has ${bytes.length} bytes; at least ${MIN_KEY_BYTES} are required`);
    map.set(id, bytes);
  }
  if (!map.has(current)) throw new PayLinkKeyError(`the current pay-link key ${current} is not in the key ring`);
  return { current, keys: map };
}

/**
 * Parses `"2:base64url,1:base64url"` (the current key first) into a key ring.
 * @throws PayLinkKeyError on malformed text.
 */
export function parsePayLinkKeys(text: string): PayLinkKeyRing {
  const entries = text.split(',').map((part) => part.trim()).filter((part) => part !== '').map((part) => {
    const match = /^(\d{1,3}):([A-Za-z0-9_\-+/=]+)$/.exec(part);
    if (!match) throw new PayLinkKeyError('pay-link keys must look like "<id>:<base64url key>[,<id>:<key>…]"');
    return [Number(match[1]), match[2]!] as const;
  });
  if (entries.length === 0) throw new PayLinkKeyError('no pay-link keys given');
  return payLinkKeyRing(entries[0]![0], entries);
}

/** A freshly issued pay link: store `linkId → guarantorId, expiresAt` before sending `token`. */
export interface IssuedPayLink {
  readonly token: string;
  /** 18 lower-case hex characters; the server-side key of the link row. */
  readonly linkId: string;
  readonly guarantorId: string;
  readonly expiresAt: Date;
  readonly keyId: number;
}

export interface IssuePayLinkOptions {
  /** Opaque guarantor id (never a name or MRN). */
  readonly guarantorId: string;
  /** How long the link is valid, in seconds (e.g. 30 days = 2_592_000). */
  readonly ttlSeconds: number;
  readonly clock: Clock;
  readonly keyRing: PayLinkKeyRing;
  /** Random bytes source; tests may inject a deterministic one. */
  readonly random?: (size: number) => Uint8Array;
}

function mac(key: Uint8Array, signed: Uint8Array, guarantorId: string): Buffer {
  return createHmac('sha256', key).update(DOMAIN).update(signed).update(guarantorId, 'utf8').digest().subarray(0, MAC_BYTES);
}

/** Issues a signed pay link for one guarantor. @throws RangeError on a bad ttl or guarantor id. */
export function issuePayLink(options: IssuePayLinkOptions): IssuedPayLink {
  const { guarantorId, ttlSeconds, clock, keyRing } = options;
  if (typeof guarantorId !== 'string' || guarantorId === '') throw new RangeError('a pay link needs a guarantor id');
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0) throw new RangeError('ttlSeconds must be a positive integer');
  const expires = Math.floor(clock.now().getTime() / 1000) + ttlSeconds;
  if (expires > 0xffff_ffff) throw new RangeError('the expiry is beyond 2106');
  const linkIdBytes = (options.random ?? randomBytes)(LINK_ID_BYTES);
  if (linkIdBytes.length !== LINK_ID_BYTES) throw new RangeError(`the random source must return ${LINK_ID_BYTES} bytes`);
  const raw = Buffer.alloc(RAW_LENGTH);
  raw[0] = keyRing.current;
  raw.set(linkIdBytes, 1);
  raw.writeUInt32BE(expires, 1 + LINK_ID_BYTES);
  const key = keyRing.keys.get(keyRing.current)!;
  mac(key, raw.subarray(0, SIGNED_BYTES), guarantorId).copy(raw, SIGNED_BYTES);
  return {
    token: raw.toString('base64url'),
    linkId: Buffer.from(linkIdBytes).toString('hex'),
    guarantorId,
    expiresAt: new Date(expires * 1000),
    keyId: keyRing.current,
  };
}

/** The unverified fields of a well-formed token. */
export interface DecodedPayLink {
  readonly keyId: number;
  readonly linkId: string;
  readonly expiresAt: Date;
}

const TOKEN = /^[A-Za-z0-9_-]{32}$/;

/**
 * Reads a token's fields without checking its MAC: the first step of verification, to find the link row.
 * Returns `undefined` for anything that is not a well-formed token.
 */
export function decodePayLink(token: unknown): DecodedPayLink | undefined {
  if (typeof token !== 'string' || !TOKEN.test(token)) return undefined;
  const raw = Buffer.from(token, 'base64url');
  // Reject non-canonical encodings (the last character's unused bits set), so a token has one spelling.
  if (raw.length !== RAW_LENGTH || raw.toString('base64url') !== token) return undefined;
  return {
    keyId: raw[0]!,
    linkId: raw.subarray(1, 1 + LINK_ID_BYTES).toString('hex'),
    expiresAt: new Date(raw.readUInt32BE(1 + LINK_ID_BYTES) * 1000),
  };
}

/** Why a pay link was refused; each maps to a stable API problem `code`. */
export type PayLinkFailure =
  | 'malformed' // not a token at all
  | 'unknown-link' // no such link row (never issued, or purged)
  | 'revoked' // the link row says revoked
  | 'unknown-key' // signed with a key that has been retired from the key ring
  | 'bad-signature' // the MAC does not match (tampered, or another guarantor's link)
  | 'expired';

export type PayLinkVerification =
  | { readonly ok: true; readonly linkId: string; readonly guarantorId: string; readonly expiresAt: Date; readonly keyId: number }
  | { readonly ok: false; readonly reason: PayLinkFailure; readonly linkId?: string };

/** What the server knows of a link id. */
export interface PayLinkRecord {
  readonly guarantorId: string;
  readonly revoked?: boolean;
}

export interface VerifyPayLinkOptions {
  readonly clock: Clock;
  readonly keyRing: PayLinkKeyRing;
  /** Finds the link row; `undefined` when there is none. May be async (a database read). */
  readonly lookup: (linkId: string) => PayLinkRecord | undefined | Promise<PayLinkRecord | undefined>;
}

/**
 * Verifies a token: well-formed, known link, signed by a key of the ring for the guarantor the link row names,
 * not revoked and not expired (the expiry instant itself is expired). The signature is checked before
 * expiry, so a tampered expiry is reported as `bad-signature`, not `expired`.
 */
export async function verifyPayLink(token: unknown, options: VerifyPayLinkOptions): Promise<PayLinkVerification> {
  const decoded = decodePayLink(token);
  if (!decoded) return { ok: false, reason: 'malformed' };
  const { linkId, keyId, expiresAt } = decoded;
  const key = options.keyRing.keys.get(keyId);
  if (!key) return { ok: false, reason: 'unknown-key', linkId };
  const record = await options.lookup(linkId);
  if (!record) return { ok: false, reason: 'unknown-link', linkId };
  const raw = Buffer.from(token as string, 'base64url');
  const expected = mac(key, raw.subarray(0, SIGNED_BYTES), record.guarantorId);
  if (!timingSafeEqual(expected, raw.subarray(SIGNED_BYTES))) return { ok: false, reason: 'bad-signature', linkId };
  if (record.revoked) return { ok: false, reason: 'revoked', linkId };
  if (options.clock.now().getTime() >= expiresAt.getTime()) return { ok: false, reason: 'expired', linkId };
  return { ok: true, linkId, guarantorId: record.guarantorId, expiresAt, keyId };
}

/** The pay-page URL for a token, on the practice's pay host (`https://pay.example-clinic.com`). */
export function payLinkUrl(baseUrl: string, token: string): string {
  return `${baseUrl.replace(/\/+$/, '')}/p/${token}`;
}

/**
 * The token of an already issued link, computed again from its row (the same key, link id, expiry and guarantor
 * give the same token), so a link can be sent again without the token being stored anywhere.
 * @throws PayLinkKeyError when the link's key is no longer in the key ring.
 */
export function payLinkToken(link: { readonly linkId: string; readonly guarantorId: string; readonly expiresAt: Date; readonly keyId: number }, keyRing: PayLinkKeyRing): string {
  const key = keyRing.keys.get(link.keyId);
  if (!key) throw new PayLinkKeyError(`pay-link key ${link.keyId} is not in the key ring`);
  if (!/^[0-9a-f]{18}$/.test(link.linkId)) throw new RangeError('a link id is 18 lower-case hex characters');
  const raw = Buffer.alloc(RAW_LENGTH);
  raw[0] = link.keyId;
  Buffer.from(link.linkId, 'hex').copy(raw, 1);
  raw.writeUInt32BE(Math.floor(link.expiresAt.getTime() / 1000), 1 + LINK_ID_BYTES);
  mac(key, raw.subarray(0, SIGNED_BYTES), link.guarantorId).copy(raw, SIGNED_BYTES);
  return raw.toString('base64url');
}
