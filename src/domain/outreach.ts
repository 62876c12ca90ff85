/**
 * Outreach: what the cadence rules and compliance guards need to know about one balance, and nothing more.
 *
 * This is the input the outreach stage builds from the ledger (balances, contacts, consents, opt-outs) and its
 * own attempt history. It deliberately carries no names, diagnoses or procedures: the rules decide *whether* and
 * *when* to send, never *what clinical thing* to say. Pure types; no I/O.
 */

/** The ways Settle reaches a patient; `agency` is the hand-off to a collection agency, not a message. */
export const CHANNELS = ['sms', 'email', 'letter', 'agency'] as const;
export type Channel = (typeof CHANNELS)[number];

/** Channels that are messages to the patient (everything but the agency hand-off). */
export type MessageChannel = Exclude<Channel, 'agency'>;

/** The life cycle of a balance as the ledger reports it. Only `open` balances receive outreach. */
export const BALANCE_STATUSES = ['open', 'paid', 'on_hold', 'disputed', 'in_plan', 'sent_to_agency', 'written_off'] as const;
export type BalanceStatus = (typeof BALANCE_STATUSES)[number];

/** Languages Settle has templates for. */
export const LANGUAGES = ['en', 'es'] as const;
export type Language = (typeof LANGUAGES)[number];

/** A recorded permission to contact someone through a channel (TCPA: texts need one). */
export interface ConsentRecord {
  channel: MessageChannel;
  /** The phone number or email address consented for; absent means "whatever is on file for the channel". */
  address?: string;
  /** Where the consent came from: `intake-form`, `portal`, `keyword:START`, `staff:<user id>`… Must be non-empty. */
  source: string;
  /** When consent was given. */
  at: Date;
  /** When it was withdrawn, if it was. */
  revokedAt?: Date;
}

/** An opt-out (STOP, a bounced-and-unsubscribed email, a Twilio 21610, a staff action). */
export interface OptOut {
  channel: MessageChannel;
  /** The phone number or email address opted out; absent means every address on the channel. */
  address?: string;
  /** `keyword:STOP`, `twilio:21610`, `email:unsubscribe`, `staff:<user id>`… */
  source: string;
  at: Date;
  /** When the person opted back in (START/UNSTOP), if they did. */
  optedBackInAt?: Date;
}

/** What happened when a step was attempted on a channel. */
export type AttemptOutcome = 'sent' | 'failed' | 'suppressed';

/**
 * One earlier attempt of one step on one channel. A `deferred` decision is not an attempt (the send simply waits);
 * a `suppressed` one is, so the cadence moves on. A balance-status stop (paid, plan, hold, dispute) is not recorded
 * as an attempt: the cadence resumes where it was if the balance reopens.
 */
export interface OutreachAttempt {
  /** The policy step id the attempt belonged to when it was made. */
  stepId: string;
  channel: Channel;
  at: Date;
  outcome: AttemptOutcome;
  /** Whether the step was a final notice (IRS 501(r)) when it was sent; recorded so policy edits cannot rewrite history. */
  finalNotice?: boolean;
}

/** Where a message on a channel would go. Present fields only; each is PHI and never appears in a reason. */
export interface OutreachDestinations {
  /** E.164 phone number for texts. */
  sms?: string;
  email?: string;
  /** Whether a mailing address is on file. */
  letter?: boolean;
}

/** Everything the outreach rules need about one balance. */
export interface OutreachBalance {
  /** Opaque balance id; the only identifier reasons and logs carry. */
  balanceId: string;
  status: BalanceStatus;
  /** Amount due in integer cents. */
  amountDueCents: number;
  /** ISO 4217 currency of the amount (default `USD`). */
  currency?: string;
  /** Calendar date of the first statement, `YYYY-MM-DD`: step day offsets count from here. */
  firstStatementDate: string;
  /** Age of the debt in days (from the oldest charge), used by aging conditions. */
  ageDays: number;
  hasPlan: boolean;
  hasHold: boolean;
  consents: ConsentRecord[];
  optOuts: OptOut[];
  attempts: OutreachAttempt[];
  destinations: OutreachDestinations;
  /** Channels whose address on file a provider refused as undeliverable (Twilio 30003/30005/30006, an email hard bounce). */
  undeliverable?: MessageChannel[];
  /** The recipient's IANA time zone, when known (from the address); else the policy's, else the practice's. */
  timeZone?: string;
  /** The patient's preferred language (BCP 47, FHIR Patient.communication or HL7 PID-15), when known. */
  language?: string;
}

/** Whether the channel carries a message to the patient. */
export function isMessageChannel(channel: Channel): channel is MessageChannel {
  return channel !== 'agency';
}

/**
 * The template language for a patient: their own preference when Settle has templates for it (`es`, `es-MX`,
 * `spa` are Spanish; `en-US`, `eng` English), else the practice's, else English.
 */
export function chooseLanguage(patientPreference: string | undefined, practiceLanguage?: string): Language {
  return languageOf(patientPreference) ?? languageOf(practiceLanguage) ?? 'en';
}

function languageOf(tag: string | undefined): Language | undefined {
  const primary = tag?.trim().toLowerCase().split(/[-_]/)[0];
  if (primary === 'es' || primary === 'spa') return 'es';
  if (primary === 'en' || primary === 'eng') return 'en';
  return undefined;
}
