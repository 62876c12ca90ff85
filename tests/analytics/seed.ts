/** The analytics benchmark's synthetic practice, also seeded small by the rollup tests. */
import type { Database } from '../../src/store/database.ts';

/**
 * A synthetic practice shaped like a busy real one, seeded set-based (the analytics benchmark's data, and a
 * rollup test's at a small size): `balances` balances over two years of service dates (2024-07-01 on), five per
 * patient, each patient their own guarantor (birth year 1930–2024, ZIP3 among 60 areas, 5% unknown); a patient
 * and an insurance charge each, 60% paid in full by the patient 5–95 days later (a third of those through Settle),
 * a text on day 0 and an email on day 7 for every other balance, one pay link per guarantor with link opens, and
 * a plan for every 50th balance. Also an empty second practice. Foreign-key and append-only triggers are off while
 * seeding (the rows are made consistent), so only for a throwaway database.
 * @returns the practice's id (slug `bench`).
 */
export async function seedAnalyticsPractice(db: Database, balances: number): Promise<string> {
  const BALANCES = balances;
  const GUARANTORS = Math.max(1, Math.floor(BALANCES / 5));
  const seedClient = await db.pool.connect();
  try {
    await seedClient.query("SET session_replication_role = replica");
    const q = (sql: string, values: unknown[] = []) => seedClient.query(sql, values);
    const practiceId = (await q("INSERT INTO practices (slug, name, time_zone) VALUES ('bench', 'Bench Clinic', 'America/New_York') RETURNING id")).rows[0].id as string;
    await q(`INSERT INTO practices (slug, name) VALUES ('bench-other', 'Other Clinic')`);
    // Patients (each their own guarantor): birth year 1930–2024, ZIP3 among 60 areas, 5% unknown.
    await q(`INSERT INTO patients (id, practice_id, identifier_system, identifier_value, birth_year, zip3, created_at, updated_at)
      SELECT md5('p' || i)::uuid, $1, 'urn:mrn', 'P' || i, CASE WHEN i % 20 = 0 THEN NULL ELSE 1930 + (i * 7919) % 95 END,
             CASE WHEN i % 20 = 1 THEN NULL ELSE lpad(((i * 104729) % 60 * 11 + 10)::text, 3, '0') END, now(), now()
      FROM generate_series(1, $2::bigint) i`, [practiceId, GUARANTORS]);
    await q(`INSERT INTO guarantors (id, practice_id, self_patient_id, created_at, updated_at)
      SELECT md5('g' || i)::uuid, $1, md5('p' || i)::uuid, now(), now() FROM generate_series(1, $2::bigint) i`, [practiceId, GUARANTORS]);
    await q(`INSERT INTO ledger_accounts (id, practice_id, identifier_system, identifier_value, patient_id, created_at, updated_at)
      SELECT md5('a' || i)::uuid, $1, 'urn:acct', 'A' || i, md5('p' || (1 + i % $3))::uuid, now(), now() FROM generate_series(1, $2::bigint) i`, [practiceId, BALANCES, GUARANTORS]);
    // Each balance: a patient charge and an insurance charge on a service date over two years; 60% paid in full by
    // the patient 5–95 days later (a third of those through Settle).
    await q(`CREATE TEMP TABLE seed AS
      SELECT i, md5('b' || i)::uuid AS balance_id, md5('a' || i)::uuid AS account_id, md5('g' || (1 + i % $2))::uuid AS guarantor_id,
             md5('p' || (1 + i % $2))::uuid AS patient_id, date '2024-07-01' + ((i * 31) % 730)::int AS service_date,
             1000 + (i * 37) % 49000 AS patient_minor, 5000 + (i * 53) % 95000 AS insurance_minor,
             i % 10 < 6 AS paid, (5 + (i * 13) % 90)::int AS days_to_pay, i % 10 < 2 AS through_settle,
             (ARRAY['99213','99214','99203','80053','85025','93000','71046','36415','90471','99395','G0438','97110'])[1 + (i * 17) % 12] AS code
      FROM generate_series(1, $1::bigint) i`, [BALANCES, GUARANTORS]);
    await q(`INSERT INTO balances (id, practice_id, guarantor_id, account_id, patient_id, currency, patient_amount_minor, insurance_amount_minor, status,
        oldest_open_date, status_changed_at, created_at, updated_at)
      SELECT balance_id, $1, guarantor_id, account_id, patient_id, 'USD', CASE WHEN paid THEN 0 ELSE patient_minor END, CASE WHEN i % 3 = 0 THEN insurance_minor ELSE 0 END,
             CASE WHEN paid THEN 'paid' WHEN i % 50 = 7 THEN 'written_off' ELSE 'in_outreach' END, CASE WHEN paid THEN NULL ELSE service_date END, now(), now(), now()
      FROM seed`, [practiceId]);
    const entry = (kind: string, payer: string, amount: string, effect: string, date: string, code: string, connector: string, where = 'true') =>
      q(`INSERT INTO ledger_entries (practice_id, balance_id, account_id, guarantor_id, patient_id, kind, amount_minor, effect_minor, currency, service_date, payer,
           service_code, line_key, source_connector, source_resource_type, source_id, source_version, posted_at)
         SELECT $1, balance_id, account_id, guarantor_id, patient_id, '${kind}', ${amount}, ${effect}, 'USD', ${date}, '${payer}', ${code}, '${kind}-${payer}',
           ${connector}, 'Invoice', 'inv-' || i, '1', now() FROM seed WHERE ${where}`, [practiceId]);
    await entry('charge', 'patient', 'patient_minor', 'patient_minor', 'service_date', 'code', "'ehr'");
    await entry('charge', 'insurance', 'insurance_minor', 'insurance_minor', 'service_date', 'code', "'ehr'");
    await entry('payment', 'patient', 'patient_minor', '-patient_minor', 'service_date + days_to_pay', 'NULL', "CASE WHEN through_settle THEN 'settle' ELSE 'ehr' END", 'paid');
    await entry('payment', 'insurance', 'insurance_minor', '-insurance_minor', 'service_date + 30', 'NULL', "'ehr'", 'i % 3 <> 0');
    await q(`INSERT INTO balance_status_history (balance_id, from_status, to_status, actor, occurred_at)
      SELECT balance_id, NULL, 'open', 'system:ingest', service_date::timestamp + interval '12 hours' FROM seed
      UNION ALL SELECT balance_id, 'in_outreach', 'paid', 'system:ingest', (service_date + days_to_pay)::timestamp + interval '15 hours' FROM seed WHERE paid`);
    // Outreach: a text on day 0 for every balance, an email on day 7 for every other one.
    await q(`INSERT INTO outreach_attempts (practice_id, balance_id, step_id, channel, planned_at, status, updated_at)
      SELECT $1::uuid, balance_id, 'day-0', 'sms', service_date::timestamp + interval '14 hours', CASE WHEN i % 9 = 0 THEN 'suppressed' ELSE 'sent' END, now() FROM seed
      UNION ALL SELECT $1::uuid, balance_id, 'day-7', 'email', service_date::timestamp + interval '7 days 14 hours', 'sent', now() FROM seed WHERE i % 2 = 0`, [practiceId]);
    // Settle payments, one pay link per guarantor and link opens (audit events).
    await q(`INSERT INTO payments (id, practice_id, guarantor_id, balance_ids, amount_minor, currency, status, succeeded_at, created_at, updated_at)
      SELECT md5('pay' || i)::uuid, $1, guarantor_id, ARRAY[balance_id], patient_minor, 'USD', 'succeeded', (service_date + days_to_pay)::timestamp + interval '15 hours', now(), now()
      FROM seed WHERE through_settle`, [practiceId]);
    await q(`INSERT INTO pay_links (link_id, practice_id, guarantor_id, key_id, expires_at, open_count, created_at)
      SELECT substr(md5('l' || i), 1, 18), $1, md5('g' || i)::uuid, 1, now() + interval '1 year', 1, now() FROM generate_series(1, $2::bigint) i`, [practiceId, GUARANTORS]);
    await q(`INSERT INTO audit_events (practice_id, occurred_at, actor, action, entity_type, entity_id, detail, prev_hash, hash)
      SELECT $1, s.service_date::timestamp + interval '1 day 16 hours', 'patient:x', 'paylink.open', 'pay_link', substr(md5('l' || (1 + s.i % $2)), 1, 18), '{}', '', md5('open' || s.i) || md5('h' || s.i)
      FROM seed s WHERE s.i % 10 < 3`, [practiceId, GUARANTORS]);
    // Plans: 20,000, a third each active, completed and defaulted, three installments each.
    await q(`INSERT INTO payment_plans (id, practice_id, guarantor_id, balance_ids, currency, total_minor, months, terms, time_zone, retry_offsets_days, status, created_at, updated_at)
      SELECT md5('plan' || i)::uuid, $1, guarantor_id, ARRAY[balance_id], 'USD', 30000, 3, '{}', 'America/New_York', '{1,3,7}',
             (ARRAY['active','completed','defaulted'])[1 + i % 3], service_date::timestamp + interval '10 days', now()
      FROM seed WHERE i % 50 = 1`, [practiceId]);
    await q(`INSERT INTO plan_installments (practice_id, plan_id, number, due_date, amount_minor, status, payment_id, updated_at)
      SELECT $1, md5('plan' || s.i)::uuid, n, s.service_date + n * 30, 10000, CASE WHEN n = 1 THEN 'paid' ELSE 'scheduled' END,
             CASE WHEN n = 1 AND s.through_settle THEN md5('pay' || s.i)::uuid END, now()
      FROM seed s, generate_series(1, 3) n WHERE s.i % 50 = 1`, [practiceId]);
    return practiceId;
  } finally {
    seedClient.release(true);
  }
}
