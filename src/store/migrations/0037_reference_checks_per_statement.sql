-- Outbox messages and outreach attempts checked against their practice and balance once per statement instead of
-- once per row, and one set of such checks for every table that has them instead of a copy per table; an index no
-- query reads goes; and ANALYZE skips the columns no query searches by.
--
-- The daily planner writes a day's messages in one INSERT into outbox and their attempts in one INSERT into
-- outreach_attempts (PlanningWrites); their foreign keys ran a check per row for the practice and one for the balance
-- (a query and a key-share row lock each), with seven index entries per attempt. 0030 (hl7_messages), 0031
-- (source_records) and 0032 (the ledger's parties, balances and sources) had replaced foreign keys by triggers, each
-- with its own plpgsql for the same three jobs: check the new rows' references once per statement, refuse a change
-- of a row's practice, and keep a practice that still has rows from being deleted or renumbered. Now:
-- 1. check_references(tbl, col, parent, keys) (0032's ledger_check_keys, renamed: it serves more than the ledger) is
--    the one lookup: one index scan for all the distinct keys, practices key-share locked as the foreign keys did,
--    balances not (they are never deleted and keep their id: 0027). The errors keep the constraints' names and their
--    SQLSTATE (23503).
-- 2. rows_check_references(), the statement trigger of every such table (0032's ledger_rows_check_keys, renamed and
--    taught hl7_messages, source_records, outbox and outreach_attempts): every table's practice, then the table's
--    other references (a balance for the outbox and attempts; parties for the ledger's tables). The outbox and
--    attempts lose their practice and balance foreign keys to it. An attempt's outbox message and a message's
--    fallback_of keep their foreign keys: messages can be deleted, and most attempts (suppressions) and every
--    planned message have none, so those checks rarely run.
-- 3. rows_keys_fixed(column) (0032's ledger_rows_keys_fixed, renamed) refuses a change of a row's practice on
--    hl7_messages, source_records, outbox and outreach_attempts too ("a row of hl7_messages keeps its practice_id"),
--    and of a message's or attempt's balance.
-- 4. practices_keep_rows(table, ...) replaces the three delete and renumber guards on practices and guards the
--    outbox and attempts too: the tables it is given are looked at in order, and the first that still has rows of
--    the practice names the refusal ("DELETE on practices violates hl7_messages_practice_id_fkey: practice ... still
--    has hl7_messages rows"). Deleting or renumbering a practice is rare, so its query is built per table (EXECUTE).
--    The delete or update locks the practice first, so it waits for an insert holding the key-share lock, and an
--    insert waits for it.
-- 5. outreach_attempts_balance_planned_idx (balance_id, planned_at) goes: 0017 made it for channel attribution's
--    latest send to a balance, which now reads the practice's sends at once (src/analytics/rollup-sql.ts), and no
--    query reads attempts by balance and time. Every read by balance (a balance's timeline, the planner's attempts
--    and cadence starts, delivery's channels of a step, the attempted steps of 0034, the agency export's join) finds
--    them by outreach_attempts_step_key (balance_id, step_id, channel); the analytics read them by practice
--    (outreach_attempts_practice_idx).
-- 6. ANALYZE (the embedded database's upkeep, autovacuum on a server) no longer gathers statistics for the columns no
--    query filters, joins, groups or sorts by: an attempt's verdicts (JSON, about 750 bytes; comparing them for the
--    most common values and histogram was nine tenths of analyzing outreach_attempts: 1.7 of 1.9 s of CPU at 21,000
--    attempts on the embedded database) and a message's texts and encrypted recipient (half of analyzing outbox).
-- The checks on ledger_entries (0027: the balance with its practice, guarantor and account, and reversals) stay
-- their own: no other table has them.
ALTER TABLE outreach_attempts ALTER COLUMN verdicts SET STATISTICS 0;
ALTER TABLE outbox ALTER COLUMN recipient_enc SET STATISTICS 0, ALTER COLUMN subject SET STATISTICS 0, ALTER COLUMN body SET STATISTICS 0,
  ALTER COLUMN html SET STATISTICS 0;
ALTER TABLE outbox DROP CONSTRAINT outbox_practice_id_fkey, DROP CONSTRAINT outbox_balance_id_fkey;
ALTER TABLE outreach_attempts DROP CONSTRAINT outreach_attempts_practice_id_fkey, DROP CONSTRAINT outreach_attempts_balance_id_fkey;
DROP INDEX outreach_attempts_balance_planned_idx;

ALTER FUNCTION ledger_check_keys(text, text, text, uuid[]) RENAME TO check_references;
ALTER FUNCTION ledger_rows_keys_fixed() RENAME TO rows_keys_fixed;
ALTER FUNCTION ledger_rows_check_keys() RENAME TO rows_check_references;
ALTER FUNCTION ledger_rows_check_changed_keys() RENAME TO rows_check_changed_references;

CREATE OR REPLACE FUNCTION rows_check_references() RETURNS trigger AS $$
BEGIN
  IF TG_TABLE_NAME = 'balance_status_history' THEN
    PERFORM check_references(TG_TABLE_NAME, 'balance_id', 'balances', ARRAY(SELECT DISTINCT balance_id FROM new_rows));
    RETURN NULL;
  END IF;
  PERFORM check_references(TG_TABLE_NAME, 'practice_id', 'practices', ARRAY(SELECT DISTINCT practice_id FROM new_rows));
  IF TG_TABLE_NAME IN ('outbox', 'outreach_attempts') THEN
    PERFORM check_references(TG_TABLE_NAME, 'balance_id', 'balances', ARRAY(SELECT DISTINCT balance_id FROM new_rows));
  ELSIF TG_TABLE_NAME = 'guarantors' THEN
    PERFORM check_references(TG_TABLE_NAME, 'self_patient_id', 'patients', ARRAY(SELECT DISTINCT self_patient_id FROM new_rows WHERE self_patient_id IS NOT NULL));
  ELSIF TG_TABLE_NAME = 'ledger_accounts' THEN
    PERFORM check_references(TG_TABLE_NAME, 'patient_id', 'patients', ARRAY(SELECT DISTINCT patient_id FROM new_rows WHERE patient_id IS NOT NULL));
    PERFORM check_references(TG_TABLE_NAME, 'guarantor_id', 'guarantors', ARRAY(SELECT DISTINCT guarantor_id FROM new_rows WHERE guarantor_id IS NOT NULL));
  ELSIF TG_TABLE_NAME = 'balances' THEN
    PERFORM check_references(TG_TABLE_NAME, 'guarantor_id', 'guarantors', ARRAY(SELECT DISTINCT guarantor_id FROM new_rows));
    PERFORM check_references(TG_TABLE_NAME, 'account_id', 'ledger_accounts', ARRAY(SELECT DISTINCT account_id FROM new_rows));
    PERFORM check_references(TG_TABLE_NAME, 'patient_id', 'patients', ARRAY(SELECT DISTINCT patient_id FROM new_rows WHERE patient_id IS NOT NULL));
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION rows_check_changed_references() RETURNS trigger AS $$
BEGIN
  IF TG_TABLE_NAME = 'guarantors' THEN
    PERFORM check_references(TG_TABLE_NAME, 'self_patient_id', 'patients', ARRAY_REMOVE(ARRAY[NEW.self_patient_id], NULL));
  ELSIF TG_TABLE_NAME = 'ledger_accounts' THEN
    PERFORM check_references(TG_TABLE_NAME, 'patient_id', 'patients', ARRAY_REMOVE(ARRAY[NEW.patient_id], NULL));
    PERFORM check_references(TG_TABLE_NAME, 'guarantor_id', 'guarantors', ARRAY_REMOVE(ARRAY[NEW.guarantor_id], NULL));
  ELSE
    PERFORM check_references(TG_TABLE_NAME, 'patient_id', 'patients', ARRAY_REMOVE(ARRAY[NEW.patient_id], NULL));
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;

-- The inserting side of hl7_messages, source_records, outbox and outreach_attempts.
DROP TRIGGER hl7_messages_practice ON hl7_messages;
DROP TRIGGER source_records_practice ON source_records;
CREATE TRIGGER hl7_messages_keys AFTER INSERT ON hl7_messages
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rows_check_references();
CREATE TRIGGER source_records_keys AFTER INSERT ON source_records
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rows_check_references();
CREATE TRIGGER outbox_keys AFTER INSERT ON outbox
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rows_check_references();
CREATE TRIGGER outreach_attempts_keys AFTER INSERT ON outreach_attempts
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rows_check_references();
DROP FUNCTION hl7_messages_check_practice(), source_records_check_practice();

-- A row's practice (and a message's or attempt's balance) never changes.
DROP TRIGGER hl7_messages_practice_unchanged ON hl7_messages;
DROP TRIGGER source_records_practice_unchanged ON source_records;
CREATE TRIGGER hl7_messages_practice_unchanged BEFORE UPDATE OF practice_id ON hl7_messages
  FOR EACH ROW WHEN (OLD.practice_id IS DISTINCT FROM NEW.practice_id) EXECUTE FUNCTION rows_keys_fixed('practice_id');
CREATE TRIGGER source_records_practice_unchanged BEFORE UPDATE OF practice_id ON source_records
  FOR EACH ROW WHEN (OLD.practice_id IS DISTINCT FROM NEW.practice_id) EXECUTE FUNCTION rows_keys_fixed('practice_id');
CREATE TRIGGER outbox_practice_unchanged BEFORE UPDATE OF practice_id ON outbox
  FOR EACH ROW WHEN (OLD.practice_id IS DISTINCT FROM NEW.practice_id) EXECUTE FUNCTION rows_keys_fixed('practice_id');
CREATE TRIGGER outbox_balance_unchanged BEFORE UPDATE OF balance_id ON outbox
  FOR EACH ROW WHEN (OLD.balance_id IS DISTINCT FROM NEW.balance_id) EXECUTE FUNCTION rows_keys_fixed('balance_id');
CREATE TRIGGER outreach_attempts_practice_unchanged BEFORE UPDATE OF practice_id ON outreach_attempts
  FOR EACH ROW WHEN (OLD.practice_id IS DISTINCT FROM NEW.practice_id) EXECUTE FUNCTION rows_keys_fixed('practice_id');
CREATE TRIGGER outreach_attempts_balance_unchanged BEFORE UPDATE OF balance_id ON outreach_attempts
  FOR EACH ROW WHEN (OLD.balance_id IS DISTINCT FROM NEW.balance_id) EXECUTE FUNCTION rows_keys_fixed('balance_id');
DROP FUNCTION hl7_messages_practice_fixed(), source_records_practice_fixed();

-- A practice that still has rows keeps them: one guard, given the tables in the order the guards it replaces ran (by
-- name), the outbox and attempts before source_records.
CREATE FUNCTION practices_keep_rows() RETURNS trigger AS $$
DECLARE
  t text;
  held boolean;
BEGIN
  FOREACH t IN ARRAY TG_ARGV LOOP
    EXECUTE format('SELECT EXISTS (SELECT FROM %I WHERE practice_id = $1)', t) INTO held USING OLD.id;
    IF held THEN
      RAISE EXCEPTION '% on practices violates %_practice_id_fkey: practice % still has % rows', TG_OP, t, OLD.id, t
        USING ERRCODE = 'foreign_key_violation', CONSTRAINT = t || '_practice_id_fkey', TABLE = 'practices';
    END IF;
  END LOOP;
  IF TG_OP = 'DELETE' THEN
    RETURN OLD;
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;

DROP TRIGGER practices_hl7_messages_delete ON practices;
DROP TRIGGER practices_hl7_messages_update ON practices;
DROP TRIGGER practices_ledger_delete ON practices;
DROP TRIGGER practices_ledger_update ON practices;
DROP TRIGGER practices_source_records_delete ON practices;
DROP TRIGGER practices_source_records_update ON practices;
DROP FUNCTION practices_keep_hl7_messages(), practices_keep_ledger(), practices_keep_source_records();

CREATE TRIGGER practices_keep_rows_delete BEFORE DELETE ON practices
  FOR EACH ROW EXECUTE FUNCTION practices_keep_rows('hl7_messages', 'patients', 'guarantors', 'ledger_accounts', 'balances',
    'ledger_sources', 'ledger_source_versions', 'outbox', 'outreach_attempts', 'source_records');
CREATE TRIGGER practices_keep_rows_update BEFORE UPDATE OF id ON practices
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION practices_keep_rows('hl7_messages', 'patients', 'guarantors',
    'ledger_accounts', 'balances', 'ledger_sources', 'ledger_source_versions', 'outbox', 'outreach_attempts', 'source_records');
