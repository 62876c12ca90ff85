-- Outbox messages and outreach attempts checked against their practice and balance once per statement instead of once
-- per row, same guarantees on the inserting side; an index no query reads goes; and ANALYZE skips the columns no query
-- searches by.
--
-- The daily planner writes a day's messages in one INSERT into outbox and their attempts in one INSERT into
-- outreach_attempts (PlanningWrites); their foreign keys ran a check per row for the practice and one for the balance
-- (a query and a key-share row lock each), with seven index entries per attempt. Now, as 0032 did for the ledger:
-- 1. One AFTER INSERT trigger per statement (transition table) on each table looks up each distinct practice and
--    balance of the new rows once (ledger_check_keys, 0032): practices key-share locked, as the foreign keys did,
--    balances not (they are never deleted and keep their id: 0027). The errors keep the constraints' names and their
--    SQLSTATE (23503). An attempt's outbox message and a message's fallback_of keep their foreign keys: messages can
--    be deleted, and most attempts (suppressions) and every planned message have none, so those checks rarely run.
-- 2. A row's practice and balance never change (refused, as ledger_rows_keys_fixed does for the ledger's tables).
-- 3. On the other side: a practice that still has messages or attempts cannot be deleted, nor its id changed (the
--    delete or update locks the practice first, so it waits for an insert holding the key-share lock, and an insert
--    waits for it); balances are never deleted and keep their id (0027).
-- 4. outreach_attempts_balance_planned_idx (balance_id, planned_at) goes: 0017 made it for channel attribution's
--    latest send to a balance, which now reads the practice's sends at once (src/analytics/rollup-sql.ts), and no
--    query reads attempts by balance and time. Every read by balance (a balance's timeline, the planner's attempts
--    and cadence starts, delivery's channels of a step, the attempted steps of 0034, the agency export's join) finds
--    them by outreach_attempts_step_key (balance_id, step_id, channel); the analytics read them by practice
--    (outreach_attempts_practice_idx).
-- 5. ANALYZE (the embedded database's upkeep, autovacuum on a server) no longer gathers statistics for the columns no
--    query filters, joins, groups or sorts by: an attempt's verdicts (JSON, about 750 bytes; comparing them for the
--    most common values and histogram was nine tenths of analyzing outreach_attempts: 1.7 of 1.9 s of CPU at 21,000
--    attempts on the embedded database) and a message's texts and encrypted recipient (half of analyzing outbox).
ALTER TABLE outreach_attempts ALTER COLUMN verdicts SET STATISTICS 0;
ALTER TABLE outbox ALTER COLUMN recipient_enc SET STATISTICS 0, ALTER COLUMN subject SET STATISTICS 0, ALTER COLUMN body SET STATISTICS 0,
  ALTER COLUMN html SET STATISTICS 0;
ALTER TABLE outbox DROP CONSTRAINT outbox_practice_id_fkey, DROP CONSTRAINT outbox_balance_id_fkey;
ALTER TABLE outreach_attempts DROP CONSTRAINT outreach_attempts_practice_id_fkey, DROP CONSTRAINT outreach_attempts_balance_id_fkey;
DROP INDEX outreach_attempts_balance_planned_idx;

-- Statement triggers: each names its transition table new_rows.
CREATE FUNCTION outreach_rows_check_keys() RETURNS trigger AS $$
BEGIN
  PERFORM ledger_check_keys(TG_TABLE_NAME, 'practice_id', 'practices', ARRAY(SELECT DISTINCT practice_id FROM new_rows));
  PERFORM ledger_check_keys(TG_TABLE_NAME, 'balance_id', 'balances', ARRAY(SELECT DISTINCT balance_id FROM new_rows));
  RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER outbox_keys AFTER INSERT ON outbox
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION outreach_rows_check_keys();
CREATE TRIGGER outreach_attempts_keys AFTER INSERT ON outreach_attempts
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION outreach_rows_check_keys();

CREATE TRIGGER outbox_practice_unchanged BEFORE UPDATE OF practice_id ON outbox
  FOR EACH ROW WHEN (OLD.practice_id IS DISTINCT FROM NEW.practice_id) EXECUTE FUNCTION ledger_rows_keys_fixed('practice_id');
CREATE TRIGGER outbox_balance_unchanged BEFORE UPDATE OF balance_id ON outbox
  FOR EACH ROW WHEN (OLD.balance_id IS DISTINCT FROM NEW.balance_id) EXECUTE FUNCTION ledger_rows_keys_fixed('balance_id');
CREATE TRIGGER outreach_attempts_practice_unchanged BEFORE UPDATE OF practice_id ON outreach_attempts
  FOR EACH ROW WHEN (OLD.practice_id IS DISTINCT FROM NEW.practice_id) EXECUTE FUNCTION ledger_rows_keys_fixed('practice_id');
CREATE TRIGGER outreach_attempts_balance_unchanged BEFORE UPDATE OF balance_id ON outreach_attempts
  FOR EACH ROW WHEN (OLD.balance_id IS DISTINCT FROM NEW.balance_id) EXECUTE FUNCTION ledger_rows_keys_fixed('balance_id');

CREATE FUNCTION practices_keep_outreach() RETURNS trigger AS $$
DECLARE
  t text;
BEGIN
  IF EXISTS (SELECT FROM outbox WHERE practice_id = OLD.id) THEN t := 'outbox';
  ELSIF EXISTS (SELECT FROM outreach_attempts WHERE practice_id = OLD.id) THEN t := 'outreach_attempts';
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

CREATE TRIGGER practices_outreach_delete BEFORE DELETE ON practices
  FOR EACH ROW EXECUTE FUNCTION practices_keep_outreach();
CREATE TRIGGER practices_outreach_update BEFORE UPDATE OF id ON practices
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION practices_keep_outreach();
