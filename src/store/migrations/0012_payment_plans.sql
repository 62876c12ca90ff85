-- Self-serve payment plans: the terms a guarantor chose, the saved Stripe customer and card their installments
-- are charged to, and one row per installment (due date, amount, status, attempts, next attempt). The rows are
-- the schedule: a recurring sweep job charges what is due, so nothing is lost when a worker restarts.
-- Every row belongs to a practice.

CREATE TABLE payment_plans (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  practice_id uuid NOT NULL REFERENCES practices (id),
  guarantor_id uuid NOT NULL REFERENCES guarantors (id),
  balance_ids uuid[] NOT NULL CHECK (cardinality(balance_ids) >= 1),
  currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  total_minor bigint NOT NULL CHECK (total_minor > 0),
  months integer NOT NULL CHECK (months >= 1),
  -- The offer as shown to the patient (PlanOffer), kept for the record.
  terms jsonb NOT NULL,
  -- The practice's time zone when the plan was made: due dates are local calendar dates there.
  time_zone text NOT NULL,
  retry_offsets_days integer[] NOT NULL,
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'active', 'completed', 'paid-off', 'defaulted', 'cancelled')),
  stripe_customer_id text,
  stripe_payment_method_id text,
  -- The Checkout payment that paid installment 1, and the payment of an early payoff.
  first_payment_id uuid,
  payoff_payment_id uuid,
  created_at timestamptz NOT NULL,
  activated_at timestamptz,
  ended_at timestamptz,
  updated_at timestamptz NOT NULL,
  CONSTRAINT payment_plans_practice_id_key UNIQUE (practice_id, id)
);
CREATE INDEX payment_plans_guarantor_idx ON payment_plans (practice_id, guarantor_id, created_at);

CREATE TABLE plan_installments (
  practice_id uuid NOT NULL,
  plan_id uuid NOT NULL,
  number integer NOT NULL CHECK (number >= 1),
  due_date date NOT NULL,
  amount_minor bigint NOT NULL CHECK (amount_minor > 0),
  status text NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'retrying', 'paid', 'cancelled')),
  -- Charge attempts made (failures plus the success); the next attempt's number is attempts + 1.
  attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  first_failure_on date,
  next_attempt_on date,
  -- When the sweep charges it next (next_attempt_on at the practice's charge hour); NULL when nothing is due.
  next_attempt_at timestamptz,
  -- A sweep that took the installment holds it until then (a crashed worker's claim expires).
  claimed_until timestamptz,
  -- The Settle payment this installment's charges are made under (one per installment, reused by retries).
  payment_id uuid,
  last_failure_code text,
  paid_at timestamptz,
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (plan_id, number),
  CONSTRAINT plan_installments_plan_fkey FOREIGN KEY (practice_id, plan_id) REFERENCES payment_plans (practice_id, id)
);
CREATE INDEX plan_installments_due_idx ON plan_installments (next_attempt_at) WHERE status IN ('scheduled', 'retrying');

-- Refunds staff started (API or CLI): the Stripe refund they became. The ledger changes only when Stripe's
-- charge.refunded webhook arrives; these rows let daily reconciliation match each refund to Stripe's.
CREATE TABLE payment_refunds (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  practice_id uuid NOT NULL REFERENCES practices (id),
  payment_id uuid NOT NULL,
  amount_minor bigint NOT NULL CHECK (amount_minor > 0),
  currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  reason text CHECK (reason IN ('duplicate', 'requested_by_customer')),
  -- Who asked: apikey:<id>, cli.
  requested_by text NOT NULL,
  stripe_refund_id text,
  status text NOT NULL DEFAULT 'requested',
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  CONSTRAINT payment_refunds_payment_fkey FOREIGN KEY (practice_id, payment_id) REFERENCES payments (practice_id, id)
);
CREATE INDEX payment_refunds_payment_idx ON payment_refunds (practice_id, payment_id, created_at);
CREATE INDEX payment_refunds_created_idx ON payment_refunds (practice_id, created_at);

-- Daily reconciliation reports, one per practice and day (re-running a day replaces it).
CREATE TABLE reconciliation_reports (
  practice_id uuid NOT NULL REFERENCES practices (id),
  day date NOT NULL,
  report jsonb NOT NULL,
  mismatches integer NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (practice_id, day)
);
