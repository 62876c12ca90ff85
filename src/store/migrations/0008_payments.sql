-- Payments: Stripe events handled once, payments (opaque uuid ids, the only Settle id Stripe sees besides the
-- guarantor's), and the write-back outbox rows committed in the same transaction as their ledger entries.
-- Every row belongs to a practice.

-- Each Stripe event id is handled once per practice and Stripe account (account '' = the platform's own).
CREATE TABLE stripe_events (
  practice_id uuid NOT NULL REFERENCES practices (id),
  account text NOT NULL DEFAULT '',
  event_id text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 255),
  type text NOT NULL,
  -- What the handler did (succeeded, refunded, ignored, unknown-payment, …).
  outcome text,
  received_at timestamptz NOT NULL,
  processed_at timestamptz,
  PRIMARY KEY (practice_id, account, event_id)
);

CREATE TABLE payments (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  practice_id uuid NOT NULL REFERENCES practices (id),
  guarantor_id uuid NOT NULL REFERENCES guarantors (id),
  -- The balances the payment is for (allocation candidates), and once it succeeded how it was split:
  -- [{"balanceId": uuid, "amountMinor": int}], oldest balance first.
  balance_ids uuid[] NOT NULL CHECK (cardinality(balance_ids) >= 1),
  allocations jsonb NOT NULL DEFAULT '[]'::jsonb,
  amount_minor bigint NOT NULL CHECK (amount_minor > 0),
  currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  -- Cumulative refunded and dispute-reversed amounts, from Stripe's totals.
  refunded_minor bigint NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
  reversed_minor bigint NOT NULL DEFAULT 0 CHECK (reversed_minor >= 0),
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'succeeded', 'failed', 'refunded', 'partially_refunded', 'disputed')),
  failure_code text,
  stripe_checkout_session_id text,
  stripe_payment_intent_id text,
  stripe_charge_id text,
  stripe_customer_id text,
  stripe_dispute_id text,
  succeeded_at timestamptz,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  CONSTRAINT payments_practice_id_key UNIQUE (practice_id, id)
);
CREATE INDEX payments_guarantor_idx ON payments (practice_id, guarantor_id, created_at);
CREATE INDEX payments_intent_idx ON payments (practice_id, stripe_payment_intent_id) WHERE stripe_payment_intent_id IS NOT NULL;
CREATE INDEX payments_charge_idx ON payments (practice_id, stripe_charge_id) WHERE stripe_charge_id IS NOT NULL;

-- One row per payment, refund and reversal to deliver to the EHR; writeback_id is the stable identifier sent as
-- the FHIR conditional-create identifier or HL7 MSH-10, so a redelivery never duplicates.
CREATE TABLE writeback_outbox (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  seq bigserial NOT NULL UNIQUE,
  practice_id uuid NOT NULL REFERENCES practices (id),
  payment_id uuid NOT NULL,
  kind text NOT NULL CHECK (kind IN ('payment', 'refund', 'reversal')),
  writeback_id text NOT NULL,
  -- The amount this write-back reports (positive; the kind says its direction) and its per-balance split.
  amount_minor bigint NOT NULL CHECK (amount_minor > 0),
  currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  allocations jsonb NOT NULL DEFAULT '[]'::jsonb,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed', 'dead')),
  attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  next_attempt_at timestamptz NOT NULL,
  last_error text,
  delivered_at timestamptz,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  CONSTRAINT writeback_outbox_payment_fkey FOREIGN KEY (practice_id, payment_id) REFERENCES payments (practice_id, id),
  CONSTRAINT writeback_outbox_writeback_key UNIQUE (practice_id, writeback_id)
);
CREATE INDEX writeback_outbox_due_idx ON writeback_outbox (next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX writeback_outbox_payment_idx ON writeback_outbox (practice_id, payment_id, seq);
