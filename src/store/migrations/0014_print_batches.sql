-- Printed letters: the letter channel queues each letter's outbox row here, and the daily print batch renders a
-- practice's queued letters into one PDF (one page per letter), kept here for download and written to
-- SETTLE_DATA_DIR/print/. Every row belongs to a practice.

-- One print batch per practice and day. rendering: letters claimed, PDF being made; ready: the PDF is stored.
CREATE TABLE print_batches (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  practice_id uuid NOT NULL REFERENCES practices (id),
  batch_date date NOT NULL,
  state text NOT NULL DEFAULT 'rendering' CHECK (state IN ('rendering', 'ready')),
  letters integer NOT NULL DEFAULT 0 CHECK (letters >= 0),
  skipped integer NOT NULL DEFAULT 0 CHECK (skipped >= 0),
  file_name text NOT NULL,
  pdf bytea,
  created_at timestamptz NOT NULL,
  ready_at timestamptz,
  CONSTRAINT print_batches_day_key UNIQUE (practice_id, batch_date)
);

-- A letter waiting for (or printed in) a batch. pay_url: the link printed and encoded in the QR code.
-- outcome: printed, or skipped with the reason (the balance no longer owes, is on hold…).
CREATE TABLE print_queue (
  outbox_id uuid PRIMARY KEY REFERENCES outbox (id),
  practice_id uuid NOT NULL REFERENCES practices (id),
  balance_id uuid NOT NULL REFERENCES balances (id),
  pay_url text NOT NULL,
  queued_at timestamptz NOT NULL,
  batch_id uuid REFERENCES print_batches (id),
  page integer,
  outcome text CHECK (outcome IN ('printed', 'skipped')),
  reason text
);
CREATE INDEX print_queue_waiting_idx ON print_queue (practice_id, queued_at) WHERE batch_id IS NULL;
CREATE INDEX print_queue_batch_idx ON print_queue (batch_id);
