-- Pay links: the link rows behind the signed tokens outreach sends (the token carries only a key id, a random
-- link id and an expiry; the guarantor it is for stays here, so links can be revoked and every open audited),
-- the identity-check attempt state of each link, and the checkouts started from the pay page (the Stripe or
-- sandbox request, opaque ids and amounts only, so the sandbox checkout page can find its session again).
-- Every row belongs to a practice.
CREATE TABLE pay_links (
  -- 72 random bits as 18 hex characters: the token's link id.
  link_id text PRIMARY KEY CHECK (link_id ~ '^[0-9a-f]{18}$'),
  practice_id uuid NOT NULL REFERENCES practices (id),
  guarantor_id uuid NOT NULL REFERENCES guarantors (id),
  -- The signing key of the pay-link key ring that made the token's MAC.
  key_id integer NOT NULL CHECK (key_id BETWEEN 0 AND 255),
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz,
  -- Identity check: times (epoch ms) of recent wrong answers, and the lock they caused.
  identity_failures jsonb NOT NULL DEFAULT '[]'::jsonb,
  locked_until timestamptz,
  verified_at timestamptz,
  open_count integer NOT NULL DEFAULT 0 CHECK (open_count >= 0),
  last_opened_at timestamptz,
  created_at timestamptz NOT NULL
);
CREATE INDEX pay_links_guarantor_idx ON pay_links (practice_id, guarantor_id, expires_at DESC);

CREATE TABLE pay_checkouts (
  payment_id uuid PRIMARY KEY,
  practice_id uuid NOT NULL REFERENCES practices (id),
  link_id text NOT NULL REFERENCES pay_links (link_id),
  -- The Checkout Session (Stripe's cs_…, or the sandbox's cs_sandbox_…).
  session_id text NOT NULL UNIQUE,
  sandbox boolean NOT NULL,
  -- { params, idempotencyKey } exactly as sent: amounts, URLs and opaque ids, never PHI.
  request jsonb NOT NULL,
  locale text NOT NULL CHECK (locale IN ('en', 'es')),
  created_at timestamptz NOT NULL,
  CONSTRAINT pay_checkouts_payment_fkey FOREIGN KEY (practice_id, payment_id) REFERENCES payments (practice_id, id)
);
CREATE INDEX pay_checkouts_link_idx ON pay_checkouts (practice_id, link_id, created_at);
