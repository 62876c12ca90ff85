-- Everything a connector pulled, stored as received before anything is made of it. One row per version of a
-- source resource: the same (connector, type, id, versionId) arriving again is recognised and not stored twice.
CREATE TABLE source_records (
  id bigserial PRIMARY KEY,
  practice_id uuid NOT NULL REFERENCES practices (id),
  connector text NOT NULL,
  transport text NOT NULL CHECK (transport IN ('fhir-r4', 'hl7v2-mllp', 'csv')),
  resource_type text NOT NULL CHECK (length(resource_type) BETWEEN 1 AND 100),
  source_id text NOT NULL CHECK (length(source_id) BETWEEN 1 AND 200),
  version_id text NOT NULL CHECK (length(version_id) BETWEEN 1 AND 200),
  last_updated timestamptz,
  content_hash text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
  body jsonb NOT NULL,
  received_at timestamptz NOT NULL,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ingested', 'quarantined')),
  ingested_at timestamptz,
  CONSTRAINT source_records_identity_key UNIQUE (practice_id, connector, resource_type, source_id, version_id)
);
-- Ingest takes pending records in arrival order.
CREATE INDEX source_records_pending_idx ON source_records (practice_id, id) WHERE status = 'pending';
-- Listing by connector and type, newest first.
CREATE INDEX source_records_connector_idx ON source_records (practice_id, connector, resource_type, id);

-- What could not be stored or ingested, with an OperationOutcome naming the problem, until someone resolves it.
CREATE TABLE quarantine (
  id bigserial PRIMARY KEY,
  practice_id uuid NOT NULL REFERENCES practices (id),
  connector text NOT NULL,
  resource_type text NOT NULL,
  source_id text,
  -- The source record ingest refused, when the problem was found after storing it.
  source_record_id bigint REFERENCES source_records (id),
  raw text NOT NULL,
  outcome jsonb NOT NULL CHECK (outcome ->> 'resourceType' = 'OperationOutcome'),
  created_at timestamptz NOT NULL,
  resolved_at timestamptz
);
CREATE INDEX quarantine_open_idx ON quarantine (practice_id, connector, id) WHERE resolved_at IS NULL;

-- One row per sync run of a connector: what the status API shows (last success, last error, counts).
CREATE TABLE connector_runs (
  id bigserial PRIMARY KEY,
  practice_id uuid NOT NULL REFERENCES practices (id),
  connector text NOT NULL,
  full_sync boolean NOT NULL DEFAULT false,
  started_at timestamptz NOT NULL,
  finished_at timestamptz,
  status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
  pages integer NOT NULL DEFAULT 0,
  resources integer NOT NULL DEFAULT 0,
  stored integer NOT NULL DEFAULT 0,
  duplicates integer NOT NULL DEFAULT 0,
  quarantined integer NOT NULL DEFAULT 0,
  error text
);
CREATE INDEX connector_runs_connector_idx ON connector_runs (practice_id, connector, id);
