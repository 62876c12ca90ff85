/**
 * Bounces that arrive after sending: a mail relay accepted an email and later returned a delivery status
 * notification (RFC 3464, read by {@link parseDsn}). For each recipient that `failed` with a 5.x.x status:
 *
 * - when the DSN's returned headers carry the `Message-ID` Settle sent (kept as the outbox row's
 *   `provider_message_id`) and that row went to this address, the row is refused exactly as a 5xx at RCPT TO is
 *   ({@link applyRefusal}): the row `undeliverable`, its attempt `failed`, the address in
 *   `undeliverable_contacts`, and the balance's next channel queued (or an `undeliverable` staff task opened);
 * - otherwise the address is marked undeliverable (same store call) in every practice that has it as a contact
 *   (found by blind index), so it is not emailed again.
 *
 * `delayed`, `delivered`, `relayed`, `expanded` and 4.x.x statuses change nothing. A bounce posted twice
 * changes nothing the second time. Logs and results carry outbox ids, statuses and outcomes: never an address.
 */
import type { Logger } from '../config/logger.ts';
import type { Clock } from '../domain/clock.ts';
import type { Database } from '../store/database.ts';
import { LedgerRepository } from '../store/ledger.ts';
import { OutreachDeliveryStore, type DeliveryRow } from '../store/outreach-delivery.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { PracticeRepository } from '../store/practices.ts';
import { applyRefusal } from './deliver.ts';
import { parseDsn, type DsnRecipient } from './dsn.ts';
import type { TemplateCatalogue } from './templates.ts';

/** What applying bounces needs. */
export interface EmailBounceDependencies {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
  logger: Logger;
  /** A guarantor's pay link, for a fallback message whose bounced original carried none. */
  payLinkFor?: (practiceId: string, guarantorId: string) => Promise<string>;
  templates?: TemplateCatalogue;
  /** Asks the delivery job to run soon (a fallback message was queued). */
  wakeDelivery?: () => void;
}

/**
 * What became of one recipient of a DSN:
 * `undeliverable` (the outbox row refused, next channel tried), `address-recorded` (no row of ours: the address
 * marked in the practices that know it), `unchanged` (already recorded), `unknown-recipient` (no practice knows
 * the address), `ignored` (not a permanent failure).
 */
export type BounceOutcome = 'undeliverable' | 'address-recorded' | 'unchanged' | 'unknown-recipient' | 'ignored';

/** One recipient's result (no address). */
export interface BounceRecipientResult {
  action: string;
  status: string;
  outcome: BounceOutcome;
  outboxId: string | null;
  fallbackOutboxId?: string;
  staffTaskId?: string;
}

/** What one DSN did. */
export interface BounceResult {
  /** Whether the returned headers named a message Settle sent. */
  matchedMessage: boolean;
  recipients: BounceRecipientResult[];
}

const same = (a: string | undefined, b: string) => a !== undefined && a.trim().toLowerCase() === b.trim().toLowerCase();

async function applyRecipient(deps: EmailBounceDependencies, found: DeliveryRow | undefined, recipient: DsnRecipient): Promise<BounceRecipientResult> {
  const base = { action: recipient.action, status: recipient.status };
  if (!recipient.permanent) return { ...base, outcome: 'ignored', outboxId: null };
  const store = new OutreachDeliveryStore(deps.db.pool, deps.cipher, deps.clock);
  const code = recipient.status;
  const row = found && found.channel === 'email' && (same(recipient.finalRecipient, found.recipient) || same(recipient.originalRecipient, found.recipient)) ? found : undefined;
  if (row) {
    if (row.state !== 'sent' && row.state !== 'delivered') return { ...base, outcome: 'unchanged', outboxId: row.id };
    const outcome = await applyRefusal(deps, row, {
      status: 'failed', code, reason: `hard bounce: the mail server returned the message after accepting it (DSN status ${code})`, transient: false, undeliverable: true,
    });
    if (outcome.fallbackOutboxId) deps.wakeDelivery?.();
    return {
      ...base, outcome: 'undeliverable', outboxId: row.id,
      ...(outcome.fallbackOutboxId ? { fallbackOutboxId: outcome.fallbackOutboxId } : {}),
      ...(outcome.staffTaskId ? { staffTaskId: outcome.staffTaskId } : {}),
    };
  }
  const ledger = new LedgerRepository(deps.db.pool, deps.cipher, deps.clock);
  const addresses = [recipient.finalRecipient, ...(recipient.originalRecipient && !same(recipient.originalRecipient, recipient.finalRecipient) ? [recipient.originalRecipient] : [])];
  let recorded = 0;
  let already = 0;
  for (const practice of await new PracticeRepository(deps.db.pool).list()) {
    for (const address of addresses) {
      if ((await ledger.findByContact(practice.id, 'email', address)).length === 0) continue;
      if (await store.isUndeliverable(practice.id, 'email', address)) {
        already++;
        continue;
      }
      await store.markUndeliverable(practice.id, 'email', address, code);
      recorded++;
    }
  }
  return { ...base, outcome: recorded > 0 ? 'address-recorded' : already > 0 ? 'unchanged' : 'unknown-recipient', outboxId: null };
}

/**
 * Applies one bounce message (raw, as a relay returned it).
 * @throws NotADsnError when the message is not a DSN (nothing is stored then).
 */
export async function applyEmailBounce(deps: EmailBounceDependencies, raw: string): Promise<BounceResult> {
  const dsn = parseDsn(raw);
  const store = new OutreachDeliveryStore(deps.db.pool, deps.cipher, deps.clock);
  // The row the bounce is about: Settle sends each email to one address, under the Message-ID it keeps.
  const sent = dsn.originalMessageId ? await store.findByProviderMessageId(dsn.originalMessageId) : undefined;
  const matchedMessage = sent !== undefined;
  const recipients: BounceRecipientResult[] = [];
  for (const recipient of dsn.recipients) recipients.push(await applyRecipient(deps, sent, recipient));
  deps.logger.info('email.bounce', {
    matchedMessage,
    recipients: recipients.map((r) => ({ action: r.action, status: r.status, outcome: r.outcome, outboxId: r.outboxId, fallbackOutboxId: r.fallbackOutboxId, staffTaskId: r.staffTaskId })),
  });
  return { matchedMessage, recipients };
}
