/**
 * Field-level encryption of PHI (AES-256-GCM with key ids, so keys can be rotated) and blind indexes
 * (keyed HMACs) that let the engine look a patient up by phone or email without storing either in clear.
 *
 * A ciphertext is one compact, self-describing string:
 * `v1.<keyId>.<iv>.<tag>.<ciphertext>` (the last three base64url), so a value written under an old key
 * still decrypts after a newer key has been added.
 */
import { createCipheriv, createDecipheriv, createHmac, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'winston';

/** One AES-256 key and the id ciphertexts name it by. */
export interface EncryptionKey {
  id: string;
  key: Buffer;
}

/** The keys PHI is protected with. */
export interface Keyring {
  /** Encryption keys, oldest first; new values are encrypted with the last. */
  encryptionKeys: readonly EncryptionKey[];
  /** The HMAC key of the blind indexes (32 bytes). */
  blindIndexKey: Buffer;
}

/** Why a ciphertext could not be decrypted. */
export type PhiCryptoErrorCode = 'malformed' | 'unsupported-version' | 'unknown-key' | 'authentication-failed';

/** A ciphertext that cannot be decrypted. The message names the problem, never the plaintext or a key. */
export class PhiCryptoError extends Error {
  readonly code: PhiCryptoErrorCode;
  constructor(code: PhiCryptoErrorCode, message: string) {
    super(message);
    this.name = 'PhiCryptoError';
    this.code = code;
  }
}

/** Keys that are missing or malformed; carries every problem, each naming where the key came from and its id. */
export class KeyringError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`Invalid PHI keys:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'KeyringError';
    this.problems = problems;
  }
}

const VERSION = 'v1';
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID = /^[A-Za-z0-9_-]+$/;

/** Encrypts and decrypts PHI fields and computes blind indexes, with the keys of a {@link Keyring}. */
export class PhiCipher {
  // Key objects are built once: building one per call was a sixth of daily planning's CPU time.
  readonly #keys: ReadonlyMap<string, KeyObject>;
  readonly #current: { id: string; key: KeyObject };
  readonly #blindIndexKey: KeyObject;

  /**
   * @param keyring - the keys; at least one encryption key.
   * @throws KeyringError when the keyring has no encryption key.
   */
  constructor(keyring: Keyring) {
    const current = keyring.encryptionKeys.at(-1);
    if (!current) throw new KeyringError(['no encryption key: at least one is needed']);
    this.#keys = new Map(keyring.encryptionKeys.map((k) => [k.id, createSecretKey(k.key)]));
    this.#current = { id: current.id, key: this.#keys.get(current.id)! };
    this.#blindIndexKey = createSecretKey(keyring.blindIndexKey);
  }

  /**
   * Encrypts a value with the newest key and a fresh random IV.
   * @param plaintext - the PHI value.
   * @param aad - optional associated data (e.g. `"patient.phone"`) the ciphertext is bound to:
   *   decrypting needs the same value, so a ciphertext copied into another column fails.
   * @returns `v1.<keyId>.<iv>.<tag>.<ciphertext>`.
   */
  encrypt(plaintext: string, aad = ''): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#current.key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(associatedData(this.#current.id, aad));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return [VERSION, this.#current.id, iv, cipher.getAuthTag(), ciphertext]
      .map((part) => (typeof part === 'string' ? part : part.toString('base64url')))
      .join('.');
  }

  /**
   * Decrypts a value written by {@link PhiCipher.encrypt} under any key of the keyring.
   * @param token - the ciphertext string.
   * @param aad - the associated data it was encrypted with.
   * @returns the plaintext.
   * @throws PhiCryptoError naming the problem: a malformed token, an unsupported version, an unknown key id,
   *   or failed authentication (the token was altered, or the key or associated data is not the one used).
   */
  decrypt(token: string, aad = ''): string {
    const parts = token.split('.');
    if (parts.length !== 5) {
      throw new PhiCryptoError('malformed', `PHI ciphertext is malformed: expected 5 dot-separated parts, got ${parts.length}`);
    }
    const [version, keyId, ivText, tagText, ciphertextText] = parts as [string, string, string, string, string];
    if (version !== VERSION) {
      throw new PhiCryptoError('unsupported-version', `PHI ciphertext has unsupported version "${version}" (expected "${VERSION}")`);
    }
    if (!KEY_ID.test(keyId)) throw new PhiCryptoError('malformed', 'PHI ciphertext is malformed: its key id is not valid');
    const key = this.#keys.get(keyId);
    if (!key) {
      throw new PhiCryptoError(
        'unknown-key',
        `PHI ciphertext was encrypted with key "${keyId}", which is not among the configured keys (${[...this.#keys.keys()].join(', ')}); ` +
          'a key removed from SETTLE_ENCRYPTION_KEYS can no longer decrypt what it encrypted',
      );
    }
    const iv = decodePart(ivText, 'IV', IV_BYTES);
    const tag = decodePart(tagText, 'authentication tag', TAG_BYTES);
    const ciphertext = decodePart(ciphertextText, 'ciphertext');
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(associatedData(keyId, aad));
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
    } catch {
      throw new PhiCryptoError(
        'authentication-failed',
        `PHI ciphertext under key "${keyId}" failed authentication: it was altered, or the associated data is not the one it was encrypted with`,
      );
    }
  }

  /**
   * The blind index of a phone number or email: an HMAC-SHA256 of the normalised value, so the same
   * contact typed differently (`(617) 555-0134`, `+1 617 555 0134`; `Maria@Example.com `) gets the same index.
   * Phones normalise to `+` and digits (10 US digits get `+1`); emails to trimmed lower case.
   * @param kind - what the value is (indexes of different kinds never collide).
   * @param value - the phone number or email.
   * @returns the index, 64 hex characters.
   * @throws Error when the value normalises to nothing (a phone without digits, an empty email).
   */
  blindIndex(kind: 'phone' | 'email', value: string): string {
    const normalised = kind === 'phone' ? normalisePhone(value) : value.trim().toLowerCase();
    if (normalised === '' || normalised === '+') throw new Error(`cannot index an empty ${kind}`);
    return createHmac('sha256', this.#blindIndexKey).update(`${kind}:${normalised}`).digest('hex');
  }
}

