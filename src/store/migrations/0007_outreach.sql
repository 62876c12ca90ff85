-- Outreach: the cadence state of each balance, every attempt (sent, suppressed…) with the guards' verdicts,
-- contact consents and opt-outs (phones and emails only as PhiCipher blind indexes, never in clear), and the
-- outbox every message goes to while no channel (Twilio, SMTP, print) is configured. Every row belongs to a practice.

-- When outreach began for a balance: day 0 of its cadence (step day offsets count from here).
CREATE TABLE outreach_balances (
  balance_id uuid PRIMARY KEY REFERENCES balances (id),
  practice_id uuid NOT NULL REFERENCES practices (id),
  first_statement_date date NOT NULL,
  created_at timestamptz NOT NULL
);

-- A message ready to go: recipient encrypted (phone, email or mailing address), text as rendered (minimum
-- necessary: practice, first name, amount, dates, link).
CREATE TABLE outbox (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  seq bigserial NOT NULL UNIQUE,
  practice_id uuid NOT NULL REFERENCES practices (id),
  balance_id uuid NOT NULL REFERENCES balances (id),
  channel text NOT NULL CHECK (channel IN ('sms', 'email', 'letter')),
  recipient_enc text NOT NULL,
  subject text,
  body text NOT NULL,
  html text,
  language text NOT NULL CHECK (language IN ('en', 'es')),
  template text NOT NULL,
  created_at timestamptz NOT NULL
);
CREATE INDEX outbox_practice_idx ON outbox (practice_id, seq DESC);

-- One attempt of one policy step on one channel. Deferred decisions are not recorded as attempts.
CREATE TABLE outreach_attempts (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  seq bigserial NOT NULL UNIQUE,
  practice_id uuid NOT NULL REFERENCES practices (id),
  balance_id uuid NOT NULL REFERENCES balances (id),
  step_id text NOT NULL,
  channel text NOT NULL CHECK (channel IN ('sms', 'email', 'letter', 'agency')),
  planned_at timestamptz NOT NULL,
  status text NOT NULL CHECK (status IN ('planned', 'sent', 'delivered', 'failed', 'suppressed', 'deferred')),
  rule text,
  reason text,
  verdicts jsonb NOT NULL DEFAULT '[]',
  final_notice boolean NOT NULL DEFAULT false,
  outbox_id uuid REFERENCES outbox (id),
  message_id text,
  updated_at timestamptz NOT NULL,
  -- The cadence attempts a step on a channel once.
  CONSTRAINT outreach_attempts_step_key UNIQUE (balance_id, step_id, channel)
);
CREATE INDEX outreach_attempts_practice_idx ON outreach_attempts (practice_id, planned_at);

-- A recorded permission to contact (TCPA: texts need one). address_index null: whatever is on file for the channel.
CREATE TABLE contact_consents (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  practice_id uuid NOT NULL REFERENCES practices (id),
  channel text NOT NULL CHECK (channel IN ('sms', 'email', 'letter')),
  address_index text,
  source text NOT NULL CHECK (length(trim(source)) > 0),
  recorded_at timestamptz NOT NULL,
  revoked_at timestamptz
);
CREATE INDEX contact_consents_lookup_idx ON contact_consents (practice_id, channel, address_index);

-- STOP, an unsubscribe, a carrier 21610, a staff action. address_index null: the whole channel.
CREATE TABLE opt_outs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  seq bigserial NOT NULL UNIQUE,
  practice_id uuid NOT NULL REFERENCES practices (id),
  channel text NOT NULL CHECK (channel IN ('sms', 'email', 'letter')),
  address_index text,
  -- The address itself, encrypted, so staff can see a masked form; lookups use the blind index only.
  address_enc text,
  source text NOT NULL CHECK (length(trim(source)) > 0),
  at timestamptz NOT NULL,
  opted_back_in_at timestamptz
);
CREATE INDEX opt_outs_lookup_idx ON opt_outs (practice_id, channel, address_index);
