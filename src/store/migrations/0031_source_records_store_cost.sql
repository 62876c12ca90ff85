-- Less database work per stored source record (a Bulk import stores one per NDJSON line), same guarantees:
-- 1. The practice is checked once per INSERT statement instead of once per row. The foreign key ran one query and
--    one key-share row lock per record, on the same practice row every time (a sixth of the server's CPU per
--    Bulk line). Now, as for hl7_messages since 0030: an AFTER INSERT trigger per statement (transition table)
--    checks each distinct practice of the new records once, key-share locking it as the foreign key did. The error
--    keeps the constraint's name and its SQLSTATE (23503). A record keeps its practice (refused here), and a
--    practice that has source records cannot be deleted nor its id changed (the delete or update locks the
--    practice first, so it waits for an insert holding the key-share lock, then sees its records).
-- 2. A body longer than about 2 kB (one Bulk Invoice line in five) is compressed with lz4 instead of pglz where the
--    server has lz4 (PostgreSQL's packages do; the embedded PGlite does not, and keeps pglz): pglz was a tenth of the
--    server's CPU per stored line, lz4 compresses several times faster (and decompresses faster when ingest reads
--    the body) for a slightly larger result. Bodies already stored keep pglz (each value records its method).
ALTER TABLE source_records DROP CONSTRAINT source_records_practice_id_fkey;

CREATE FUNCTION source_records_check_practice() RETURNS trigger AS $$
DECLARE
  k record;
BEGIN
  FOR k IN SELECT DISTINCT practice_id FROM new_records LOOP
    PERFORM FROM practices WHERE id = k.practice_id FOR KEY SHARE;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'insert on source_records violates source_records_practice_id_fkey: practice % does not exist', k.practice_id
        USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'source_records_practice_id_fkey', TABLE = 'source_records';
    END IF;
  END LOOP;
  RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER source_records_practice AFTER INSERT ON source_records
  REFERENCING NEW TABLE AS new_records FOR EACH STATEMENT EXECUTE FUNCTION source_records_check_practice();

CREATE FUNCTION source_records_practice_fixed() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'a source record keeps its practice: moving source record % to practice % is not allowed', OLD.id, NEW.practice_id
    USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'source_records_practice_id_fkey', TABLE = 'source_records';
END $$ LANGUAGE plpgsql;

CREATE TRIGGER source_records_practice_unchanged BEFORE UPDATE OF practice_id ON source_records
  FOR EACH ROW WHEN (OLD.practice_id IS DISTINCT FROM NEW.practice_id) EXECUTE FUNCTION source_records_practice_fixed();

CREATE FUNCTION practices_keep_source_records() RETURNS trigger AS $$
BEGIN
  IF EXISTS (SELECT FROM source_records WHERE practice_id = OLD.id) THEN
    RAISE EXCEPTION '% on practices violates source_records_practice_id_fkey: practice % still has source records', TG_OP, OLD.id
      USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'source_records_practice_id_fkey', TABLE = 'practices';
  END IF;
  RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER practices_source_records_delete BEFORE DELETE ON practices
  FOR EACH ROW EXECUTE FUNCTION practices_keep_source_records();
CREATE TRIGGER practices_source_records_update BEFORE UPDATE OF id ON practices
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION practices_keep_source_records();

DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
    ALTER TABLE source_records ALTER COLUMN body SET COMPRESSION lz4;
  END IF;
END
$$;
