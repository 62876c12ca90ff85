/**
 * Where the pay-link signing keys come from: `SETTLE_PAY_LINK_KEYS` (`"<id>:<base64url key>[,<id>:<key>…]"`, the
 * current key first), or, when it is unset, a development key generated once into
 * `<SETTLE_DATA_DIR>/pay-link-keys.json` (mode 0600), like the PHI keys of the embedded database. Processes that
 * share a PostgreSQL server must share the setting, or links issued by one are refused by another.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'winston';
import { parsePayLinkKeys, PayLinkKeyError, type PayLinkKeyRing } from '../domain/pay-link.ts';

/** Options of {@link loadPayLinkKeys}. */
export interface PayLinkKeyOptions {
  /** `SETTLE_PAY_LINK_KEYS`, when set. */
  readonly keys: string | undefined;
  /** `SETTLE_DATA_DIR`. */
  readonly dataDir: string;
  /** True with a PostgreSQL server: a generated key is then only good for one process, and the log says so. */
  readonly shared: boolean;
  readonly logger: Pick<Logger, 'warn'>;
}

/**
 * Loads the pay-link key ring.
 * @throws PayLinkKeyError naming the setting or file when the keys are malformed (never echoing a key).
 */
export async function loadPayLinkKeys(options: PayLinkKeyOptions): Promise<PayLinkKeyRing> {
  if (options.keys !== undefined && options.keys !== '') {
    try {
      return parsePayLinkKeys(options.keys);
    } catch (error) {
      throw new PayLinkKeyError(`SETTLE_PAY_LINK_KEYS: ${(error as Error).message}`);
    }
  }
  if (options.shared) {
    // A generated key would be this process's alone: links sent by the worker would be refused by the API.
    throw new PayLinkKeyError(
      'SETTLE_PAY_LINK_KEYS is required when DATABASE_URL is set: every process sharing the database signs and checks pay links with the same keys. ' +
        'Generate one with: node -e "console.log(\'1:\' + require(\'crypto\').randomBytes(32).toString(\'base64url\'))"',
    );
  }
  const path = join(options.dataDir, 'pay-link-keys.json');
  const text = await readOrGenerate(path, options);
  try {
    const parsed = JSON.parse(text) as { SETTLE_PAY_LINK_KEYS?: unknown };
    if (typeof parsed.SETTLE_PAY_LINK_KEYS !== 'string') throw new PayLinkKeyError('has no SETTLE_PAY_LINK_KEYS string');
    return parsePayLinkKeys(parsed.SETTLE_PAY_LINK_KEYS);
  } catch (error) {
    // Never the parser's message: it would quote the file, which holds the key.
    throw new PayLinkKeyError(`${path}: ${error instanceof PayLinkKeyError ? error.message : 'is not valid JSON'}`);
  }
}

async function readOrGenerate(path: string, options: PayLinkKeyOptions): Promise<string> {
  const text = `${JSON.stringify({ SETTLE_PAY_LINK_KEYS: `1:${randomBytes(32).toString('base64url')}` }, null, 2)}\n`;
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  try {
    // 'wx': create only if absent, so a key once generated is never overwritten.
    const handle = await open(path, 'wx', 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return readFile(path, 'utf8');
    throw error;
  }
  options.logger.warn('Generated a pay-link signing key for the embedded database. In production set SETTLE_PAY_LINK_KEYS (the file holds it in that format).', { path });
  return text;
}
