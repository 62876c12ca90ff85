/**
 * The contract between outreach delivery and the ways a message reaches a patient (Twilio SMS, SMTP email,
 * printed letters). Planning writes every message to the outbox; delivery hands each outbox row to the channel
 * configured for its kind. A kind with no configured channel keeps its rows in the outbox: nothing leaves the
 * machine until the practice configures it.
 */

/** The kinds of message outreach sends. */
export type ChannelKind = 'sms' | 'email' | 'letter';

/** One outbox row, ready for a channel: the recipient decrypted, the text as rendered at planning time. */
export interface OutboundMessage {
  readonly outboxId: string;
  readonly practiceId: string;
  readonly balanceId: string;
  readonly channel: ChannelKind;
  /** E.164 phone, email address, or the mailing address as printed lines. */
  readonly to: string;
  readonly subject: string | null;
  readonly body: string;
  readonly html: string | null;
  readonly language: 'en' | 'es';
  /** Email only: the working unsubscribe URL for the `List-Unsubscribe` header and footer. */
  readonly unsubscribeUrl?: string;
}

/** What a channel reports for one send. Provider error codes are kept verbatim (e.g. Twilio 21610, 30006). */
export type SendResult =
  | { readonly status: 'sent'; readonly providerMessageId: string }
  | {
      readonly status: 'failed';
      /** Provider's code, or a network code such as ECONNREFUSED. */
      readonly code: string;
      readonly reason: string;
      /** A retry later may succeed (network error, 5xx, rate limit). */
      readonly transient: boolean;
      /** The provider says the recipient opted out (Twilio 21610): record an opt-out. */
      readonly optedOut?: boolean;
      /** The address cannot receive this channel (Twilio 30003/30005/30006, hard bounce): try the next channel. */
      readonly undeliverable?: boolean;
    };

/** A configured way to send one kind of message. */
export interface OutreachChannel {
  readonly kind: ChannelKind;
  /** Sends one message. Must not throw for provider refusals: those are `failed` results. */
  send(message: OutboundMessage): Promise<SendResult>;
  /** Releases sockets and pools at shutdown. */
  close?(): Promise<void>;
}
