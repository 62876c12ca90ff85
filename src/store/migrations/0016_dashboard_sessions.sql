-- Staff dashboard sessions: a staff member signs in with their API key and gets a random session secret in an
-- httpOnly cookie. Only its SHA-256 is stored. A session ends at its absolute expiry, after it has been idle too
-- long, when it is signed out (revoked), or when its key is revoked. Every row belongs to a practice.
CREATE TABLE dashboard_sessions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  practice_id uuid NOT NULL REFERENCES practices (id),
  api_key_id uuid NOT NULL REFERENCES api_keys (id),
  secret_hash bytea NOT NULL UNIQUE,
  created_at timestamptz NOT NULL,
  last_seen_at timestamptz NOT NULL,
  idle_expires_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz
);
CREATE INDEX dashboard_sessions_key_idx ON dashboard_sessions (practice_id, api_key_id);
