-- The identity of a source record (connector, resource type, source id, version id) is compared byte for byte:
-- COLLATE "C". Storing a record inserts its identity into source_records_identity_key (a Bulk import does so for
-- every NDJSON line, and looks it up first when the batch holds versions already stored); under a linguistic
-- collation (en_US.UTF-8, the official PostgreSQL image's default, or ICU's) every comparison of the key's texts
-- goes through the collation library: with ICU's "en", 50,000 identities took 0.8-0.9 s to insert into such a key
-- against 0.5-0.6 s with "C" (about 6 µs a line more). Under C.UTF-8 (the test server's) it makes no difference.
-- Equality is the same under both (the collations are deterministic), so the key keeps exactly the same records
-- apart; only the order of these texts changes (code point order), which nothing relies on. The table is not
-- rewritten (the type stays text): the key's index is rebuilt under the new collation.
ALTER TABLE source_records
  ALTER COLUMN connector TYPE text COLLATE "C",
  ALTER COLUMN resource_type TYPE text COLLATE "C",
  ALTER COLUMN source_id TYPE text COLLATE "C",
  ALTER COLUMN version_id TYPE text COLLATE "C";
