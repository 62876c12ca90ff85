-- Cheaper ledger entry inserts (ingest writes ~14 entries per invoice), same guarantees.
--
-- 1. One foreign key from an entry to its balance instead of four: (balance_id, practice_id, guarantor_id,
--    account_id) references the balance's own columns, so an entry can no longer disagree with its balance about
--    practice, guarantor or account (both posting paths write them from the balance's target, reversals copy
--    them from the entry they reverse), and practices, guarantors and accounts stay referenced through
--    balances' own foreign keys. One check per row instead of four; the practice row is no longer share-locked
--    by every entry of every concurrent batch.
-- 2. No unique index on seq: seq comes from its own sequence and is never written explicitly. Queries order a
--    balance's or a source's entries by seq after finding them by ledger_entries_balance_idx (balance_id, seq)
--    or ledger_entries_source_idx; none looks entries up or ranges over seq alone.
-- 3. The unique index on reverses_entry_id keeps only reversals (the entries it is about): NULLs never conflicted,
--    and the lookups that use it (`reverses_entry_id = e.id` in the posting batch's active entries and the
--    agency export's last payment) imply NOT NULL, so they still find reversals by index; other queries only
--    test IS [NOT] NULL on rows found by other indexes. One index entry fewer per ordinary line.
ALTER TABLE balances ADD CONSTRAINT balances_entry_key UNIQUE (id, practice_id, guarantor_id, account_id);
ALTER TABLE ledger_entries
  DROP CONSTRAINT ledger_entries_practice_id_fkey,
  DROP CONSTRAINT ledger_entries_balance_id_fkey,
  DROP CONSTRAINT ledger_entries_guarantor_id_fkey,
  DROP CONSTRAINT ledger_entries_account_id_fkey,
  ADD CONSTRAINT ledger_entries_balance_fkey FOREIGN KEY (balance_id, practice_id, guarantor_id, account_id)
    REFERENCES balances (id, practice_id, guarantor_id, account_id),
  DROP CONSTRAINT ledger_entries_seq_key,
  DROP CONSTRAINT ledger_entries_reverses_entry_id_key;
CREATE UNIQUE INDEX ledger_entries_reverses_key ON ledger_entries (reverses_entry_id) WHERE reverses_entry_id IS NOT NULL;
