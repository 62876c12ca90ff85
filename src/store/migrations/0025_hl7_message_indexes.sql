-- Cheaper inserts into hl7_messages (every message an MLLP listener acknowledges is one), same lookups: one
-- index per way the table is read, four written per message instead of seven.
--
-- 1. The unique key leads with (practice_id, control_id): it still makes a re-sent control id from the same
--    sender on the same connector one row (same columns, same name, so ON CONFLICT is unchanged), and it now
--    also finds a practice's messages by control id alone (admin search, findByControlId), which
--    hl7_messages_control_id_idx did.
-- 2. hl7_messages_received_idx (practice_id, connector, received_at) goes: a search by connector walks
--    hl7_messages_practice_received_idx newest first and skips the other connectors' rows (a practice has few
--    connectors); the retention job's delete names no practice, so it never used it.
-- 3. hl7_messages_status_idx (practice_id, status, received_at) goes: `received` messages are found by
--    hl7_messages_pending_idx, `processed` ones are most rows (hl7_messages_practice_received_idx with a filter),
--    and `failed` ones, rare, by a partial index that costs nothing on insert (a new message is `received`).
CREATE UNIQUE INDEX hl7_messages_sender_control_id_new ON hl7_messages (practice_id, control_id, connector, sending_application, sending_facility);
ALTER TABLE hl7_messages
  DROP CONSTRAINT hl7_messages_sender_control_id_key,
  ADD CONSTRAINT hl7_messages_sender_control_id_key UNIQUE USING INDEX hl7_messages_sender_control_id_new;
DROP INDEX hl7_messages_control_id_idx;
DROP INDEX hl7_messages_received_idx;
DROP INDEX hl7_messages_status_idx;
CREATE INDEX hl7_messages_failed_idx ON hl7_messages (practice_id, received_at, id) WHERE status = 'failed';
