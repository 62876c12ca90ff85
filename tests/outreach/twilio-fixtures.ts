/**
 * Shared set-up of the delivery and Twilio tests: a practice in Chicago, guarantors with a phone, an email
 * and consents, a balance each, planning with the default policy and real pay links, and an express app that
 * serves the Twilio webhooks through the real route machinery.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { problemHandler } from '../../src/api/problem.ts';
import { mountRoutes } from '../../src/api/routes.ts';
import { silentLogger } from '../../src/config/logger.ts';
import type { Clock, ManualClock } from '../../src/domain/clock.ts';
import type { PersonContact } from '../../src/domain/contact.ts';
import type { LedgerLine } from '../../src/domain/ledger.ts';
import { parseMoney } from '../../src/domain/money.ts';
import { parsePolicy } from '../../src/domain/policy.ts';
import { planPractice } from '../../src/outreach/run.ts';
import { twilioWebhookRoutes, type TwilioWebhookDependencies } from '../../src/outreach/twilio-webhooks.ts';
import { payLinkForGuarantor } from '../../src/store/guarantor-pay-links.ts';
import { parsePayLinkKeys } from '../../src/domain/pay-link.ts';
import { withTransaction, type Database } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { OutreachRepository } from '../../src/store/outreach.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';

export const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
export const payLinkKeys = parsePayLinkKeys(`1:${randomBytes(32).toString('base64url')}`);
export const policy = parsePolicy(JSON.parse(readFileSync(new URL('../../policies/default.json', import.meta.url), 'utf8')) as Record<string, unknown>);
export const logger = silentLogger();
export const PUBLIC_URL = 'https://settle.example.org';

// America/Chicago is UTC-5 in April 2026. Tue 2026-04-07 10:00 local; day 7 of the cadence is Tue 2026-04-14.
export const DAY0_10H = new Date('2026-04-07T15:00:00Z');
export const DAY7_11H = new Date('2026-04-14T16:00:00Z');

/** A guarantor (their own patient) with one balance. */
export interface Person {
  balanceId: string;
  guarantorId: string;
  phone: string;
}

/** Creates the practice. */
export async function createPractice(db: Database, slug: string): Promise<string> {
  return (await new PracticeRepository(db.pool).create({ slug, name: 'Riverside Family Medicine', timeZone: 'America/Chicago', phone: '(555) 010-0199' })).id;
}

/** Creates a patient who is their own guarantor, with a charge and (by default) text and email consent. */
export async function createPerson(db: Database, clock: Clock, practiceId: string, mrn: string, contact: PersonContact, options: { consent?: boolean; amount?: string } = {}): Promise<Person> {
  const ledger = new LedgerRepository(db.pool, cipher, clock);
  const patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: mrn }, contact);
  const guarantorId = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
  const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: `A-${mrn}` }, patientId });
  const line: LedgerLine = { lineKey: 'c1', kind: 'charge', amount: parseMoney(options.amount ?? '150.00', 'USD'), serviceDate: '2026-03-20', payer: 'patient', serviceCode: null, description: null };
  const posted = await withTransaction(db, (tx) =>
    ledger.on(tx).postSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: `inv-${mrn}`, versionId: '1', lastUpdated: null }, { accountId, guarantorId, patientId }, [line]));
  if (options.consent !== false) {
    const outreach = new OutreachRepository(db.pool, cipher, clock);
    for (const channel of ['sms', 'email'] as const) {
      const address = channel === 'sms' ? contact.phones?.[0] : contact.email;
      if (address) await outreach.recordConsent(practiceId, { channel, address, source: 'intake-form', at: new Date('2026-04-01T12:00:00Z') });
    }
  }
  return { balanceId: posted.balanceIds[0]!, guarantorId, phone: contact.phones?.[0] ?? '' };
}

/** Plans the practice's outreach at the clock's now. */
export function plan(db: Database, clock: ManualClock, practiceId: string) {
  return planPractice({ db, cipher, clock, logger, practiceId, policy, payLinkKeys, publicUrl: PUBLIC_URL });
}

/** The pay-link function the engine wires (payLinkForGuarantor). */
export function payLinkFor(db: Database, clock: Clock) {
  return (practiceId: string, guarantorId: string) => payLinkForGuarantor({ db, clock, keys: payLinkKeys, publicUrl: PUBLIC_URL }, { practiceId, guarantorId });
}

/** Serves the Twilio webhook routes on loopback. @returns its URL and a closer. */
export async function serveWebhooks(deps: TwilioWebhookDependencies): Promise<{ url: string; close(): Promise<void> }> {
  const app = express();
  app.use(express.json());
  const router = express.Router();
  mountRoutes(router, twilioWebhookRoutes(deps), async () => undefined);
  app.use(router);
  app.use(problemHandler(logger));
  const server: Server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

/** Outbox rows of a balance with their delivery state (oldest first). */
export async function outboxOf(db: Database, balanceId: string) {
  const { rows } = await db.pool.query<{ id: string; channel: string; state: string; provider_message_id: string | null; last_error_code: string | null; delivery_attempts: number; next_attempt_at: Date | null; fallback_of: string | null }>(
    'SELECT id, channel, state, provider_message_id, last_error_code, delivery_attempts, next_attempt_at, fallback_of FROM outbox WHERE balance_id = $1 ORDER BY seq',
    [balanceId],
  );
  return rows;
}

/** Attempts of a balance (oldest first). */
export async function attemptsOf(db: Database, balanceId: string) {
  const { rows } = await db.pool.query<{ step_id: string; channel: string; status: string; rule: string | null; reason: string | null; message_id: string | null; outbox_id: string | null }>(
    'SELECT step_id, channel, status, rule, reason, message_id, outbox_id FROM outreach_attempts WHERE balance_id = $1 ORDER BY seq',
    [balanceId],
  );
  return rows;
}
