-- Work that needs a person: a disputed bill, a request for financial assistance, a contact that cannot be
-- reached, a write-back that went to the dead letters. The dashboard's worklist lists the open ones; resolving
-- one records who and how. Every row belongs to a practice.
CREATE TABLE staff_tasks (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  seq bigserial NOT NULL UNIQUE,
  practice_id uuid NOT NULL REFERENCES practices (id),
  kind text NOT NULL CHECK (kind IN ('dispute', 'assistance', 'undeliverable', 'writeback-failed', 'quarantine', 'other')),
  balance_id uuid REFERENCES balances (id),
  guarantor_id uuid REFERENCES guarantors (id),
  -- What the patient wrote or what went wrong; PHI-light (no clinical detail is ever asked for).
  note text,
  -- The thing the task is about when it is not a balance (write-back id, quarantine id, …).
  subject_ref text,
  status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
  created_at timestamptz NOT NULL,
  resolved_at timestamptz,
  resolved_by text,
  resolution text,
  CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE INDEX staff_tasks_open_idx ON staff_tasks (practice_id, status, seq DESC);
