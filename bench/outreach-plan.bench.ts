/**
 * Daily outreach planning over 1,000,000 synthetic balances on a PostgreSQL server (BENCH_DATABASE_URL, else
 * TEST_DATABASE_URL): target ≤ 60 s and ≤ 1 GiB peak RSS. Prints the planning time, the peak RSS (sampled
 * every 50 ms), how many balances were planned and what was written.
 *
 * The practice is seeded with set-based SQL (no insert per row): one patient, guarantor, account and balance
 * per number, contacts drawn from 1,000 encrypted contact sets, cadence starts spread over the last 130 days
 * with the attempt history the daily planner would have left (so, as in a real practice, most balances are
 * between steps today), 0.5% balances outreach has never seen, and some paid, on a plan or on hold.
 * `BENCH_OUTREACH_BALANCES` changes the count.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { silentLogger } from '../src/config/logger.ts';
import { ManualClock } from '../src/domain/clock.ts';
import { parsePolicy } from '../src/domain/policy.ts';
import { payLinkKeyRing } from '../src/domain/pay-link.ts';
import { planPractice } from '../src/outreach/run.ts';
import { PhiCipher } from '../src/store/phi-crypto.ts';
import { PracticeRepository } from '../src/store/practices.ts';
import { createTestDatabase } from '../tests/support/databases.ts';

const serverUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL;
if (!serverUrl) {
  console.log('outreach plan: skipped (set BENCH_DATABASE_URL or TEST_DATABASE_URL to a PostgreSQL server)');
  process.exit(0);
}
process.env.TEST_DATABASE_URL = serverUrl;

const N = Number(process.env.BENCH_OUTREACH_BALANCES ?? 1_000_000);
const CONTACTS = 1000;
const NOW = new Date('2026-06-10T15:00:00Z'); // Wednesday 10:00 in Chicago: no quiet hours, no holiday
const TODAY = '2026-06-10';
const policyDocument = JSON.parse(readFileSync(new URL('../policies/default.json', import.meta.url), 'utf8')) as Record<string, unknown>;
const policy = parsePolicy(policyDocument);
// Fixed keys, so a database kept with BENCH_KEEP_DATABASE can be planned again by hand.
const benchKey = (label: string) => createHash('sha256').update(`settle bench ${label}`).digest();
const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: benchKey('phi') }], blindIndexKey: benchKey('blind index') });
const keys = payLinkKeyRing(1, [[1, randomBytes(32)]]);
const FIRST_NAMES = ['Maria', 'James', 'Guadalupe', 'Christopher', 'Nguyen', 'Alexandra', 'José', 'Bartholomew', 'Mei', 'Oluwaseun'];

/** Ends the run after seeding (`BENCH_SEED_ONLY`, with `BENCH_KEEP_DATABASE` to plan by hand). */
class SeedOnly extends Error {}

