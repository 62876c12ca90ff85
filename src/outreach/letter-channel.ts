/**
 * The letter channel: letters are not sent one by one. `send` queues the letter's outbox row for the day's print
 * batch (see print-batch.ts), which renders every queued letter of a practice into one PDF for the mailing
 * run. Printing needs no credentials and nothing leaves the machine, so this channel is always configured.
 *
 * The pay link printed on the letter (and in its QR code) is the one the letter's text was rendered with (planning
 * puts the guarantor's signed link in every message); a text without one is refused rather than printed with a
 * link that leads nowhere.
 */
import type { Clock } from '../domain/clock.ts';
import type { Database } from '../store/database.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { PrintBatchStore } from '../store/print-batches.ts';
import type { OutboundMessage, OutreachChannel, SendResult } from './channel.ts';

/** What the letter channel needs. */
export interface LetterChannelOptions {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
  /** SETTLE_PUBLIC_URL (kept for symmetry with the other channels; links come from the letter's text). */
  publicUrl?: string;
}

/**
 * The pay link in a letter's text: the first absolute URL with a `/p/` path, trailing punctuation removed.
 * @returns the link, or undefined when the text has none.
 */
export function payUrlOfLetter(body: string): string | undefined {
  for (const match of body.matchAll(/https?:\/\/[^\s<>"']+/g)) {
    const url = match[0].replace(/[.,;:!?)\]]+$/, '');
    if (/\/p\/[^/\s]+/.test(url)) return url;
  }
  return undefined;
}

/** Queues letters for the daily print batch. */
export class LetterChannel implements OutreachChannel {
  readonly kind = 'letter' as const;
  readonly #options: LetterChannelOptions;

  constructor(options: LetterChannelOptions) {
    this.#options = options;
  }

  async send(message: OutboundMessage): Promise<SendResult> {
    if (!message.to.split('\n').some((line) => line.trim() !== '')) {
      return { status: 'failed', code: 'no-address', reason: 'no mailing address on file', transient: false, undeliverable: true };
    }
    const payUrl = payUrlOfLetter(message.body);
    if (!payUrl) return { status: 'failed', code: 'no-pay-link', reason: 'the letter text carries no pay link', transient: false };
    try {
      const store = new PrintBatchStore(this.#options.db.pool, this.#options.cipher, this.#options.clock);
      await store.enqueue({ outboxId: message.outboxId, practiceId: message.practiceId, balanceId: message.balanceId, payUrl });
      return { status: 'sent', providerMessageId: `print:${message.outboxId}` };
    } catch (error) {
      return { status: 'failed', code: (error as { code?: string }).code ?? 'print-queue', reason: 'could not queue the letter for printing; it will be retried', transient: true };
    }
  }
}
