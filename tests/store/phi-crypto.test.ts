import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { createLogger, silentLogger, type Logger } from '../../src/config/logger.ts';
import { KeyringError, loadKeyring, PhiCipher, PhiCryptoError, type KeyringOptions } from '../../src/store/phi-crypto.ts';

const b64key = (): string => randomBytes(32).toString('base64');

/** A cipher from environment-style key strings, as an operator would configure them. */
async function cipherFrom(encryptionKeys: string, blindIndexKey = b64key()): Promise<PhiCipher> {
  return new PhiCipher(await loadKeyring({ encryptionKeys, blindIndexKey, dataDir: '/nonexistent', embedded: false, logger: silentLogger() }));
}

const tempDirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'settle-keys-'));
  tempDirs.push(dir);
  return dir;
}
after(async () => {
  await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

/** A logger whose output is kept, to count warnings. */
function capturedLogger(): { logger: Logger; output(): Promise<string> } {
  let text = '';
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      text += String(chunk);
      callback();
    },
  });
  return {
    logger: createLogger({ level: 'debug', stream }),
    async output() {
      await new Promise((resolve) => setImmediate(resolve));
      return text;
    },
  };
}

/** The error a rejected promise or a throwing call produced. */
async function failure(action: () => unknown): Promise<Error> {
  try {
    await action();
  } catch (error) {
    return error as Error;
  }
  assert.fail('expected an error');
}

describe('PhiCipher encryption', () => {
  it('round-trips values, with a fresh IV each time and nothing readable in the ciphertext', async () => {
    const cipher = await cipherFrom(`k1:${b64key()}`);
    for (const plaintext of ['(617) 555-0134', 'María José Gonzalez-Núñez', '', '12 Elm Street, Springfield'.repeat(50)]) {
      const token = cipher.encrypt(plaintext);
      assert.match(token, /^v1\.k1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]*$/);
      assert.equal(cipher.decrypt(token), plaintext);
      if (plaintext !== '') {
        assert.ok(!token.includes(plaintext));
        assert.notEqual(cipher.encrypt(plaintext), token);
      }
    }
  });

  it('binds associated data: a value copied to another column does not decrypt there', async () => {
    const cipher = await cipherFrom(`k1:${b64key()}`);
    const token = cipher.encrypt('maria.gonzalez@example.com', 'patient.email');
    assert.equal(cipher.decrypt(token, 'patient.email'), 'maria.gonzalez@example.com');
    for (const aad of ['guarantor.email', '']) {
      const error = await failure(() => cipher.decrypt(token, aad));
      assert.ok(error instanceof PhiCryptoError);
      assert.equal(error.code, 'authentication-failed');
    }
  });

  it('rejects a ciphertext altered anywhere with a clear error', async () => {
    const cipher = await cipherFrom(`k1:${b64key()},k2:${b64key()}`);
    const token = cipher.encrypt('1984-03-07');
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    for (let i = 0; i < token.length; i += 1) {
      if (token[i] === '.') continue;
      const replacement = alphabet[(alphabet.indexOf(token[i] ?? '') + 1) % alphabet.length] ?? 'A';
      const altered = token.slice(0, i) + replacement + token.slice(i + 1);
      const error = await failure(() => cipher.decrypt(altered));
      assert.ok(error instanceof PhiCryptoError, `altering position ${i} was not detected`);
      assert.match(error.message, /^PHI ciphertext /);
      assert.ok(!error.message.includes('1984'));
    }
    const [version, keyId, iv, tag, body] = token.split('.');
    assert.equal(keyId, 'k2');
    const cases: Array<[string, string, RegExp]> = [
      [`${version}.k1.${iv}.${tag}.${body}`, 'authentication-failed', /under key "k1" failed authentication/],
      [`v2.${keyId}.${iv}.${tag}.${body}`, 'unsupported-version', /unsupported version "v2"/],
      [`${version}.${keyId}.${iv}.${tag?.slice(0, 16)}.${body}`, 'malformed', /authentication tag is 12 bytes, expected 16/],
      [`${version}.${keyId}.${iv}.${tag}`, 'malformed', /expected 5 dot-separated parts, got 4/],
      [`${token}.extra`, 'malformed', /expected 5 dot-separated parts, got 6/],
      [`${version}.${keyId}.${iv}.${tag}.${body}=`, 'malformed', /ciphertext is not valid base64url/],
    ];
    for (const [altered, code, message] of cases) {
      const error = await failure(() => cipher.decrypt(altered));
      assert.ok(error instanceof PhiCryptoError);
      assert.equal(error.code, code, altered);
      assert.match(error.message, message);
    }
  });

  it('rotates keys: old ciphertexts still decrypt, new ones use the newest key', async () => {
    const keyA = b64key();
    const keyB = b64key();
    const blind = b64key();
    const before = await cipherFrom(`a:${keyA}`, blind);
    const old = before.encrypt('(617) 555-0134');
    assert.ok(old.startsWith('v1.a.'));

    const rotated = await cipherFrom(`a:${keyA},b:${keyB}`, blind);
    assert.equal(rotated.decrypt(old), '(617) 555-0134');
    const fresh = rotated.encrypt('(617) 555-0134');
    assert.ok(fresh.startsWith('v1.b.'));
    assert.equal(rotated.decrypt(fresh), '(617) 555-0134');

    const error = await failure(() => before.decrypt(fresh));
    assert.ok(error instanceof PhiCryptoError);
    assert.equal(error.code, 'unknown-key');
    assert.match(error.message, /encrypted with key "b", which is not among the configured keys \(a\)/);
  });
});

