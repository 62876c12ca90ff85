/**
 * `runDemoDays` (what `settle demo` runs): a few fast-forwarded days of the demo practice through the engine's own
 * jobs on the embedded database, the sandbox EHR and the simulated practice-management system's MLLP feed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createLogger } from '../../src/config/logger.ts';
import { loadSettings } from '../../src/config/settings.ts';
import { runDemoDays, type DemoSummary } from '../../src/demo/time-warp.ts';
import { DEMO_CONSENT_SOURCE } from '../../src/demo/patients.ts';
import { DEMO_PRACTICE } from '../../src/demo/world.ts';
import { openDatabase } from '../../src/store/database.ts';
import { ROOT } from '../support/cli.ts';

const NOW = new Date('2026-06-15T16:00:00Z');
const DAYS = 5;
const VISITS_PER_DAY = 3;
const BACKLOG_VISIT_DAYS = 3;
const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function demo(seed: number): Promise<{ summary: DemoSummary; dataDir: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'settle-demo-'));
  dirs.push(dataDir);
  const settings = loadSettings({ SETTLE_DATA_DIR: dataDir, SETTLE_CONFIG_DIR: ROOT, SETTLE_PORT: '0' });
  const logger = createLogger({ level: 'error', stream: process.stderr });
  const summary = await runDemoDays({ settings, logger, days: DAYS, patients: 60, visitsPerDay: VISITS_PER_DAY, seed, backlogVisitDays: BACKLOG_VISIT_DAYS, now: NOW, print: () => {} });
  return { summary, dataDir };
}

describe('settle demo: five fast-forwarded days of the demo practice', () => {
  it('posts balances, writes messages to the outbox without sending any, takes sandbox payments and writes each back once, the same way for a seed', async () => {
    const { summary, dataDir } = await demo(7);
    assert.ok(summary.balances > 30, `balances from the sandbox EHR and the HL7 feed (got ${summary.balances})`);
    const messages = Object.values(summary.messages).reduce((a, b) => a + b, 0);
    assert.ok(messages > 0, 'reminders in the outbox');
    assert.deepEqual(Object.keys(summary.messages), Object.keys(summary.messages).sort(), 'channels in one order, so that the printed summary is the same for a seed');
    assert.ok(summary.payments > 0, 'some patients paid through the sandbox checkout');
    assert.equal(summary.writebacksDelivered, summary.payments, 'one delivered write-back per payment');
    assert.equal(summary.paymentReconciliationsInEhr, summary.payments, 'one PaymentReconciliation per payment in the sandbox EHR');

    const db = await openDatabase({ databaseUrl: undefined, dataDir, poolSize: 2 });
    try {
      const practice = (await db.pool.query<{ id: string; name: string }>('SELECT id, name FROM practices WHERE slug = $1', [DEMO_PRACTICE.slug])).rows[0]!;
      assert.match(practice.name, /\(demo\)/);
      const visits = (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM hl7_messages WHERE practice_id = $1', [practice.id])).rows[0]!.n;
      assert.equal(visits, (BACKLOG_VISIT_DAYS + DAYS - 1) * VISITS_PER_DAY, 'every visit the practice-management system sent (over several connections at once) is stored once');
      const registrations = (await db.pool.query<{ channel: string; n: number }>(
        `SELECT channel, count(*)::int AS n FROM contact_consents WHERE practice_id = $1 AND source = $2 GROUP BY channel ORDER BY channel`,
        [practice.id, DEMO_CONSENT_SOURCE],
      )).rows;
      assert.deepEqual(registrations.map((r) => r.channel), ['email', 'sms'], 'registration forms gave text and email consents');
      assert.ok((summary.messages.sms ?? 0) > 0, 'texts went to the outbox (they need a recorded consent)');
      const zones = (await db.pool.query<{ zone: string }>(
        `SELECT DISTINCT recipient_time_zone AS zone FROM outbox WHERE practice_id = $1 AND channel IN ('sms', 'email') ORDER BY 1`,
        [practice.id],
      )).rows.map((r) => r.zone);
      assert.ok(zones.includes('America/Los_Angeles'), `texts and emails reach patients on Pacific time too, past their quiet hours (zones reached: ${zones.join(', ')})`);
      const states = (await db.pool.query<{ state: string; n: number }>('SELECT state, count(*)::int AS n FROM outbox WHERE practice_id = $1 GROUP BY state', [practice.id])).rows;
      assert.ok(states.length > 0);
      for (const { state } of states) assert.ok(!['sent', 'delivered', 'sending'].includes(state), `nothing left the machine (outbox state ${state})`);
      const perPayment = (await db.pool.query<{ delivered: number }>(
        `SELECT (SELECT count(*) FROM writeback_outbox w WHERE w.payment_id = p.id AND w.status = 'delivered')::int AS delivered
           FROM payments p WHERE p.practice_id = $1 AND p.status = 'succeeded'`,
        [practice.id],
      )).rows;
      assert.equal(perPayment.length, summary.payments);
      assert.deepEqual([...new Set(perPayment.map((r) => r.delivered))], [1], 'each succeeded payment has exactly one delivered write-back');
      const dates = (await db.pool.query<{ first: string; last: string }>(
        'SELECT min(service_date)::text AS first, max(service_date)::text AS last FROM ledger_entries WHERE practice_id = $1 AND service_date IS NOT NULL',
        [practice.id],
      )).rows[0]!;
      assert.ok(dates.last <= NOW.toISOString().slice(0, 10), `no service date in the future (latest ${dates.last})`);
      assert.ok(Date.parse(dates.last) - Date.parse(dates.first) > 30 * 86_400_000, `balances of varied age (${dates.first} to ${dates.last})`);
      // PGlite analyzes nothing by itself: without the embedded database's upkeep these tables would never be
      // analyzed (reltuples -1) and the statements that read them would keep the plans made when they were empty.
      const { rows: unanalyzed } = await db.pool.query<{ relname: string }>(
        `SELECT relname FROM pg_class WHERE relname IN ('ledger_entries', 'balances', 'source_records', 'outbox', 'outreach_attempts') AND reltuples < 0`,
      );
      assert.deepEqual(unanalyzed, [], 'the tables the demo filled were analyzed while it ran');
    } finally {
      await db.close();
    }

    const again = await demo(7);
    const { seededAt: _a, ...first } = summary;
    const { seededAt: _b, ...second } = again.summary;
    assert.deepEqual(second, first, 'the same seed gives the same demo');
  });
});
