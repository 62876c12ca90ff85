/**
 * The one place where configured settings become channels: a map from message kind to the
 * {@link OutreachChannel} that sends it. A kind missing from the map has no channel: its outbox rows are held
 * (`held-no-channel`) and nothing leaves the machine until the practice configures it.
 *
 * - sms: Twilio, when TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_MESSAGING_SERVICE_SID are all set;
 * - email: SMTP, when SETTLE_SMTP_URL is set (see `email-channel.ts`);
 * - letter: always (letters are queued for the daily print batch: nothing leaves the machine).
 */
import type { Clock } from '../domain/clock.ts';
import type { Database } from '../store/database.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import type { ChannelKind, OutreachChannel } from './channel.ts';
import { emailChannelFromEnv } from './email-channel.ts';
import { LetterChannel } from './letter-channel.ts';
import { TwilioChannel, type TwilioChannelOptions } from './twilio-channel.ts';

/** The configured channels, by kind. */
export type ChannelMap = Partial<Record<ChannelKind, OutreachChannel>>;

/** Twilio credentials (all three, or none). */
export interface TwilioSettings {
  accountSid: string;
  authToken: string;
  messagingServiceSid: string;
}

/** What channels are built from. */
export interface ChannelSettings {
  publicUrl?: string | undefined;
  twilio?: TwilioSettings | undefined;
  /** The environment the email channel reads its SMTP settings from (default: none, no email channel). */
  env?: NodeJS.ProcessEnv;
}

/** What channels that keep state in the database (email bounces, unsubscribe links) need. */
export interface ChannelDependencies {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
}

/** Test hooks: transports that reach fakes instead of providers. */
export interface ChannelTransports {
  twilioHttpClient?: TwilioChannelOptions['httpClient'];
}

/** Builds the channel map from settings. */
export function buildChannels(settings: ChannelSettings, deps: ChannelDependencies, transports: ChannelTransports = {}): ChannelMap {
  const channels: ChannelMap = {};
  const email = settings.env ? emailChannelFromEnv(settings.env, { ...deps, ...(settings.publicUrl ? { publicUrl: settings.publicUrl } : {}) }) : undefined;
  if (email) channels.email = email;
  channels.letter = new LetterChannel({ ...deps, ...(settings.publicUrl ? { publicUrl: settings.publicUrl } : {}) });
  if (settings.twilio) {
    channels.sms = new TwilioChannel({
      ...settings.twilio,
      ...(settings.publicUrl ? { publicUrl: settings.publicUrl } : {}),
      ...(transports.twilioHttpClient ? { httpClient: transports.twilioHttpClient } : {}),
    });
  }
  return channels;
}

/** The kinds that have a channel. */
export function configuredKinds(channels: ChannelMap): ChannelKind[] {
  return (Object.keys(channels) as ChannelKind[]).filter((k) => channels[k] !== undefined);
}

/** Closes every channel (sockets, SMTP pools). */
export async function closeChannels(channels: ChannelMap): Promise<void> {
  await Promise.all(Object.values(channels).map((c) => c?.close?.()));
}
