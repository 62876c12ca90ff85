/**
 * Outreach delivery throughput: 2,000 queued texts (for 500 balances) sent by one worker (one `deliverDue` run, its default
 * parallelism) through the official Twilio SDK to the Twilio fake, each claimed, opt-out-checked, sent and
 * committed with its attempt; on the embedded database and on a PostgreSQL server (BENCH_DATABASE_URL, else
 * TEST_DATABASE_URL). Target: ≥ 200 sends/s. Peer: the bare SDK → fake loop (no database), the ceiling.
 * The fake runs in its own process, as Twilio would, so its work does not take the worker's CPU.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { systemClock } from '../src/domain/clock.ts';
import { buildChannels } from '../src/outreach/channels.ts';
import { deliverDue } from '../src/outreach/deliver.ts';
import { TwilioChannel } from '../src/outreach/twilio-channel.ts';
import { withTransaction } from '../src/store/database.ts';
import { OutreachRepository } from '../src/store/outreach.ts';
import { createTestDatabase } from '../tests/support/databases.ts';
import { fakeHttpClient } from '../tests/support/twilio-fake/server.ts';
import { cipher, createPerson, createPractice, logger, PUBLIC_URL } from '../tests/outreach/twilio-fixtures.ts';

const MESSAGES = 2000;
/** Distinct balances the texts are for (four texts each, as several steps would make). */
const BALANCES = 500;
const TARGET = 200;
const child = spawn(process.execPath, [fileURLToPath(new URL('../tests/support/twilio-fake/main.ts', import.meta.url))], { stdio: ['ignore', 'pipe', 'inherit'] });
const fake = JSON.parse(await new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once('line', resolve))) as {
  url: string; accountSid: string; authToken: string; messagingServiceSid: string;
};
const twilio = { accountSid: fake.accountSid, authToken: fake.authToken, messagingServiceSid: fake.messagingServiceSid };

async function sendsPerSecond(engine: 'pglite' | 'postgres'): Promise<number> {
  const handle = await createTestDatabase(engine, 12);
  const db = handle.db;
  const clock = systemClock;
  const practiceId = await createPractice(db, `bench-${engine}`);
  const balances: string[] = [];
  for (let b = 0; b < BALANCES; b++) {
    balances.push((await createPerson(db, clock, practiceId, `B${b}`, { name: { given: ['Pat'] }, phones: [`+1312${String(5550000 + b).padStart(7, '0')}`] }, { consent: false })).balanceId);
  }
  await withTransaction(db, async (tx) => {
    const store = new OutreachRepository(tx, cipher, clock);
    for (let i = 0; i < MESSAGES; i++) {
      const recipient = `+1617${String(5550000 + i).padStart(7, '0')}`;
      const balanceId = balances[i % BALANCES]!;
      const outboxId = await store.addToOutbox({ practiceId, balanceId, channel: 'sms', recipient, body: `Riverside: Hi Pat, $150.00 is due. Pay: ${PUBLIC_URL}/p/x Reply STOP to opt out.`, language: 'en', template: 'friendly-reminder' });
      await store.recordAttempt({ practiceId, balanceId, stepId: `bench-${i}`, channel: 'sms', plannedAt: clock.now(), status: 'sent', outboxId });
    }
  });
  const channels = buildChannels({ publicUrl: PUBLIC_URL, twilio }, { db, cipher, clock }, { twilioHttpClient: fakeHttpClient(fake.url) });
  const started = performance.now();
  const result = await deliverDue({ db, cipher, clock, logger, channels });
  const seconds = (performance.now() - started) / 1000;
  if (result.sent !== MESSAGES) throw new Error(`sent ${result.sent} of ${MESSAGES}: ${JSON.stringify(result)}`);
  await handle.drop();
  return MESSAGES / seconds;
}

async function sdkCeiling(): Promise<number> {
  const channel = new TwilioChannel({ ...twilio, publicUrl: PUBLIC_URL, httpClient: fakeHttpClient(fake.url) });
  const started = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < MESSAGES) {
      const i = next++;
      await channel.send({ outboxId: String(i), practiceId: 'p', balanceId: 'b', channel: 'sms', to: '+16175550100', subject: null, body: 'x', html: null, language: 'en' });
    }
  }));
  return MESSAGES / ((performance.now() - started) / 1000);
}

const ceiling = await sdkCeiling();
const serverUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL;
const rows: [string, number][] = [['embedded PGlite', await sendsPerSecond('pglite')]];
if (serverUrl) {
  process.env.TEST_DATABASE_URL = serverUrl;
  rows.push(['PostgreSQL server', await sendsPerSecond('postgres')]);
} else {
  console.log('outreach send (PostgreSQL server): skipped, set BENCH_DATABASE_URL');
}
for (const [name, rate] of rows) {
  console.log(`outreach send (${name}, ${MESSAGES} texts, 1 worker): ${rate.toFixed(0)} sends/s (${(rate / TARGET).toFixed(2)}x the 200/s target, ${(rate / ceiling).toFixed(2)}x vs bare SDK→fake ${ceiling.toFixed(0)}/s)`);
}
child.kill('SIGTERM');
