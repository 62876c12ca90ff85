/**
 * Email through SMTP with nodemailer: the transport comes from `SETTLE_SMTP_URL` (`smtp://user:pass@host:587`,
 * `smtps://…:465`; nodemailer query options such as `?pool=true` work), the sender from `SETTLE_EMAIL_FROM`.
 *
 * Every email has a plain-text and an HTML part (the template's rendering, in a simple layout), a footer with a
 * working unsubscribe link, and the `List-Unsubscribe` (the URL, plus a mailto when
 * `SETTLE_EMAIL_UNSUBSCRIBE_MAILTO` is set) and `List-Unsubscribe-Post: List-Unsubscribe=One-Click` headers
 * (RFC 2369, RFC 8058). The unsubscribe URL is the message's own, or is signed here from its outbox id.
 *
 * Outcomes (never thrown): accepted → `sent` with the Message-ID; a 5xx refusal of the recipient (RCPT TO, or an
 * enhanced status 5.1.x) is a hard bounce → `failed`, `undeliverable` (the address is remembered in
 * `undeliverable_contacts` and never emailed again, and delivery tries the balance's next channel); other 5xx
 * refusals of the message → `failed` for good; 4xx, refused credentials or sender, and connection errors →
 * `transient` (retried later). Reasons are Settle's words with the SMTP codes: a server's reply text can quote
 * the address, which must not reach a log. Bounces that come back later as bounce emails (DSNs) are read by
 * `email-bounces.ts`, matched to the row by the Message-ID kept here as the provider message id.
 */
import nodemailer, { type Transporter } from 'nodemailer';
import type { Clock } from '../domain/clock.ts';
import type { Database } from '../store/database.ts';
import { OutreachDeliveryStore } from '../store/outreach-delivery.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import type { OutboundMessage, OutreachChannel, SendResult } from './channel.ts';
import { unsubscribeUrlFor } from './unsubscribe-token.ts';

/** Remembers hard-bounced addresses (by blind index), so they are not emailed again. */
export interface BounceBook {
  isBounced(practiceId: string, address: string): Promise<boolean>;
  recordBounce(practiceId: string, address: string, code: string): Promise<void>;
}

/** The bounce book kept in `undeliverable_contacts` (channel `email`), shared with delivery. */
export function deliveryBounceBook(db: Database, cipher: PhiCipher, clock: Clock): BounceBook {
  const store = new OutreachDeliveryStore(db.pool, cipher, clock);
  return {
    isBounced: (practiceId, address) => store.isUndeliverable(practiceId, 'email', address),
    recordBounce: (practiceId, address, code) => store.markUndeliverable(practiceId, 'email', address, code),
  };
}

/** What the email channel is built from. */
export interface EmailChannelOptions {
  /** `smtp://…` or `smtps://…` (SETTLE_SMTP_URL), or a nodemailer transport (tests, other transports). */
  smtp: string | Transporter;
  /** The From header (SETTLE_EMAIL_FROM): `Riverside Billing <billing@riverside.example>`. */
  from: string;
  /** A mailbox that unsubscribes whoever writes to it (SETTLE_EMAIL_UNSUBSCRIBE_MAILTO), added to `List-Unsubscribe`. */
  unsubscribeMailto?: string;
  /** Signs an unsubscribe URL from the outbox id when a message comes without one. */
  unsubscribe?: { cipher: PhiCipher; publicUrl?: string };
  /** Where hard bounces are remembered and checked before sending. */
  bounces?: BounceBook;
}

