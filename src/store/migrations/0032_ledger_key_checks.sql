-- The rows ingest writes to the ledger's party, balance and source tables checked against what they reference once
-- per statement instead of once per row, same guarantees on the inserting side.
--
-- Ingest upserts, per source record, a patient, a guarantor, an account, a balance, its source and source version
-- and a status history entry, each table in one multi-row statement per batch; their foreign keys ran up to 13
-- checks per record (one query and one key-share row lock each, the lock writing WAL; six of them on the same
-- practice row, so concurrent batches queued on it): about a seventh of the database's CPU per ingested record
-- (perf samples of the mapping bench). Now, as 0027 did for ledger_entries and 0030 for hl7_messages:
-- 1. One AFTER INSERT trigger per statement (transition table) on each table looks up each distinct key of the new
--    rows once (ledger_check_keys). Practices are key-share locked, as the foreign keys did, since an unused
--    practice can still be deleted; patients, guarantors, accounts and balances are not: they are never deleted
--    and keep their id (refused below for the first three, by 0027 for balances). The errors keep the constraints'
--    names and their SQLSTATE (23503).
-- 2. A reference that an update changes is checked the same way (a row trigger on those columns, rare: the
--    account's patient and guarantor, a balance's patient, a self guarantor's patient); a row's practice, and a
--    history entry's balance, never change.
-- 3. On the other side: a practice that still has rows in any of these tables cannot be deleted, nor its id
--    changed (the delete or update locks the practice first, so it waits for an insert holding the key-share lock,
--    and an insert waits for it); patients, guarantors and accounts are never deleted and keep their id (nothing
--    deletes them: a patient with a balance could not be deleted before either, and the ledger is kept).
-- 4. balances_guarantor_idx (practice_id, guarantor_id) goes: balances_guarantor_account_key (practice_id,
--    guarantor_id, account_id) begins with the same columns and serves every query that finds a practice's balances
--    by guarantor; one index entry fewer for every balance created or recomputed.
ALTER TABLE patients DROP CONSTRAINT patients_practice_id_fkey;
ALTER TABLE guarantors DROP CONSTRAINT guarantors_practice_id_fkey, DROP CONSTRAINT guarantors_self_patient_id_fkey;
ALTER TABLE ledger_accounts
  DROP CONSTRAINT ledger_accounts_practice_id_fkey,
  DROP CONSTRAINT ledger_accounts_patient_id_fkey,
  DROP CONSTRAINT ledger_accounts_guarantor_id_fkey;
ALTER TABLE balances
  DROP CONSTRAINT balances_practice_id_fkey,
  DROP CONSTRAINT balances_guarantor_id_fkey,
  DROP CONSTRAINT balances_account_id_fkey,
  DROP CONSTRAINT balances_patient_id_fkey;
ALTER TABLE ledger_sources DROP CONSTRAINT ledger_sources_practice_id_fkey;
ALTER TABLE ledger_source_versions DROP CONSTRAINT ledger_source_versions_practice_id_fkey;
ALTER TABLE balance_status_history DROP CONSTRAINT balance_status_history_balance_id_fkey;
DROP INDEX balances_guarantor_idx;

-- Refuses, as the foreign key <tbl>_<col>_fkey did, unless each of these distinct keys has a row in `parent`
-- (practices, key-share locked; patients, guarantors, ledger_accounts or balances): one index scan for all of them
-- (= ANY, a plan that does not depend on statistics), and only when one is missing, a search for which.
CREATE FUNCTION ledger_check_keys(tbl text, col text, parent text, keys uuid[]) RETURNS void AS $$
DECLARE
  found_keys uuid[];
  missing uuid;
BEGIN
  IF cardinality(keys) = 0 THEN
    RETURN;
  END IF;
  CASE parent
    WHEN 'practices' THEN found_keys := ARRAY(SELECT id FROM practices WHERE id = ANY(keys) FOR KEY SHARE);
    WHEN 'patients' THEN found_keys := ARRAY(SELECT id FROM patients WHERE id = ANY(keys));
    WHEN 'guarantors' THEN found_keys := ARRAY(SELECT id FROM guarantors WHERE id = ANY(keys));
    WHEN 'ledger_accounts' THEN found_keys := ARRAY(SELECT id FROM ledger_accounts WHERE id = ANY(keys));
    WHEN 'balances' THEN found_keys := ARRAY(SELECT id FROM balances WHERE id = ANY(keys));
  END CASE;
  IF cardinality(found_keys) < cardinality(keys) THEN
    missing := (SELECT k FROM unnest(keys) AS k WHERE k <> ALL(found_keys) LIMIT 1);
    RAISE EXCEPTION 'insert or update on % violates %_%_fkey: % % does not exist', tbl, tbl, col, parent, missing
      USING ERRCODE = 'foreign_key_violation', CONSTRAINT = format('%s_%s_fkey', tbl, col), TABLE = tbl;
  END IF;
END $$ LANGUAGE plpgsql;

-- Statement triggers: each names its transition table new_rows.
CREATE FUNCTION ledger_rows_check_keys() RETURNS trigger AS $$
BEGIN
  IF TG_TABLE_NAME = 'balance_status_history' THEN
    PERFORM ledger_check_keys(TG_TABLE_NAME, 'balance_id', 'balances', ARRAY(SELECT DISTINCT balance_id FROM new_rows));
    RETURN NULL;
  END IF;
  PERFORM ledger_check_keys(TG_TABLE_NAME, 'practice_id', 'practices', ARRAY(SELECT DISTINCT practice_id FROM new_rows));
  IF TG_TABLE_NAME = 'guarantors' THEN
    PERFORM ledger_check_keys(TG_TABLE_NAME, 'self_patient_id', 'patients', ARRAY(SELECT DISTINCT self_patient_id FROM new_rows WHERE self_patient_id IS NOT NULL));
  ELSIF TG_TABLE_NAME = 'ledger_accounts' THEN
    PERFORM ledger_check_keys(TG_TABLE_NAME, 'patient_id', 'patients', ARRAY(SELECT DISTINCT patient_id FROM new_rows WHERE patient_id IS NOT NULL));
    PERFORM ledger_check_keys(TG_TABLE_NAME, 'guarantor_id', 'guarantors', ARRAY(SELECT DISTINCT guarantor_id FROM new_rows WHERE guarantor_id IS NOT NULL));
  ELSIF TG_TABLE_NAME = 'balances' THEN
    PERFORM ledger_check_keys(TG_TABLE_NAME, 'guarantor_id', 'guarantors', ARRAY(SELECT DISTINCT guarantor_id FROM new_rows));
    PERFORM ledger_check_keys(TG_TABLE_NAME, 'account_id', 'ledger_accounts', ARRAY(SELECT DISTINCT account_id FROM new_rows));
    PERFORM ledger_check_keys(TG_TABLE_NAME, 'patient_id', 'patients', ARRAY(SELECT DISTINCT patient_id FROM new_rows WHERE patient_id IS NOT NULL));
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER patients_keys AFTER INSERT ON patients
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_rows_check_keys();
CREATE TRIGGER guarantors_keys AFTER INSERT ON guarantors
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_rows_check_keys();
CREATE TRIGGER ledger_accounts_keys AFTER INSERT ON ledger_accounts
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_rows_check_keys();
CREATE TRIGGER balances_keys AFTER INSERT ON balances
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_rows_check_keys();
CREATE TRIGGER ledger_sources_keys AFTER INSERT ON ledger_sources
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_rows_check_keys();
CREATE TRIGGER ledger_source_versions_keys AFTER INSERT ON ledger_source_versions
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_rows_check_keys();
CREATE TRIGGER balance_status_history_keys AFTER INSERT ON balance_status_history
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_rows_check_keys();

-- Row triggers on updates that change a reference (WHEN: nothing runs for the others).
CREATE FUNCTION ledger_rows_check_changed_keys() RETURNS trigger AS $$
BEGIN
  IF TG_TABLE_NAME = 'guarantors' THEN
    PERFORM ledger_check_keys(TG_TABLE_NAME, 'self_patient_id', 'patients', ARRAY_REMOVE(ARRAY[NEW.self_patient_id], NULL));
  ELSIF TG_TABLE_NAME = 'ledger_accounts' THEN
    PERFORM ledger_check_keys(TG_TABLE_NAME, 'patient_id', 'patients', ARRAY_REMOVE(ARRAY[NEW.patient_id], NULL));
    PERFORM ledger_check_keys(TG_TABLE_NAME, 'guarantor_id', 'guarantors', ARRAY_REMOVE(ARRAY[NEW.guarantor_id], NULL));
  ELSE
    PERFORM ledger_check_keys(TG_TABLE_NAME, 'patient_id', 'patients', ARRAY_REMOVE(ARRAY[NEW.patient_id], NULL));
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER guarantors_keys_changed BEFORE UPDATE OF self_patient_id ON guarantors
  FOR EACH ROW WHEN (OLD.self_patient_id IS DISTINCT FROM NEW.self_patient_id) EXECUTE FUNCTION ledger_rows_check_changed_keys();
CREATE TRIGGER ledger_accounts_keys_changed BEFORE UPDATE OF patient_id, guarantor_id ON ledger_accounts
  FOR EACH ROW WHEN (OLD.patient_id IS DISTINCT FROM NEW.patient_id OR OLD.guarantor_id IS DISTINCT FROM NEW.guarantor_id)
  EXECUTE FUNCTION ledger_rows_check_changed_keys();
CREATE TRIGGER balances_patient_changed BEFORE UPDATE OF patient_id ON balances
  FOR EACH ROW WHEN (OLD.patient_id IS DISTINCT FROM NEW.patient_id) EXECUTE FUNCTION ledger_rows_check_changed_keys();

CREATE FUNCTION ledger_rows_keys_fixed() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'a row of % keeps its %: changing it is not allowed', TG_TABLE_NAME, TG_ARGV[0]
    USING ERRCODE = 'foreign_key_violation', CONSTRAINT = format('%s_%s_fkey', TG_TABLE_NAME, TG_ARGV[0]), TABLE = TG_TABLE_NAME;
END $$ LANGUAGE plpgsql;

-- balances already keeps its practice (balances_keys_unchanged, 0027).
CREATE TRIGGER patients_practice_unchanged BEFORE UPDATE OF practice_id ON patients
  FOR EACH ROW WHEN (OLD.practice_id IS DISTINCT FROM NEW.practice_id) EXECUTE FUNCTION ledger_rows_keys_fixed('practice_id');
CREATE TRIGGER guarantors_practice_unchanged BEFORE UPDATE OF practice_id ON guarantors
  FOR EACH ROW WHEN (OLD.practice_id IS DISTINCT FROM NEW.practice_id) EXECUTE FUNCTION ledger_rows_keys_fixed('practice_id');
CREATE TRIGGER ledger_accounts_practice_unchanged BEFORE UPDATE OF practice_id ON ledger_accounts
  FOR EACH ROW WHEN (OLD.practice_id IS DISTINCT FROM NEW.practice_id) EXECUTE FUNCTION ledger_rows_keys_fixed('practice_id');
CREATE TRIGGER ledger_sources_practice_unchanged BEFORE UPDATE OF practice_id ON ledger_sources
  FOR EACH ROW WHEN (OLD.practice_id IS DISTINCT FROM NEW.practice_id) EXECUTE FUNCTION ledger_rows_keys_fixed('practice_id');
CREATE TRIGGER ledger_source_versions_practice_unchanged BEFORE UPDATE OF practice_id ON ledger_source_versions
  FOR EACH ROW WHEN (OLD.practice_id IS DISTINCT FROM NEW.practice_id) EXECUTE FUNCTION ledger_rows_keys_fixed('practice_id');
CREATE TRIGGER balance_status_history_balance_unchanged BEFORE UPDATE OF balance_id ON balance_status_history
  FOR EACH ROW WHEN (OLD.balance_id IS DISTINCT FROM NEW.balance_id) EXECUTE FUNCTION ledger_rows_keys_fixed('balance_id');

CREATE FUNCTION practices_keep_ledger() RETURNS trigger AS $$
DECLARE
  t text;
BEGIN
  IF EXISTS (SELECT FROM patients WHERE practice_id = OLD.id) THEN t := 'patients';
  ELSIF EXISTS (SELECT FROM guarantors WHERE practice_id = OLD.id) THEN t := 'guarantors';
  ELSIF EXISTS (SELECT FROM ledger_accounts WHERE practice_id = OLD.id) THEN t := 'ledger_accounts';
  ELSIF EXISTS (SELECT FROM balances WHERE practice_id = OLD.id) THEN t := 'balances';
  ELSIF EXISTS (SELECT FROM ledger_sources WHERE practice_id = OLD.id) THEN t := 'ledger_sources';
  ELSIF EXISTS (SELECT FROM ledger_source_versions WHERE practice_id = OLD.id) THEN t := 'ledger_source_versions';
  END IF;
  IF t IS NOT NULL THEN
    RAISE EXCEPTION '% on practices violates %_practice_id_fkey: practice % still has % rows', TG_OP, t, OLD.id, t
      USING ERRCODE = 'foreign_key_violation', CONSTRAINT = t || '_practice_id_fkey', TABLE = 'practices';
  END IF;
  IF TG_OP = 'DELETE' THEN
    RETURN OLD;
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER practices_ledger_delete BEFORE DELETE ON practices
  FOR EACH ROW EXECUTE FUNCTION practices_keep_ledger();
CREATE TRIGGER practices_ledger_update BEFORE UPDATE OF id ON practices
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION practices_keep_ledger();

CREATE FUNCTION ledger_parties_kept() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION '% are never deleted and keep their id: % on % is not allowed', TG_TABLE_NAME, TG_OP, OLD.id
    USING ERRCODE = 'insufficient_privilege';
END $$ LANGUAGE plpgsql;

CREATE TRIGGER patients_no_delete BEFORE DELETE ON patients FOR EACH ROW EXECUTE FUNCTION ledger_parties_kept();
CREATE TRIGGER patients_id_unchanged BEFORE UPDATE OF id ON patients
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION ledger_parties_kept();
CREATE TRIGGER guarantors_no_delete BEFORE DELETE ON guarantors FOR EACH ROW EXECUTE FUNCTION ledger_parties_kept();
CREATE TRIGGER guarantors_id_unchanged BEFORE UPDATE OF id ON guarantors
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION ledger_parties_kept();
CREATE TRIGGER ledger_accounts_no_delete BEFORE DELETE ON ledger_accounts FOR EACH ROW EXECUTE FUNCTION ledger_parties_kept();
CREATE TRIGGER ledger_accounts_id_unchanged BEFORE UPDATE OF id ON ledger_accounts
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION ledger_parties_kept();
