-- Analytics: the non-identifying parts of a patient's birth date and ZIP code, kept in clear beside the
-- encrypted originals so analytics can group by age and area without decrypting anything: the birth year,
-- and the first three digits of the ZIP code ('000' for the 3-digit areas of 20,000 people or fewer, as HIPAA
-- Safe Harbor requires). Both are written by the ledger whenever the birth date or address is.
-- Indexes for the analytics queries and the audit trail export. Every table stays scoped by practice.
ALTER TABLE patients ADD COLUMN birth_year smallint CHECK (birth_year BETWEEN 1800 AND 2200);
ALTER TABLE patients ADD COLUMN zip3 text CHECK (zip3 ~ '^[0-9]{3}$');

-- Ledger entries by practice and ledger date, covering what the sums read (collection rate, aging, unpaid, demographics).
CREATE INDEX ledger_entries_practice_date_idx ON ledger_entries (practice_id, service_date)
  INCLUDE (kind, payer, currency, effect_minor, balance_id, service_code, reverses_entry_id);
-- A balance's oldest patient charge (days to pay, aging of recoveries): one index probe.
CREATE INDEX ledger_entries_first_charge_idx ON ledger_entries (balance_id, service_date)
  WHERE kind = 'charge' AND payer = 'patient' AND effect_minor > 0;
-- Balances becoming paid (days to pay); the history has no practice of its own, its balance does.
CREATE INDEX balance_status_history_to_status_idx ON balance_status_history (to_status, occurred_at);
-- The latest send to a balance before a link open or payment (channel attribution).
CREATE INDEX outreach_attempts_balance_planned_idx ON outreach_attempts (balance_id, planned_at);
-- Payments by practice and success time (ROI, attribution).
CREATE INDEX payments_succeeded_idx ON payments (practice_id, succeeded_at) WHERE succeeded_at IS NOT NULL;
-- Audit events of one kind in a period (link opens; GET /audit by period).
CREATE INDEX audit_events_practice_time_idx ON audit_events (practice_id, occurred_at);
CREATE INDEX audit_events_action_idx ON audit_events (practice_id, action, occurred_at);

-- The newest event of each practice's audit chain and how many it has, moved by every append in the same
-- transaction. The chain alone cannot show that its newest events were deleted; against the head it can, and an
-- event appended after such a deletion chains to the head's hash, so the gap shows there too.
CREATE TABLE audit_heads (
  practice_id uuid PRIMARY KEY REFERENCES practices (id),
  last_event_id bigint NOT NULL,
  last_hash text NOT NULL,
  events bigint NOT NULL CHECK (events >= 1),
  updated_at timestamptz NOT NULL
);
INSERT INTO audit_heads (practice_id, last_event_id, last_hash, events, updated_at)
SELECT DISTINCT ON (practice_id) practice_id, id, hash, count(*) OVER (PARTITION BY practice_id), occurred_at
FROM audit_events ORDER BY practice_id, id DESC;