const FOOTER = {
  en: { why: 'You are receiving this email about a bill.', stop: 'To stop these emails, unsubscribe here', textStop: 'To stop these emails, visit:' },
  es: { why: 'Recibe este correo por una factura pendiente.', stop: 'Para dejar de recibir estos correos, cancele su suscripción aquí', textStop: 'Para dejar de recibir estos correos, visite:' },
} as const;

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const EMAIL = /^[^\s@<>()",;]+@[^\s@<>()",;]+\.[^\s@<>()",;]+$/;

/** The HTML document of an email: the template's paragraphs in a plain, readable layout with the footer. */
export function emailHtml(message: Pick<OutboundMessage, 'subject' | 'body' | 'html' | 'language'>, unsubscribeUrl: string | undefined): string {
  const footer = FOOTER[message.language];
  const content = message.html ?? message.body.split(/\n{2,}/).map((p) => `<p>${escapeHtml(p).replace(/\n/g, '<br>')}</p>`).join('\n');
  const unsubscribe = unsubscribeUrl ? ` <a href="${escapeHtml(unsubscribeUrl)}">${footer.stop}</a>.` : '';
  return `<!doctype html>
<html lang="${message.language}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeHtml(message.subject ?? '')}</title></head>
<body style="margin:0;padding:24px;background:#f5f5f5;font-family:Arial,Helvetica,sans-serif;color:#1b1b1b;line-height:1.5">
<div style="max-width:560px;margin:0 auto;background:#ffffff;padding:24px;border-radius:6px">
${content}
<hr style="border:0;border-top:1px solid #dddddd;margin:24px 0 12px">
<p style="font-size:12px;color:#555555">${footer.why}${unsubscribe}</p>
</div>
</body>
</html>
`;
}

/** The plain-text part: the template's text and the footer with the unsubscribe URL. */
export function emailText(message: Pick<OutboundMessage, 'body' | 'language'>, unsubscribeUrl: string | undefined): string {
  const footer = FOOTER[message.language];
  return `${message.body.trim()}\n\n--\n${footer.why}${unsubscribeUrl ? `\n${footer.textStop} ${unsubscribeUrl}` : ''}\n`;
}

/** How an SMTP failure is classified (exported for tests and the delivery job's logs). */
export function classifySmtpError(error: unknown): Extract<SendResult, { status: 'failed' }> {
  const e = error as { code?: string; responseCode?: number; command?: string; response?: string };
  const responseCode = typeof e.responseCode === 'number' ? e.responseCode : undefined;
  // The enhanced status code (RFC 3463) only: the reply text may quote the address.
  const enhanced = /\b([245]\.\d{1,3}\.\d{1,3})\b/.exec(e.response ?? '')?.[1];
  const codeText = [responseCode, enhanced].filter((x) => x !== undefined).join(' ');
  const command = (e.command ?? '').toUpperCase();
  if (responseCode !== undefined && responseCode >= 500) {
    if (command.startsWith('RCPT') || enhanced?.startsWith('5.1.')) {
      return { status: 'failed', code: String(responseCode), reason: `hard bounce: the mail server refused the recipient (${codeText})`, transient: false, undeliverable: true };
    }
    if (e.code === 'EAUTH' || command.startsWith('AUTH') || command.startsWith('MAIL')) {
      return { status: 'failed', code: String(responseCode), reason: `the mail server refused Settle's credentials or sender (${codeText}); check SETTLE_SMTP_URL and SETTLE_EMAIL_FROM`, transient: true };
    }
    return { status: 'failed', code: String(responseCode), reason: `the mail server refused the message (${codeText})`, transient: false };
  }
  if (responseCode !== undefined && responseCode >= 400) {
    return { status: 'failed', code: String(responseCode), reason: `the mail server deferred the message (${codeText}); it will be retried`, transient: true };
  }
  const code = e.code ?? 'ESMTP';
  return { status: 'failed', code, reason: `could not reach the mail server (${code}); it will be retried`, transient: true };
}

/** Sends outreach email over SMTP. */
export class EmailChannel implements OutreachChannel {
  readonly kind = 'email' as const;
  readonly #transport: Transporter;
  readonly #options: EmailChannelOptions;
  readonly #ownsTransport: boolean;

  constructor(options: EmailChannelOptions) {
    if (typeof options.smtp === 'string' && !/^smtps?:\/\//.test(options.smtp)) throw new RangeError('the SMTP URL must start with smtp:// or smtps://');
    if (options.from.trim() === '') throw new RangeError('the email sender (SETTLE_EMAIL_FROM) is required');
    this.#options = options;
    this.#ownsTransport = typeof options.smtp === 'string';
    this.#transport = typeof options.smtp === 'string' ? nodemailer.createTransport(options.smtp) : options.smtp;
  }

  /** The unsubscribe URL of a message: its own, or signed from its outbox id. */
  unsubscribeUrl(message: OutboundMessage): string | undefined {
    if (message.unsubscribeUrl) return message.unsubscribeUrl;
    const signer = this.#options.unsubscribe;
    return signer ? unsubscribeUrlFor(signer.cipher, signer.publicUrl, message.outboxId) : undefined;
  }

  async send(message: OutboundMessage): Promise<SendResult> {
    const to = message.to.trim();
    if (!EMAIL.test(to)) return { status: 'failed', code: 'invalid-address', reason: 'the email address on file is not valid', transient: false, undeliverable: true };
    const bounces = this.#options.bounces;
    try {
      if (bounces && (await bounces.isBounced(message.practiceId, to))) {
        return { status: 'failed', code: 'bounced', reason: 'this address hard-bounced before; it is not emailed again', transient: false, undeliverable: true };
      }
    } catch {
      return { status: 'failed', code: 'bounce-check', reason: 'could not check the bounce list; it will be retried', transient: true };
    }
    const unsubscribeUrl = this.unsubscribeUrl(message);
    const listUnsubscribe = [
      ...(unsubscribeUrl ? [`<${unsubscribeUrl}>`] : []),
      ...(this.#options.unsubscribeMailto ? [`<mailto:${this.#options.unsubscribeMailto}?subject=unsubscribe>`] : []),
    ];
    const headers: Record<string, string> = {};
    if (listUnsubscribe.length > 0) headers['List-Unsubscribe'] = listUnsubscribe.join(', ');
    if (unsubscribeUrl) headers['List-Unsubscribe-Post'] = 'List-Unsubscribe=One-Click';
    try {
      const info = (await this.#transport.sendMail({
        from: this.#options.from,
        to,
        subject: message.subject ?? '',
        text: emailText(message, unsubscribeUrl),
        html: emailHtml(message, unsubscribeUrl),
        headers,
      })) as { messageId?: string };
      return { status: 'sent', providerMessageId: info.messageId ?? `smtp:${message.outboxId}` };
    } catch (error) {
      const result = classifySmtpError(error);
      if (result.undeliverable && bounces) {
        try {
          await bounces.recordBounce(message.practiceId, to, result.code);
        } catch {
          // The result still says undeliverable; delivery records it too.
        }
      }
      return result;
    }
  }

  async close(): Promise<void> {
    if (this.#ownsTransport) this.#transport.close();
  }
}

/** What {@link emailChannelFromEnv} needs besides the settings. */
export interface EmailChannelDependencies {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
  publicUrl?: string;
}

/**
 * The email channel the settings configure, or undefined when `SETTLE_SMTP_URL` is unset (emails then stay in
 * the outbox: nothing leaves the machine until configured).
 * @throws RangeError when SETTLE_SMTP_URL is set without SETTLE_EMAIL_FROM.
 */
export function emailChannelFromEnv(env: NodeJS.ProcessEnv, deps: EmailChannelDependencies): EmailChannel | undefined {
  const smtp = env.SETTLE_SMTP_URL?.trim();
  if (!smtp) return undefined;
  const from = env.SETTLE_EMAIL_FROM?.trim();
  if (!from) throw new RangeError('SETTLE_EMAIL_FROM is required when SETTLE_SMTP_URL is set');
  const mailto = env.SETTLE_EMAIL_UNSUBSCRIBE_MAILTO?.trim();
  return new EmailChannel({
    smtp,
    from,
    ...(mailto ? { unsubscribeMailto: mailto } : {}),
    unsubscribe: { cipher: deps.cipher, ...(deps.publicUrl ? { publicUrl: deps.publicUrl } : {}) },
    bounces: deliveryBounceBook(deps.db, deps.cipher, deps.clock),
  });
}
