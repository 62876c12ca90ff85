-- hl7_messages checked against practices once per statement instead of once per row, same guarantees.
--
-- The MLLP listener inserts a batch of messages (one per waiting connection) in one INSERT per commit; the foreign
-- key to practices ran one lookup per message. Now:
-- 1. One AFTER INSERT trigger per statement (transition table) looks up and key-share locks each distinct practice
--    of the new messages once, as the foreign key's check did for each row. The error keeps the constraint's name
--    and its SQLSTATE (23503).
-- 2. What the foreign key's actions did on the other side: a practice that still has messages cannot be deleted,
--    nor its id changed (the delete or update locks the practice first, so it waits for an insert that holds the
--    key-share lock, and an insert waits for it); a message's practice never changes.
ALTER TABLE hl7_messages DROP CONSTRAINT hl7_messages_practice_id_fkey;

CREATE FUNCTION hl7_messages_check_practice() RETURNS trigger AS $$
DECLARE
  p uuid;
BEGIN
  FOR p IN SELECT DISTINCT practice_id FROM new_messages LOOP
    PERFORM FROM practices WHERE id = p FOR KEY SHARE;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'insert on hl7_messages violates hl7_messages_practice_id_fkey: practice % does not exist', p
        USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'hl7_messages_practice_id_fkey', TABLE = 'hl7_messages';
    END IF;
  END LOOP;
  RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER hl7_messages_practice AFTER INSERT ON hl7_messages
  REFERENCING NEW TABLE AS new_messages FOR EACH STATEMENT EXECUTE FUNCTION hl7_messages_check_practice();

CREATE FUNCTION hl7_messages_practice_fixed() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'a message keeps its practice: moving message % to practice % is not allowed', OLD.id, NEW.practice_id
    USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'hl7_messages_practice_id_fkey', TABLE = 'hl7_messages';
END $$ LANGUAGE plpgsql;

CREATE TRIGGER hl7_messages_practice_unchanged BEFORE UPDATE OF practice_id ON hl7_messages
  FOR EACH ROW WHEN (OLD.practice_id IS DISTINCT FROM NEW.practice_id) EXECUTE FUNCTION hl7_messages_practice_fixed();

CREATE FUNCTION practices_keep_hl7_messages() RETURNS trigger AS $$
BEGIN
  IF EXISTS (SELECT FROM hl7_messages WHERE practice_id = OLD.id) THEN
    RAISE EXCEPTION '% on practices violates hl7_messages_practice_id_fkey: practice % still has hl7 messages', TG_OP, OLD.id
      USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'hl7_messages_practice_id_fkey', TABLE = 'practices';
  END IF;
  IF TG_OP = 'DELETE' THEN
    RETURN OLD;
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER practices_hl7_messages_delete BEFORE DELETE ON practices
  FOR EACH ROW EXECUTE FUNCTION practices_keep_hl7_messages();
CREATE TRIGGER practices_hl7_messages_update BEFORE UPDATE OF id ON practices
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION practices_keep_hl7_messages();
