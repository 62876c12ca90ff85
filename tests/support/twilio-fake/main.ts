/**
 * Runs the Twilio fake in its own process (benchmarks: the fake's work then does not share the worker's CPU).
 * Prints one JSON line `{ url, accountSid, authToken, messagingServiceSid }` and serves until killed.
 */
import { startTwilioFake } from './server.ts';

const fake = await startTwilioFake();
process.stdout.write(`${JSON.stringify({ url: fake.url, accountSid: fake.accountSid, authToken: fake.authToken, messagingServiceSid: fake.messagingServiceSid })}\n`);
process.on('SIGTERM', () => void fake.close().then(() => process.exit(0)));
