-- Write-back delivery: where each outbox row went (the connector), what the EHR answered when it took it
-- (the FHIR Location or the ACK's MSA-2), and when it was last tried, so staff see its state per payment.
-- Rows stay scoped by practice_id (0008).
ALTER TABLE writeback_outbox
  ADD COLUMN target text,
  ADD COLUMN delivered_ref text,
  ADD COLUMN last_attempt_at timestamptz;

-- Listing a practice's write-backs by status, newest first (API and CLI).
CREATE INDEX writeback_outbox_status_idx ON writeback_outbox (practice_id, status, seq);
