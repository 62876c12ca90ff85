-- Ledger entries checked against their balance once per statement instead of once per row, same guarantees.
--
-- Ingest writes ~14 entries per invoice in one INSERT per batch; the composite foreign key to the balance ran one
-- lookup and one row lock per entry (a third of the insert's time), and the self-reference of reverses_entry_id a
-- trigger call per entry even when NULL. Now:
-- 1. One AFTER INSERT trigger per statement (transition table) checks each distinct balance of the new entries once:
--    the balance exists with the entry's practice, guarantor and account (what ledger_entries_balance_fkey checked),
--    and each reversal reverses an existing entry of the same balance (stronger than the former foreign key, which
--    did not compare balances). The error keeps the constraint's name and its SQLSTATE (23503).
-- 2. What the foreign key's row lock protected against cannot happen: balances are never deleted and their
--    id, practice, guarantor and account never change (both refused here), and entries are append-only (0005).
-- 3. balances_entry_key (the unique key the foreign key referenced) goes: the check finds a balance by its id.
-- The checks loop over distinct keys with index lookups, so their plan does not depend on statistics (a fresh
-- table's estimates could otherwise pick a sequential scan per key).
ALTER TABLE ledger_entries
  DROP CONSTRAINT ledger_entries_balance_fkey,
  DROP CONSTRAINT ledger_entries_reverses_entry_id_fkey;
ALTER TABLE balances DROP CONSTRAINT balances_entry_key;

CREATE FUNCTION ledger_entries_check_keys() RETURNS trigger AS $$
DECLARE
  k record;
BEGIN
  FOR k IN SELECT DISTINCT balance_id, practice_id, guarantor_id, account_id FROM new_entries LOOP
    PERFORM FROM balances b
      WHERE b.id = k.balance_id AND b.practice_id = k.practice_id AND b.guarantor_id = k.guarantor_id AND b.account_id = k.account_id;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'insert on ledger_entries violates ledger_entries_balance_fkey: balance % has no such practice, guarantor and account', k.balance_id
        USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'ledger_entries_balance_fkey', TABLE = 'ledger_entries';
    END IF;
  END LOOP;
  FOR k IN SELECT reverses_entry_id, balance_id FROM new_entries WHERE reverses_entry_id IS NOT NULL LOOP
    PERFORM FROM ledger_entries e WHERE e.id = k.reverses_entry_id AND e.balance_id = k.balance_id;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'insert on ledger_entries violates ledger_entries_reverses_entry_id_fkey: entry % is not an entry of balance %', k.reverses_entry_id, k.balance_id
        USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'ledger_entries_reverses_entry_id_fkey', TABLE = 'ledger_entries';
    END IF;
  END LOOP;
  RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_entries_keys AFTER INSERT ON ledger_entries
  REFERENCING NEW TABLE AS new_entries FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_check_keys();

CREATE FUNCTION balances_keys_fixed() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'balances are never deleted and keep their practice, guarantor and account: % on balance % is not allowed', TG_OP, OLD.id
    USING ERRCODE = 'insufficient_privilege';
END $$ LANGUAGE plpgsql;

CREATE TRIGGER balances_no_delete BEFORE DELETE ON balances
  FOR EACH ROW EXECUTE FUNCTION balances_keys_fixed();
CREATE TRIGGER balances_keys_unchanged BEFORE UPDATE OF id, practice_id, guarantor_id, account_id ON balances
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id OR OLD.practice_id IS DISTINCT FROM NEW.practice_id
    OR OLD.guarantor_id IS DISTINCT FROM NEW.guarantor_id OR OLD.account_id IS DISTINCT FROM NEW.account_id)
  EXECUTE FUNCTION balances_keys_fixed();