/** Binds the format version and key id, as well as the caller's associated data, into the GCM tag. */
function associatedData(keyId: string, aad: string): Buffer {
  return Buffer.from(`${VERSION}.${keyId}\u0000${aad}`, 'utf8');
}

/** Strict base64url: any change to the text, even in padding bits, is reported rather than ignored. */
function decodePart(text: string, what: string, bytes?: number): Buffer {
  const decoded = Buffer.from(text, 'base64url');
  if (!/^[A-Za-z0-9_-]*$/.test(text) || decoded.toString('base64url') !== text) {
    throw new PhiCryptoError('malformed', `PHI ciphertext is malformed: its ${what} is not valid base64url`);
  }
  if (bytes !== undefined && decoded.length !== bytes) {
    throw new PhiCryptoError('malformed', `PHI ciphertext is malformed: its ${what} is ${decoded.length} bytes, expected ${bytes}`);
  }
  return decoded;
}

function normalisePhone(value: string): string {
  const digits = value.replace(/\D/g, '');
  if (value.trim().startsWith('+')) return `+${digits}`;
  if (digits.length === 10) return `+1${digits}`;
  return `+${digits}`;
}

/** Options of {@link loadKeyring}. */
export interface KeyringOptions {
  /** `SETTLE_ENCRYPTION_KEYS`: `id:base64key` entries, comma-separated, oldest first. */
  encryptionKeys: string | undefined;
  /** `SETTLE_BLIND_INDEX_KEY`: a base64 32-byte key. */
  blindIndexKey: string | undefined;
  /** `SETTLE_DATA_DIR`: where the embedded database keeps generated keys (`keys.json`). */
  dataDir: string;
  /** True with the embedded database (no `DATABASE_URL`): missing keys come from `keys.json`, generated on first start. */
  embedded: boolean;
  /** Told, once, when keys are generated. */
  logger: Pick<Logger, 'warn'>;
}

/** The generated keys file, holding the values in the environment variables' own format, ready to copy. */
interface KeysFile {
  SETTLE_ENCRYPTION_KEYS: string;
  SETTLE_BLIND_INDEX_KEY: string;
}

/**
 * Loads the PHI keys. Each comes from its environment variable when set. Otherwise, with the embedded
 * database, from `<dataDir>/keys.json`, which is generated (mode 0600) on first start, with a warning that
 * it must be backed up and that production should set the variables; with a server database, a missing
 * key is an error.
 * @param options - the settings and the logger.
 * @returns the keyring.
 * @throws KeyringError listing every problem: a missing key, an entry that is not `id:base64key`, a key id
 *   used twice, a key that is not base64 of exactly 32 bytes (each naming the key id, never the key).
 */
