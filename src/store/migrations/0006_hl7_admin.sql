-- Message store admin: look a message up by its control id alone, list a practice's messages newest first
-- across connectors (search pages by (received_at, id)), and find what still waits to be processed.
CREATE INDEX hl7_messages_control_id_idx ON hl7_messages (practice_id, control_id);
CREATE INDEX hl7_messages_practice_received_idx ON hl7_messages (practice_id, received_at, id);
CREATE INDEX hl7_messages_pending_idx ON hl7_messages (received_at, id) WHERE status = 'received';