const handle = await createTestDatabase('postgres', 10);
const db = handle.db;
try {
  const seedStarted = performance.now();
  const practice = await new PracticeRepository(db.pool).create({ slug: 'bench', name: 'Riverside Family Medicine', timeZone: 'America/Chicago', phone: '(555) 010-0199' });
  const enc = (field: string, make: (k: number) => unknown) => Array.from({ length: CONTACTS }, (_, k) => cipher.encrypt(JSON.stringify(make(k)), `patients.${field}`));
  const phone = (k: number) => `(312) 555-${String(k).padStart(4, '0')}`;
  const email = (k: number) => `patient${k}@example.org`;
  const contact = {
    names: enc('name', (k) => ({ given: [FIRST_NAMES[k % FIRST_NAMES.length]], family: `Family${k}` })),
    phones: enc('phones', (k) => [phone(k)]),
    emails: enc('email', email),
    addresses: enc('address', (k) => ({ lines: [`${k} Main St`], city: 'Chicago', state: 'IL', postalCode: '60601' })),
    languages: enc('language', (k) => (k % 5 === 0 ? 'es' : 'en')),
  };
  // One connection for seeding, with foreign-key checks and triggers off (the rows are consistent by construction;
  // the summary the attempts trigger keeps is written directly).
  const seeder = await db.pool.connect();
  await seeder.query("SET session_replication_role = 'replica'");
  const q = async (sql: string, values: unknown[] = []) => {
    const t = performance.now();
    const r = await seeder.query(sql, values);
    if (process.env.BENCH_VERBOSE) console.error(`${((performance.now() - t) / 1000).toFixed(2)} s: ${sql.trim().slice(0, 60)}`);
    return r;
  };
  await q(
    `INSERT INTO patients (practice_id, identifier_system, identifier_value, name_enc, phones_enc, email_enc, address_enc, language_enc, created_at, updated_at)
     SELECT $1, 'urn:mrn', i::text, ($2::text[])[1 + i % ${CONTACTS}], ($3::text[])[1 + i % ${CONTACTS}], ($4::text[])[1 + i % ${CONTACTS}],
            ($5::text[])[1 + i % ${CONTACTS}], ($6::text[])[1 + i % ${CONTACTS}], $7, $7
     FROM generate_series(1, $8::int) AS i`,
    [practice.id, contact.names, contact.phones, contact.emails, contact.addresses, contact.languages, NOW, N],
  );
  await q(`INSERT INTO guarantors (practice_id, self_patient_id, created_at, updated_at) SELECT practice_id, id, created_at, created_at FROM patients WHERE practice_id = $1`, [practice.id]);
  await q(
    `INSERT INTO ledger_accounts (practice_id, identifier_system, identifier_value, patient_id, created_at, updated_at)
     SELECT practice_id, 'urn:acct', 'A' || identifier_value, id, created_at, created_at FROM patients WHERE practice_id = $1`,
    [practice.id],
  );
  // Status by number: 4% paid, 3% on a plan, 2% on hold, the rest open; amounts $10.00–$509.99.
  await q(
    `INSERT INTO balances (practice_id, guarantor_id, account_id, patient_id, currency, patient_amount_minor, status, hold_reason, oldest_open_date, status_changed_at, created_at, updated_at)
     SELECT p.practice_id, g.id, a.id, p.id, 'USD',
            CASE WHEN n % 100 < 4 THEN 0 ELSE 1000 + (n::bigint * 7919) % 50000 END,
            CASE WHEN n % 100 < 4 THEN 'paid' WHEN n % 100 < 7 THEN 'in_plan' WHEN n % 100 < 9 THEN 'on_hold' ELSE 'open' END,
            CASE WHEN n % 100 BETWEEN 7 AND 8 THEN 'insurance_pending' END,
            $2::date - (n % 130) - 5, $3, $3, $3
     FROM patients p JOIN guarantors g ON g.self_patient_id = p.id JOIN ledger_accounts a ON a.patient_id = p.id,
          LATERAL (SELECT p.identifier_value::int AS n) x
     WHERE p.practice_id = $1`,
    [practice.id, TODAY, NOW],
  );
  const stepIds: string[] = [];
  const offsets: number[] = [];
  const channels: string[] = [];
  for (const step of policy.steps) for (const channel of step.channels) { stepIds.push(step.id); offsets.push(step.dayOffset); channels.push(channel); }
  // Cadence starts over the last 130 days; every 200th balance is new to outreach.
  await q(
    `INSERT INTO outreach_balances (balance_id, practice_id, first_statement_date, created_at, attempted)
     SELECT b.id, b.practice_id, f.first, $3,
            ARRAY(SELECT s.step_id || ' ' || s.channel FROM unnest($4::text[], $5::int[], $6::text[]) AS s(step_id, day_offset, channel) WHERE f.first + s.day_offset < $2::date)
     FROM balances b JOIN patients p ON p.id = b.patient_id, LATERAL (SELECT $2::date - (p.identifier_value::int % 130) AS first) f
     WHERE b.practice_id = $1 AND p.identifier_value::int % 200 <> 0`,
    [practice.id, TODAY, NOW, stepIds, offsets, channels],
  );
  // The history the planner would have left: every step-channel due before today attempted on its day
  // (texts suppressed for every tenth number, as if they had no consent).
  await q(
    `INSERT INTO outreach_attempts (practice_id, balance_id, step_id, channel, planned_at, status, rule, final_notice, updated_at)
     SELECT ob.practice_id, ob.balance_id, s.step_id, s.channel, (ob.first_statement_date + s.day_offset) + time '15:00',
            CASE WHEN s.channel = 'sms' AND n % 10 = 0 THEN 'suppressed' ELSE 'sent' END,
            CASE WHEN s.channel = 'sms' AND n % 10 = 0 THEN 'sms-consent' END, s.step_id = 'final-notice', $3
     FROM outreach_balances ob JOIN balances b ON b.id = ob.balance_id JOIN patients p ON p.id = b.patient_id,
          LATERAL (SELECT p.identifier_value::int AS n) x,
          unnest($4::text[], $5::int[], $6::text[]) AS s(step_id, day_offset, channel)
     WHERE ob.practice_id = $1 AND ob.first_statement_date + s.day_offset < $2::date`,
    [practice.id, TODAY, NOW, stepIds, offsets, channels],
  );
  const phoneIndexes = Array.from({ length: CONTACTS }, (_, k) => cipher.blindIndex('phone', phone(k)));
  const emailIndexes = Array.from({ length: CONTACTS }, (_, k) => cipher.blindIndex('email', email(k)));
  await q(
    `INSERT INTO contact_consents (practice_id, channel, address_index, source, recorded_at)
     SELECT $1::uuid, 'sms', i, 'intake-form', $3::timestamptz FROM unnest($2::text[]) WITH ORDINALITY AS u(i, n) WHERE (n - 1) % 10 <> 0
     UNION ALL SELECT $1::uuid, 'email', i, 'intake-form', $3::timestamptz FROM unnest($4::text[]) AS i`,
    [practice.id, phoneIndexes, NOW, emailIndexes],
  );
  await q(
    `INSERT INTO opt_outs (practice_id, channel, address_index, source, at)
     SELECT $1, 'sms', i, 'keyword:STOP', $3 FROM unnest($2::text[]) WITH ORDINALITY AS u(i, n) WHERE (n - 1) % 97 = 1`,
    [practice.id, phoneIndexes, NOW],
  );
  seeder.release();
  await db.pool.query('ANALYZE');
  const attempts = Number((await db.pool.query('SELECT count(*) AS n FROM outreach_attempts')).rows[0].n);
  console.error(`seeded ${N} balances, ${attempts} attempts in ${((performance.now() - seedStarted) / 1000).toFixed(1)} s`);

  if (process.env.BENCH_SEED_ONLY) throw new SeedOnly();
  let peak = process.memoryUsage().rss;
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 50);
  const started = performance.now();
  const result = await planPractice({ db, cipher, clock: new ManualClock(NOW), logger: silentLogger(), practiceId: practice.id, policy, payLinkKeys: keys, publicUrl: 'https://pay.rfm.org' });
  const seconds = (performance.now() - started) / 1000;
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage().rss);
  const mib = peak / 2 ** 20;
  console.log(`outreach plan time (PostgreSQL server, ${N.toLocaleString('en-US')} balances): ${seconds.toFixed(1)} s (${(seconds / 60).toFixed(2)}x the 60 s target)`);
  console.log(`outreach plan peak RSS (PostgreSQL server, ${N.toLocaleString('en-US')} balances): ${mib.toFixed(0)} MiB (${(mib / 1024).toFixed(2)}x the 1 GiB target)`);
  console.log(
    `outreach plan work: ${result.balances} eligible, ${result.planned} planned, ${result.sent.length} sent to the outbox, ${result.suppressed.length} suppressed, ` +
      `${result.deferred.length} deferred, ${result.agencyReady.length} agency-ready, ${result.failed.length} failed`,
  );
  if (result.failed.length > 0) console.log(`first failure: ${result.failed[0]!.reason}`);
} catch (error) {
  if (!(error instanceof SeedOnly)) throw error;
} finally {
  if (process.env.BENCH_KEEP_DATABASE) console.error(`kept ${handle.url}`);
  else await handle.drop();
}
process.exit(0);
