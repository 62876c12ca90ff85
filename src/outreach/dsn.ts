/**
 * Reads a delivery status notification (RFC 3464): the bounce a mail relay sends back after it accepted a
 * message and then failed to deliver it. Written here on purpose (no MIME library): only what a DSN needs.
 *
 * A DSN is `multipart/report; report-type=delivery-status` with a `message/delivery-status` part (also
 * `message/global-delivery-status`, RFC 6533): a per-message block, then one block per recipient with
 * `Final-Recipient: rfc822; address`, `Action` (failed, delayed, delivered, relayed, expanded) and `Status`
 * (`5.1.1`). The original message's headers come back in a `text/rfc822-headers` or `message/rfc822` part; its
 * `Message-ID` says which message bounced. Header names and parameters are case-insensitive, folded lines are
 * unfolded, parts may be base64 or quoted-printable, and a report may sit inside another multipart.
 */

/** One recipient of a DSN. */
export interface DsnRecipient {
  /** The address that failed (`Final-Recipient`, its `rfc822;` type removed). */
  finalRecipient: string;
  /** The address as originally given (`Original-Recipient`), when the relay kept it. */
  originalRecipient?: string;
  /** `failed`, `delayed`, `delivered`, `relayed` or `expanded` (lower case). */
  action: string;
  /** The enhanced status code (`5.1.1`). */
  status: string;
  /** A failed delivery with a 5.x.x status: the address will not take mail. */
  permanent: boolean;
}

/** What a DSN says. */
export interface Dsn {
  /** The `Message-ID` of the message that bounced (with its angle brackets), when the headers came back. */
  originalMessageId?: string;
  recipients: DsnRecipient[];
}

/** The body is not a DSN; `missing` names what was not found. */
export class NotADsnError extends Error {
  readonly missing: string;
  constructor(missing: string, message: string) {
    super(message);
    this.name = 'NotADsnError';
    this.missing = missing;
  }
}

type Headers = Map<string, string[]>;

interface Part {
  headers: Headers;
  body: string;
}

/** Header fields of a block of lines: unfolded, names lower-cased, values trimmed. */
export function parseHeaderBlock(block: string): Headers {
  const headers: Headers = new Map();
  for (const line of block.replace(/\n[ \t]+/g, ' ').split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!/^[!-9;-~]+$/.test(name)) continue;
    const values = headers.get(name) ?? [];
    values.push(line.slice(colon + 1).trim());
    headers.set(name, values);
  }
  return headers;
}

const first = (headers: Headers, name: string) => headers.get(name)?.[0];

/** Splits an entity into its headers and body at the first empty line. */
function splitEntity(text: string): Part {
  const match = /\n[ \t]*\n/.exec(text);
  const head = match ? text.slice(0, match.index) : text;
  const body = match ? text.slice(match.index + match[0].length) : '';
  return { headers: parseHeaderBlock(head), body };
}

/** A Content-Type: its lower-cased `type/subtype` and parameters (names lower-cased, quotes removed). */
function contentType(value: string | undefined): { type: string; params: Map<string, string> } {
  const params = new Map<string, string>();
  if (!value) return { type: 'text/plain', params };
  const [type = '', ...rest] = value.split(';');
  for (const match of rest.join(';').matchAll(/\s*([^=\s;]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))/g)) {
    params.set(match[1]!.toLowerCase(), match[2] !== undefined ? match[2].replace(/\\(.)/g, '$1') : (match[3] ?? ''));
  }
  return { type: type.trim().toLowerCase() || 'text/plain', params };
}

