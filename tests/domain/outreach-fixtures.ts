/** Shared builders for the outreach rule tests: a balance, attempts, the default policy. */
import { readFileSync } from 'node:fs';
import type { OutreachAttempt, OutreachBalance } from '../../src/domain/outreach.ts';
import { parsePolicy, type Policy } from '../../src/domain/policy.ts';

export const PRACTICE_ZONE = 'America/New_York';

/** The shipped default policy, parsed. */
export function defaultPolicy(overrides: Partial<Policy> = {}): Policy {
  const document = JSON.parse(readFileSync(new URL('../../policies/default.json', import.meta.url), 'utf8'));
  return { ...parsePolicy(document), ...overrides };
}

/** An open $123.45 balance first billed on Monday 2026-03-02, with consent to text and email. */
export function balance(overrides: Partial<OutreachBalance> = {}): OutreachBalance {
  return {
    balanceId: 'bal_1',
    status: 'open',
    amountDueCents: 12345,
    firstStatementDate: '2026-03-02',
    ageDays: 30,
    hasPlan: false,
    hasHold: false,
    consents: [
      { channel: 'sms', address: '+15555550100', source: 'intake-form', at: new Date('2026-01-10T15:00:00Z') },
      { channel: 'email', source: 'portal', at: new Date('2026-01-10T15:00:00Z') },
    ],
    optOuts: [],
    attempts: [],
    destinations: { sms: '+15555550100', email: 'pat@example.org', letter: true },
    timeZone: 'America/New_York',
    ...overrides,
  };
}

export function attempt(stepId: string, channel: OutreachAttempt['channel'], at: string, outcome: OutreachAttempt['outcome'] = 'sent'): OutreachAttempt {
  return { stepId, channel, at: new Date(at), outcome };
}

export const at = (iso: string) => new Date(iso);