export async function loadKeyring(options: KeyringOptions): Promise<Keyring> {
  let { encryptionKeys, blindIndexKey } = options;
  let fileSource: string | undefined;
  if (encryptionKeys === undefined || blindIndexKey === undefined) {
    if (!options.embedded) {
      throw new KeyringError(
        [
          encryptionKeys === undefined ? 'SETTLE_ENCRYPTION_KEYS is required when DATABASE_URL is set' : undefined,
          blindIndexKey === undefined ? 'SETTLE_BLIND_INDEX_KEY is required when DATABASE_URL is set' : undefined,
        ].filter((p) => p !== undefined),
      );
    }
    const path = join(options.dataDir, 'keys.json');
    const file = await readOrGenerateKeysFile(path, options.logger);
    encryptionKeys ??= file.SETTLE_ENCRYPTION_KEYS;
    blindIndexKey ??= file.SETTLE_BLIND_INDEX_KEY;
    fileSource = path;
  }
  const source = (variable: string, fromEnv: boolean): string => (fromEnv || !fileSource ? variable : `${variable} in ${fileSource}`);
  const problems: string[] = [];
  const keys = parseEncryptionKeys(encryptionKeys, source('SETTLE_ENCRYPTION_KEYS', options.encryptionKeys !== undefined), problems);
  const blindSource = source('SETTLE_BLIND_INDEX_KEY', options.blindIndexKey !== undefined);
  const blind = decodeKey(blindIndexKey, problems, blindSource);
  const reused = keys.find((k) => blind?.equals(k.key));
  if (reused) problems.push(`${blindSource}: must differ from encryption key "${reused.id}"`);
  if (problems.length > 0 || !blind) throw new KeyringError(problems);
  return { encryptionKeys: keys, blindIndexKey: blind };
}

function parseEncryptionKeys(text: string, source: string, problems: string[]): EncryptionKey[] {
  const keys: EncryptionKey[] = [];
  text.split(',').forEach((entry, index) => {
    const colon = entry.indexOf(':');
    const id = entry.slice(0, colon).trim();
    if (colon < 0 || id === '') {
      problems.push(`${source}: entry ${index + 1} has no key id (expected id:base64key)`);
      return;
    }
    if (!KEY_ID.test(id)) {
      problems.push(`${source}: key id "${id}" may only contain letters, digits, "_" and "-"`);
      return;
    }
    if (keys.some((k) => k.id === id)) {
      problems.push(`${source}: key id "${id}" is used twice`);
      return;
    }
    const key = decodeKey(entry.slice(colon + 1), problems, `${source}: key "${id}"`);
    if (key) keys.push({ id, key });
  });
  return keys;
}

/** Decodes a base64 32-byte key, or records why it is not one (without echoing the key). */
function decodeKey(text: string, problems: string[], label: string): Buffer | undefined {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed)) {
    problems.push(`${label}: is not base64`);
    return undefined;
  }
  const key = Buffer.from(trimmed, 'base64');
  if (key.length !== KEY_BYTES) {
    problems.push(`${label}: decodes to ${key.length} bytes, expected ${KEY_BYTES}`);
    return undefined;
  }
  return key;
}

async function readOrGenerateKeysFile(path: string, logger: Pick<Logger, 'warn'>): Promise<KeysFile> {
  const generated: KeysFile = {
    SETTLE_ENCRYPTION_KEYS: `local-${randomBytes(4).toString('hex')}:${randomBytes(KEY_BYTES).toString('base64')}`,
    SETTLE_BLIND_INDEX_KEY: randomBytes(KEY_BYTES).toString('base64'),
  };
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  try {
    // 'wx': create only if absent, so a key once generated is never overwritten.
    const handle = await open(path, 'wx', 0o600);
    try {
      await handle.writeFile(`${JSON.stringify(generated, null, 2)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return readKeysFile(path);
    throw error;
  }
  logger.warn(
    'Generated PHI encryption and blind-index keys for the embedded database. Back up this file: without it the ' +
      'encrypted patient data cannot be read. In production set SETTLE_ENCRYPTION_KEYS and SETTLE_BLIND_INDEX_KEY instead (the file holds them in that format).',
    { path },
  );
  return generated;
}

async function readKeysFile(path: string): Promise<KeysFile> {
  const text = await readFile(path, 'utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not the parser's message: it quotes the file, which holds the keys.
    throw new KeyringError([`${path}: is not valid JSON`]);
  }
  const file = parsed as Partial<Record<keyof KeysFile, unknown>> | null;
  const problems = (['SETTLE_ENCRYPTION_KEYS', 'SETTLE_BLIND_INDEX_KEY'] as const)
    .filter((name) => typeof file?.[name] !== 'string')
    .map((name) => `${path}: has no ${name} string`);
  if (problems.length > 0) throw new KeyringError(problems);
  return file as KeysFile;
}