describe('PhiCipher blind index', () => {
  it('gives one index per phone or email however it is typed, and different ones otherwise', async () => {
    const blind = b64key();
    const cipher = await cipherFrom(`k1:${b64key()}`, blind);
    const phones = ['(617) 555-0134', '617-555-0134', '617.555.0134', '6175550134', '+16175550134', '+1 617 555 0134', '1-617-555-0134', ' (617)555 0134 '];
    const phoneIndexes = new Set(phones.map((phone) => cipher.blindIndex('phone', phone)));
    assert.equal(phoneIndexes.size, 1);
    const [phoneIndex] = phoneIndexes;
    assert.match(phoneIndex ?? '', /^[0-9a-f]{64}$/);

    const emails = ['maria.gonzalez@example.com', 'Maria.Gonzalez@Example.COM', '  maria.gonzalez@example.com\n'];
    assert.equal(new Set(emails.map((email) => cipher.blindIndex('email', email))).size, 1);

    assert.notEqual(cipher.blindIndex('phone', '(617) 555-0135'), phoneIndex);
    assert.notEqual(cipher.blindIndex('phone', '+44 20 7946 0958'), cipher.blindIndex('phone', '+1 20 7946 0958'));
    assert.notEqual(cipher.blindIndex('email', 'maria.gonzalez@example.org'), cipher.blindIndex('email', emails[0] ?? ''));
    assert.notEqual(cipher.blindIndex('email', '+16175550134'), cipher.blindIndex('phone', '+16175550134'));

    const sameBlindKey = await cipherFrom(`other:${b64key()}`, blind);
    assert.equal(sameBlindKey.blindIndex('phone', '617-555-0134'), phoneIndex);
    const otherBlindKey = await cipherFrom(`k1:${b64key()}`);
    assert.notEqual(otherBlindKey.blindIndex('phone', '617-555-0134'), phoneIndex);

    assert.throws(() => cipher.blindIndex('phone', 'n/a'), /cannot index an empty phone/);
    assert.throws(() => cipher.blindIndex('email', '  '), /cannot index an empty email/);
  });
});

