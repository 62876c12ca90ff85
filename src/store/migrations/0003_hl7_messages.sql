-- Inbound HL7v2 messages, committed before their AA is sent. The same MSH-10 from the same sender on the
-- same connector is one row: a re-sent message is acknowledged again but stored (and processed) once.
CREATE TABLE hl7_messages (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  practice_id uuid NOT NULL REFERENCES practices (id),
  connector text NOT NULL,
  control_id text NOT NULL CHECK (length(control_id) BETWEEN 1 AND 199),
  message_type text NOT NULL,
  sending_application text NOT NULL DEFAULT '',
  sending_facility text NOT NULL DEFAULT '',
  received_at timestamptz NOT NULL,
  status text NOT NULL DEFAULT 'received' CHECK (status IN ('received', 'processed', 'failed')),
  error text,
  status_changed_at timestamptz,
  raw text NOT NULL,
  raw_bytes_charset text NOT NULL CHECK (raw_bytes_charset IN ('UTF-8', 'ISO-8859-1')),
  CONSTRAINT hl7_messages_sender_control_id_key UNIQUE (practice_id, connector, sending_application, sending_facility, control_id)
);
-- Search by connector and date (and the retention job's scan), and by status.
CREATE INDEX hl7_messages_received_idx ON hl7_messages (practice_id, connector, received_at);
CREATE INDEX hl7_messages_status_idx ON hl7_messages (practice_id, status, received_at);
