-- The tenant: every row of every later table belongs to one practice.
CREATE TABLE practices (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  time_zone text NOT NULL DEFAULT 'America/New_York',
  phone text,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- Staff and integration credentials. The secret is shown once and stored only as its SHA-256.
CREATE TABLE api_keys (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  practice_id uuid NOT NULL REFERENCES practices (id),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  role text NOT NULL CHECK (role IN ('admin', 'staff', 'integration')),
  lookup text NOT NULL UNIQUE,
  secret_hash bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz,
  revoked_at timestamptz
);
CREATE INDEX api_keys_practice_idx ON api_keys (practice_id);

-- Append-only trail of who did what; each event hashes the one before it, per practice.
CREATE TABLE audit_events (
  id bigserial PRIMARY KEY,
  practice_id uuid NOT NULL REFERENCES practices (id),
  occurred_at timestamptz NOT NULL,
  actor text NOT NULL,
  action text NOT NULL,
  entity_type text NOT NULL,
  entity_id text,
  detail jsonb NOT NULL DEFAULT '{}'::jsonb,
  prev_hash text NOT NULL,
  hash text NOT NULL UNIQUE
);
CREATE INDEX audit_events_practice_idx ON audit_events (practice_id, id);

CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only: % is not allowed', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- Where each connector's sync of each resource type got to.
CREATE TABLE connector_checkpoints (
  practice_id uuid NOT NULL REFERENCES practices (id),
  connector text NOT NULL,
  resource_type text NOT NULL,
  position text NOT NULL,
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (practice_id, connector, resource_type)
);
