-- Outreach delivery: each outbox row carries its delivery state, so the outbox shows what was held, sent,
-- delivered or refused; contacts a carrier or mail server refused are remembered (blind index only); inbound
-- texts are handled once per Twilio message id. Every row belongs to a practice.

-- queued: waiting for the delivery job (next_attempt_at); held-no-channel: no channel configured for its kind
-- (nothing leaves the machine); sending: claimed by a worker; sent: the provider accepted it; delivered: the
-- provider confirmed delivery; failed: refused for good or out of retries; undeliverable: the address cannot
-- receive this channel (the balance's next channel was tried).
ALTER TABLE outbox ADD COLUMN state text NOT NULL DEFAULT 'queued'
  CHECK (state IN ('queued', 'held-no-channel', 'sending', 'sent', 'delivered', 'failed', 'undeliverable'));
ALTER TABLE outbox ADD COLUMN provider_message_id text;
ALTER TABLE outbox ADD COLUMN delivery_attempts integer NOT NULL DEFAULT 0 CHECK (delivery_attempts >= 0);
ALTER TABLE outbox ADD COLUMN next_attempt_at timestamptz;
ALTER TABLE outbox ADD COLUMN last_error_code text;
ALTER TABLE outbox ADD COLUMN last_error text;
ALTER TABLE outbox ADD COLUMN state_changed_at timestamptz;
-- The outbox row a fallback message replaces (SMS refused → email), for the timeline.
ALTER TABLE outbox ADD COLUMN fallback_of uuid REFERENCES outbox (id);
UPDATE outbox SET next_attempt_at = created_at, state_changed_at = created_at;
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at) WHERE state = 'queued';
CREATE INDEX outbox_held_idx ON outbox (channel) WHERE state = 'held-no-channel';
CREATE INDEX outbox_sending_idx ON outbox (state_changed_at) WHERE state = 'sending';
CREATE UNIQUE INDEX outbox_provider_message_idx ON outbox (provider_message_id) WHERE provider_message_id IS NOT NULL;
-- Delivery and status callbacks update the attempt of an outbox row.
CREATE INDEX outreach_attempts_outbox_idx ON outreach_attempts (outbox_id) WHERE outbox_id IS NOT NULL;

-- A phone or email a provider said cannot receive messages (Twilio 30003/30005/30006, a hard bounce).
CREATE TABLE undeliverable_contacts (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  practice_id uuid NOT NULL REFERENCES practices (id),
  channel text NOT NULL CHECK (channel IN ('sms', 'email', 'letter')),
  address_index text NOT NULL,
  code text NOT NULL,
  at timestamptz NOT NULL,
  CONSTRAINT undeliverable_contacts_key UNIQUE (practice_id, channel, address_index)
);

-- Inbound texts already handled (Twilio retries a webhook it did not see answered).
CREATE TABLE sms_inbound (
  practice_id uuid NOT NULL REFERENCES practices (id),
  message_sid text NOT NULL CHECK (length(message_sid) BETWEEN 1 AND 64),
  intent text NOT NULL,
  received_at timestamptz NOT NULL,
  PRIMARY KEY (practice_id, message_sid)
);
CREATE INDEX sms_inbound_sid_idx ON sms_inbound (message_sid);