function decodeBody(part: Part): string {
  const encoding = (first(part.headers, 'content-transfer-encoding') ?? '7bit').toLowerCase();
  if (encoding === 'base64') return Buffer.from(part.body.replace(/\s+/g, ''), 'base64').toString('utf8').replace(/\r\n?/g, '\n');
  if (encoding === 'quoted-printable') {
    return Buffer.from(part.body.replace(/=\n/g, '').replace(/=([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8');
  }
  return part.body;
}

/** The parts of a multipart body between `--boundary` lines (the preamble and epilogue dropped). */
function multipartParts(body: string, boundary: string): Part[] {
  const parts: Part[] = [];
  const delimiter = `--${boundary}`;
  let current: string[] | undefined;
  for (const line of body.split('\n')) {
    const trimmed = line.trimEnd();
    if (trimmed === delimiter || trimmed === `${delimiter}--`) {
      if (current) parts.push(splitEntity(current.join('\n')));
      if (trimmed.endsWith('--') && trimmed !== delimiter) return parts;
      current = [];
      continue;
    }
    current?.push(line);
  }
  if (current && current.length > 0) parts.push(splitEntity(current.join('\n')));
  return parts;
}

/** Every leaf entity of a message, depth first, with its content type (multiparts opened; message/rfc822 kept whole). */
function leaves(part: Part, depth = 0): { type: string; part: Part }[] {
  const { type, params } = contentType(first(part.headers, 'content-type'));
  const boundary = params.get('boundary');
  if (type.startsWith('multipart/') && boundary && depth < 8) return multipartParts(part.body, boundary).flatMap((p) => leaves(p, depth + 1));
  return [{ type, part }];
}

/** The address of a `Final-Recipient`/`Original-Recipient` value: `rfc822; a@b` → `a@b` (other types: undefined). */
function addressOf(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const semicolon = value.indexOf(';');
  const kind = semicolon < 0 ? 'rfc822' : value.slice(0, semicolon).trim().toLowerCase();
  if (kind !== 'rfc822' && kind !== 'utf-8') return undefined;
  const address = value.slice(semicolon + 1).replace(/\(.*?\)/g, '').trim().replace(/^<(.*)>$/, '$1').trim();
  return address.includes('@') ? address : undefined;
}

function messageIdOf(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const bracketed = /<[^<>\s]+>/.exec(value)?.[0];
  if (bracketed) return bracketed;
  const bare = value.trim();
  return /^[^<>\s]+@[^<>\s]+$/.test(bare) ? `<${bare}>` : undefined;
}

/**
 * Reads a DSN from a raw message (headers and body; CRLF or LF).
 * @throws NotADsnError naming what is missing: the `message/delivery-status` part, or a recipient block with
 *   `Final-Recipient`, `Action` and `Status`.
 */
export function parseDsn(raw: string): Dsn {
  const message = splitEntity(raw.replace(/\r\n?/g, '\n'));
  const all = leaves(message);
  const report = all.find((l) => l.type === 'message/delivery-status' || l.type === 'message/global-delivery-status');
  if (!report) {
    throw new NotADsnError('message/delivery-status', 'This is not a delivery status notification: it has no message/delivery-status part (a DSN is multipart/report; report-type=delivery-status, RFC 3464).');
  }
  const blocks = decodeBody(report.part).replace(/\r\n?/g, '\n').split(/\n[ \t]*\n/).map(parseHeaderBlock);
  const recipients: DsnRecipient[] = [];
  for (const block of blocks) {
    if (!block.has('final-recipient')) continue;
    const finalRecipient = addressOf(first(block, 'final-recipient'));
    if (!finalRecipient) throw new NotADsnError('Final-Recipient', 'A recipient block has no rfc822 address in Final-Recipient.');
    const action = first(block, 'action')?.toLowerCase().split(/[\s(]/)[0];
    if (!action) throw new NotADsnError('Action', 'A recipient block has no Action field.');
    const status = /^([245])\.\d{1,3}\.\d{1,3}/.exec(first(block, 'status') ?? '')?.[0];
    if (!status) throw new NotADsnError('Status', 'A recipient block has no Status field of the form 5.1.1.');
    const originalRecipient = addressOf(first(block, 'original-recipient'));
    recipients.push({ finalRecipient, ...(originalRecipient ? { originalRecipient } : {}), action, status, permanent: action === 'failed' && status.startsWith('5.') });
  }
  if (recipients.length === 0) throw new NotADsnError('Final-Recipient', 'The message/delivery-status part has no recipient block (Final-Recipient, Action, Status).');
  const returned = all.find((l) => l.type === 'text/rfc822-headers' || l.type === 'message/rfc822' || l.type === 'message/global' || l.type === 'message/global-headers');
  const originalMessageId = returned ? messageIdOf(first(splitEntity(decodeBody(returned.part)).headers, 'message-id')) : undefined;
  return { ...(originalMessageId ? { originalMessageId } : {}), recipients };
}
