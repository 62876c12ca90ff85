-- A source's entries found through its balance instead of through an index of every entry by source.
--
-- Posting a new version of a source reads the source's active entries (those not reversed) to reverse what changed.
-- ledger_entries_source_idx (practice_id, source_connector, source_resource_type, source_id) served that read, and
-- every ledger line paid for it: one more index entry, on a key in no useful order, for each of the ~14 lines an
-- Invoice posts (measured on the PostgreSQL server, 1,000 Invoices stored then ingested: the backends' CPU a record
-- 7-10% lower without it; see bench/mapping.bench.ts). The read needs no such index: every active entry of a source
-- lies on one balance, the balance its latest lines were posted to. A new version keeps an active entry only when its
-- line is the same, account and guarantor included (planPosting's sameLine), so a kept entry is on the balance of the
-- version's (guarantor, account), which is where its new lines go (balances are unique per practice, guarantor and
-- account, and never re-keyed: 0027); a version that posts no new line only reverses, and leaves its source's other
-- active entries where they were.
--
-- So ledger_sources keeps the key of that balance, its guarantor_id and account_id (the balance itself may not exist
-- yet when a source is first seen: posting creates or locks sources before balances, src/store/ledger-batch.ts). A
-- new source is inserted with the guarantor and account its lines are posted to, so that no row is written twice; a
-- later version that posts new lines moves the key in the update that advances the source's version; one that posts
-- none leaves it. Posting reads a source's active entries through its balance (balances_guarantor_account_key, then
-- ledger_entries_balance_idx: the balance's entries, filtered by source). Only posting writes the key, in the
-- transaction that writes the lines, under the source's row lock. Null for a source that posted no line before this
-- migration.
--
-- The key is filled here from the ledger as it stands (the balance of each source's latest active entry), after
-- checking that no source has active entries on two balances: were there one, reading by balance would miss some of
-- its entries and a new version would post them again, so the migration stops instead, naming the source.
-- LedgerRepository.entriesOfSource (tests, investigations: every entry of a source, reversed ones and any balance)
-- scans the practice's entries now. The analytics rollup reads a practice's entries by a sequential scan, as it did
-- when the table held one practice.
ALTER TABLE ledger_sources ADD COLUMN guarantor_id uuid, ADD COLUMN account_id uuid;

CREATE TEMPORARY TABLE ledger_sources_active_balances ON COMMIT DROP AS
  SELECT e.practice_id, e.source_connector, e.source_resource_type, e.source_id,
         count(DISTINCT e.balance_id) AS balances,
         (array_agg(e.balance_id ORDER BY e.seq DESC))[1] AS balance_id
  FROM ledger_entries e
  WHERE e.reverses_entry_id IS NULL AND NOT EXISTS (SELECT 1 FROM ledger_entries r WHERE r.reverses_entry_id = e.id)
  GROUP BY e.practice_id, e.source_connector, e.source_resource_type, e.source_id;

DO $$
DECLARE
  split record;
BEGIN
  SELECT * INTO split FROM ledger_sources_active_balances WHERE balances > 1 LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'source %/%/% of practice % has active ledger entries on % balances: one balance per source is what posting relies on',
      split.source_connector, split.source_resource_type, split.source_id, split.practice_id, split.balances
      USING ERRCODE = 'data_exception';
  END IF;
END $$;

UPDATE ledger_sources s SET guarantor_id = b.guarantor_id, account_id = b.account_id
FROM ledger_sources_active_balances a JOIN balances b ON b.id = a.balance_id
WHERE a.practice_id = s.practice_id AND a.source_connector = s.connector AND a.source_resource_type = s.resource_type AND a.source_id = s.source_id;

DROP INDEX ledger_entries_source_idx;
