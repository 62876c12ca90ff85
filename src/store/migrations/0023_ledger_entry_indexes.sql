-- Cheaper ledger entry inserts (ingest writes ~14 entries per invoice), measured as PostgreSQL CPU per inserted
-- line (see bench/mapping.bench.ts): each index or foreign key dropped here cost every line an index insertion or
-- a per-row check query.
--
-- 1. One index per access path that a query uses. What reads ledger_entries, and by which index:
--    by id (reversals, pkey); by reversed entry (ledger_entries_reverses_key); by source (posting's active entries,
--    entriesOfSource: ledger_entries_source_idx); by balance (recompute, entries, verifyBalance, write-back
--    sources, agency export: ledger_entries_balance_idx); by practice (the analytics rollup, src/analytics/
--    rollup-sql.ts, reads every entry of a practice: a sequential scan, or ledger_entries_source_idx, whose
--    leading column is practice_id, when the table holds many practices).
--    The two analytics indexes of 0017 served the measures when they read the ledger per period; since 0018 they
--    read the rollup, and no query needs them any more: the covering (practice_id, service_date) index (the widest
--    index on the table) and the partial first-charge index cost every inserted line two more index entries.
DROP INDEX ledger_entries_practice_date_idx;
DROP INDEX ledger_entries_first_charge_idx;
-- 2. No foreign key from an entry's patient_id to patients (a per-row check query, as costly as the balance's
--    composite key of 0022). No query reads ledger_entries.patient_id: who owes an entry is its balance's
--    guarantor and patient (balances keeps its own key to patients), and patients are never deleted. Ingest writes
--    the patient id it has just resolved (upserted) in the same transaction, reversals copy it from the entry they
--    reverse. The balance's composite key (0022) still ties every entry to an existing balance of its practice,
--    guarantor and account.
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_patient_id_fkey;
