-- Analytics rollup: what the analytics measures read instead of the ledger, outreach and payment tables, so each
-- answers in well under a second at a million balances. Every table is recomputed per practice, whole, by one
-- refresh (src/analytics/rollup.ts) in one transaction; `analytics_refreshes.as_of` says when, and every answer
-- carries it. The rows are sums of what the measures' definitions sum, keyed by the dates the periods select on,
-- so any period gives exactly the numbers the definitions give over the tables as they were at `as_of`.

-- When each practice's rollup was computed (database time of the refresh's snapshot), and in which time zone the
-- local dates below were taken.
CREATE TABLE analytics_refreshes (
  practice_id uuid PRIMARY KEY REFERENCES practices (id),
  as_of timestamptz NOT NULL,
  time_zone text NOT NULL,
  duration_ms integer NOT NULL
);

-- Ledger entries per currency, ledger date, payer, kind and service code ('(none)' without one): entries that are
-- not reversals, reversals, and their summed effect (collection rate, billed charge lines).
CREATE TABLE analytics_entry_days (
  practice_id uuid NOT NULL,
  currency text NOT NULL,
  day date NOT NULL,
  payer text NOT NULL,
  kind text NOT NULL,
  code text NOT NULL,
  entries bigint NOT NULL,
  reversals bigint NOT NULL,
  effect_minor bigint NOT NULL
);
CREATE INDEX analytics_entry_days_idx ON analytics_entry_days (practice_id, currency, day);

-- Balances that first became paid (their earliest 'paid' history row), per local date (practice time zone) of
-- that and days from the service date of their oldest patient charge (days to pay: exact percentiles from counts).
CREATE TABLE analytics_paid_days (
  practice_id uuid NOT NULL,
  currency text NOT NULL,
  day date NOT NULL,
  days integer NOT NULL,
  balances bigint NOT NULL
);
CREATE INDEX analytics_paid_days_idx ON analytics_paid_days (practice_id, currency, day);

-- Patient charges and payments per ledger date and patient (birth year, ZIP3), with the previous date each balance
-- and each patient had such activity, so a period counts a balance (and a patient) once, on its first date in the
-- period, without a DISTINCT: `n` rows, the balances' outstanding, billed and collected (demographics). A row that
-- is not the patient's first of its date carries that date as `person_prev_day`.
CREATE TABLE analytics_activity_days (
  practice_id uuid NOT NULL,
  currency text NOT NULL,
  day date NOT NULL,
  birth_year smallint,
  zip3 text,
  balance_prev_day date,
  person_prev_day date,
  n bigint NOT NULL,
  outstanding_minor bigint NOT NULL,
  billed_minor bigint NOT NULL,
  collected_minor bigint NOT NULL
);
CREATE INDEX analytics_activity_days_idx ON analytics_activity_days (practice_id, currency, day);

-- Balances owing now, per date of their oldest open charge (aging: outstanding).
CREATE TABLE analytics_open_days (
  practice_id uuid NOT NULL,
  currency text NOT NULL,
  oldest_open_date date NOT NULL,
  balances bigint NOT NULL,
  outstanding_minor bigint NOT NULL
);
CREATE INDEX analytics_open_days_idx ON analytics_open_days (practice_id, currency);

-- Patient payments per ledger date and aging bucket of their balance on that date (aging: recovered).
CREATE TABLE analytics_recovered_days (
  practice_id uuid NOT NULL,
  currency text NOT NULL,
  day date NOT NULL,
  bucket text NOT NULL,
  payments bigint NOT NULL,
  amount_minor bigint NOT NULL
);
CREATE INDEX analytics_recovered_days_idx ON analytics_recovered_days (practice_id, currency, day);

-- Charge lines (net of reversals) not fully paid, per payer, service code and ledger date: how many and how much
-- of them is unpaid (unpaid by service code and by payer).
CREATE TABLE analytics_unpaid_days (
  practice_id uuid NOT NULL,
  currency text NOT NULL,
  day date NOT NULL,
  payer text NOT NULL,
  code text NOT NULL,
  lines bigint NOT NULL,
  unpaid_minor bigint NOT NULL
);
CREATE INDEX analytics_unpaid_days_idx ON analytics_unpaid_days (practice_id, currency, day);

-- Sends per local date (practice time zone), channel and step, and how many were credited with a link open
-- (channels, ROI reminders).
CREATE TABLE analytics_send_days (
  practice_id uuid NOT NULL,
  day date NOT NULL,
  channel text NOT NULL,
  step_id text NOT NULL,
  sends bigint NOT NULL,
  opened bigint NOT NULL
);
CREATE INDEX analytics_send_days_idx ON analytics_send_days (practice_id, day);

-- Of those sends, per payment currency: sends credited with a Settle payment, those payments and their net amount.
CREATE TABLE analytics_send_payment_days (
  practice_id uuid NOT NULL,
  currency text NOT NULL,
  day date NOT NULL,
  channel text NOT NULL,
  step_id text NOT NULL,
  paid bigint NOT NULL,
  payments bigint NOT NULL,
  paid_minor bigint NOT NULL
);
CREATE INDEX analytics_send_payment_days_idx ON analytics_send_payment_days (practice_id, currency, day);

-- Settle payments that succeeded, per local date of success: how many and their net amount (ROI).
CREATE TABLE analytics_payment_days (
  practice_id uuid NOT NULL,
  currency text NOT NULL,
  day date NOT NULL,
  payments bigint NOT NULL,
  collected_minor bigint NOT NULL
);
CREATE INDEX analytics_payment_days_idx ON analytics_payment_days (practice_id, currency, day);