describe('loadKeyring', () => {
  it('generates keys for the embedded database once, privately, and reuses them', async () => {
    const dataDir = join(await tempDir(), 'data');
    const { logger, output } = capturedLogger();
    const options: KeyringOptions = { encryptionKeys: undefined, blindIndexKey: undefined, dataDir, embedded: true, logger };

    const first = await loadKeyring(options);
    const path = join(dataDir, 'keys.json');
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    const contents = await readFile(path, 'utf8');
    const second = await loadKeyring(options);

    assert.deepEqual(second, first);
    const token = new PhiCipher(first).encrypt('Maria Gonzalez');
    assert.equal(new PhiCipher(second).decrypt(token), 'Maria Gonzalez');
    assert.equal(await readFile(path, 'utf8'), contents);

    const lines = (await output()).trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.level, 'warn');
    assert.equal(lines[0]?.path, path);
    assert.match(String(lines[0]?.message), /Back up this file.*SETTLE_ENCRYPTION_KEYS and SETTLE_BLIND_INDEX_KEY/s);

    // The file holds the variables in their own format, ready to copy into the environment, and no key is logged.
    const file = JSON.parse(contents) as { SETTLE_ENCRYPTION_KEYS: string; SETTLE_BLIND_INDEX_KEY: string };
    assert.ok(!(await output()).includes(file.SETTLE_BLIND_INDEX_KEY));
    assert.ok(!(await output()).includes(file.SETTLE_ENCRYPTION_KEYS.split(':')[1] ?? '?'));
    const fromEnv = await loadKeyring({ encryptionKeys: file.SETTLE_ENCRYPTION_KEYS, blindIndexKey: file.SETTLE_BLIND_INDEX_KEY, dataDir: '/nonexistent', embedded: false, logger });
    assert.equal(new PhiCipher(fromEnv).decrypt(token), 'Maria Gonzalez');
  });

  it('uses keys from the environment without touching the data directory', async () => {
    const dataDir = await tempDir();
    const { logger, output } = capturedLogger();
    await loadKeyring({ encryptionKeys: `k1:${b64key()}`, blindIndexKey: b64key(), dataDir, embedded: true, logger });
    await assert.rejects(stat(join(dataDir, 'keys.json')), { code: 'ENOENT' });
    assert.equal(await output(), '');
  });

  it('refuses to run a server database without keys', async () => {
    const dataDir = await tempDir();
    const error = await failure(() => loadKeyring({ encryptionKeys: undefined, blindIndexKey: undefined, dataDir, embedded: false, logger: silentLogger() }));
    assert.ok(error instanceof KeyringError);
    assert.deepEqual(error.problems, [
      'SETTLE_ENCRYPTION_KEYS is required when DATABASE_URL is set',
      'SETTLE_BLIND_INDEX_KEY is required when DATABASE_URL is set',
    ]);
    await assert.rejects(stat(join(dataDir, 'keys.json')), { code: 'ENOENT' });
  });

  it('reports every bad key at once, naming its id and never the key', async () => {
    const shortKey = randomBytes(16).toString('base64');
    const good = b64key();
    const error = await failure(() =>
      loadKeyring({
        encryptionKeys: `old:${shortKey},new:not*base64,${good},ok:${good},ok:${b64key()},bad id:${b64key()}`,
        blindIndexKey: good,
        dataDir: '/nonexistent',
        embedded: false,
        logger: silentLogger(),
      }),
    );
    assert.ok(error instanceof KeyringError);
    assert.deepEqual(error.problems, [
      'SETTLE_ENCRYPTION_KEYS: key "old": decodes to 16 bytes, expected 32',
      'SETTLE_ENCRYPTION_KEYS: key "new": is not base64',
      'SETTLE_ENCRYPTION_KEYS: entry 3 has no key id (expected id:base64key)',
      'SETTLE_ENCRYPTION_KEYS: key id "ok" is used twice',
      'SETTLE_ENCRYPTION_KEYS: key id "bad id" may only contain letters, digits, "_" and "-"',
      'SETTLE_BLIND_INDEX_KEY: must differ from encryption key "ok"',
    ]);
    assert.ok(!error.message.includes(shortKey) && !error.message.includes(good));

    const blindError = await failure(() => cipherFrom(`k1:${b64key()}`, shortKey));
    assert.ok(blindError instanceof KeyringError);
    assert.deepEqual(blindError.problems, ['SETTLE_BLIND_INDEX_KEY: decodes to 16 bytes, expected 32']);
  });

  it('names the generated file when it is damaged', async () => {
    const dataDir = await tempDir();
    const path = join(dataDir, 'keys.json');
    await writeFile(path, `{"SETTLE_ENCRYPTION_KEYS": "local:${randomBytes(8).toString('base64')}", "SETTLE_BLIND_INDEX_KEY": "`);
    const options: KeyringOptions = { encryptionKeys: undefined, blindIndexKey: undefined, dataDir, embedded: true, logger: silentLogger() };
    const error = await failure(() => loadKeyring(options));
    assert.ok(error instanceof KeyringError);
    assert.deepEqual(error.problems, [`${path}: is not valid JSON`]);

    await writeFile(path, JSON.stringify({ SETTLE_ENCRYPTION_KEYS: `local:${randomBytes(8).toString('base64')}`, SETTLE_BLIND_INDEX_KEY: b64key() }));
    const keyError = await failure(() => loadKeyring(options));
    assert.ok(keyError instanceof KeyringError);
    assert.deepEqual(keyError.problems, [`SETTLE_ENCRYPTION_KEYS in ${path}: key "local": decodes to 8 bytes, expected 32`]);
  });
});
