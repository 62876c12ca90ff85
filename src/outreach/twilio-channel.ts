/**
 * Texts through Twilio's Messages API with the official `twilio` SDK: one Messaging Service (its sender pool
 * picks the number), and a StatusCallback at `${publicUrl}/webhooks/twilio/status` so delivery reports update
 * the outbox and the attempt. Twilio gets the phone number and the rendered text only, never a Settle id that
 * names a person.
 *
 * Refusals become `failed` results (never thrown): 21610 (the number replied STOP to the sender) → `optedOut`;
 * 30003/30005/30006 (unreachable, unknown, landline or unreachable carrier) and 21211/21614 (not a valid
 * mobile number) → `undeliverable`; 429, 5xx, 401 and network errors → `transient` (retried later). Reasons are
 * Settle's own words with the code: Twilio's messages can quote the number, which must not reach a log.
 */
import twilio from 'twilio';
import type { ChannelKind, OutboundMessage, OutreachChannel, SendResult } from './channel.ts';

/** The webhook paths Twilio is configured to call. */
export const TWILIO_STATUS_PATH = '/webhooks/twilio/status';
export const TWILIO_INBOUND_PATH = '/webhooks/twilio/inbound';

/** Twilio error codes for an address that cannot receive texts. */
export const UNDELIVERABLE_CODES: readonly string[] = ['30003', '30005', '30006', '21211', '21614'];
/** Twilio error code: the recipient has opted out of messages from this sender. */
export const OPTED_OUT_CODE = '21610';

const DESCRIPTIONS: Record<string, string> = {
  '21610': 'the number has opted out of texts from this sender (STOP)',
  '30003': 'the handset is unreachable',
  '30005': 'the number is unknown or no longer exists',
  '30006': 'the number is a landline or its carrier cannot receive texts',
  '21211': "the 'To' number is not a valid phone number",
  '21614': "the 'To' number is not a mobile number",
  '30007': 'the carrier filtered the message',
  '30008': 'unknown delivery error',
  '20429': 'too many requests',
  '20003': 'Twilio refused the credentials',
};

/** A short, PHI-free description of a Twilio error code. */
export function describeTwilioCode(code: string): string {
  return DESCRIPTIONS[code] ?? `Twilio error ${code}`;
}

/** What the Twilio channel is built from (the TWILIO_* settings and the public URL). */
export interface TwilioChannelOptions {
  accountSid: string;
  authToken: string;
  messagingServiceSid: string;
  /** SETTLE_PUBLIC_URL: the status callback goes to `${publicUrl}/webhooks/twilio/status`; without it, none is asked for. */
  publicUrl?: string;
  /** Tests: a `twilio.RequestClient` that talks to a fake instead of api.twilio.com. */
  httpClient?: InstanceType<typeof twilio.RequestClient>;
}

/**
 * A phone number as E.164: `+` and digits; ten digits are a US/Canada number (`+1`), eleven starting with 1 too.
 * @returns the E.164 form, or undefined when the text cannot be a phone number.
 */
export function toE164(phone: string): string | undefined {
  const plus = phone.trim().startsWith('+');
  const digits = phone.replace(/\D/g, '');
  if (plus) return digits.length >= 8 && digits.length <= 15 ? `+${digits}` : undefined;
  if (digits.length === 10) return `+1${digits}`;
  if (digits.length === 11 && digits.startsWith('1')) return `+${digits}`;
  return undefined;
}

/** Maps a Twilio refusal (an error code and/or HTTP status) to a {@link SendResult}. */
export function twilioFailure(code: string | undefined, httpStatus: number | undefined): SendResult {
  if (code === OPTED_OUT_CODE) return { status: 'failed', code, reason: describeTwilioCode(code), transient: false, optedOut: true };
  if (code !== undefined && UNDELIVERABLE_CODES.includes(code)) return { status: 'failed', code, reason: describeTwilioCode(code), transient: false, undeliverable: true };
  const transient = httpStatus === undefined || httpStatus === 429 || httpStatus === 401 || httpStatus >= 500;
  const shown = code ?? (httpStatus !== undefined ? `http-${httpStatus}` : 'network');
  return { status: 'failed', code: shown, reason: code ? describeTwilioCode(code) : `Twilio answered HTTP ${httpStatus ?? 'nothing'}`, transient };
}

/** The SMS channel. */
export class TwilioChannel implements OutreachChannel {
  readonly kind: ChannelKind = 'sms';
  readonly #client: ReturnType<typeof twilio>;
  readonly #messagingServiceSid: string;
  readonly #statusCallback: string | undefined;

  constructor(options: TwilioChannelOptions) {
    this.#client = twilio(options.accountSid, options.authToken, {
      autoRetry: false,
      httpClient: options.httpClient ?? new twilio.RequestClient({ keepAlive: true, timeout: 15_000 }),
    });
    this.#messagingServiceSid = options.messagingServiceSid;
    this.#statusCallback = options.publicUrl ? `${options.publicUrl.replace(/\/+$/, '')}${TWILIO_STATUS_PATH}` : undefined;
  }

  /** Sends one text. Never throws for Twilio's refusals or network errors. */
  async send(message: OutboundMessage): Promise<SendResult> {
    const to = toE164(message.to);
    if (!to) return { status: 'failed', code: 'invalid-number', reason: 'the phone number on file is not a valid E.164 number', transient: false, undeliverable: true };
    try {
      const created = await this.#client.messages.create({
        to,
        messagingServiceSid: this.#messagingServiceSid,
        body: message.body,
        ...(this.#statusCallback ? { statusCallback: this.#statusCallback } : {}),
      });
      if ((created.status === 'failed' || created.status === 'undelivered') && created.errorCode) return twilioFailure(String(created.errorCode), 400);
      return { status: 'sent', providerMessageId: created.sid };
    } catch (error) {
      const e = error as { status?: number; code?: number | string };
      if (typeof e.status === 'number') return twilioFailure(e.code !== undefined ? String(e.code) : undefined, e.status);
      // Network trouble: the code of the socket error (ECONNREFUSED, ETIMEDOUT…), retried later.
      return { status: 'failed', code: typeof e.code === 'string' ? e.code : 'network', reason: 'could not reach Twilio', transient: true };
    }
  }
}
