-- The balance ledger: patients and guarantors (contact encrypted, phone/email findable by blind index), accounts,
-- append-only entries keyed by the source record version that posted them, balances derived from the entries,
-- and every status change.

-- Per-practice ledger settings: below the small-balance threshold no outreach happens.
CREATE TABLE ledger_settings (
  practice_id uuid PRIMARY KEY REFERENCES practices (id),
  small_balance_threshold_minor bigint NOT NULL DEFAULT 0 CHECK (small_balance_threshold_minor >= 0),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- A patient, named by an identifier (system + value) unique in the practice, so that records from different
-- connectors naming the same identifier resolve to one patient. Contact columns hold PhiCipher ciphertexts.
CREATE TABLE patients (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  practice_id uuid NOT NULL REFERENCES practices (id),
  identifier_system text NOT NULL,
  identifier_value text NOT NULL CHECK (length(identifier_value) BETWEEN 1 AND 200),
  name_enc text,
  phones_enc text,
  email_enc text,
  address_enc text,
  language_enc text,
  birth_date_enc text,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  CONSTRAINT patients_identifier_key UNIQUE (practice_id, identifier_system, identifier_value)
);

-- Who is billed. With no guarantor given, the patient is their own (self_patient_id set, contact read from the patient).
CREATE TABLE guarantors (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  practice_id uuid NOT NULL REFERENCES practices (id),
  self_patient_id uuid REFERENCES patients (id),
  identifier_system text,
  identifier_value text,
  name_enc text,
  phones_enc text,
  email_enc text,
  address_enc text,
  language_enc text,
  birth_date_enc text,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  CHECK ((self_patient_id IS NULL) = (identifier_value IS NOT NULL))
);
CREATE UNIQUE INDEX guarantors_identifier_key ON guarantors (practice_id, identifier_system, identifier_value) WHERE self_patient_id IS NULL;
CREATE UNIQUE INDEX guarantors_self_key ON guarantors (practice_id, self_patient_id) WHERE self_patient_id IS NOT NULL;

-- HMACs of normalised phones and emails (PhiCipher.blindIndex), to find a person without storing either in clear.
CREATE TABLE contact_blind_indexes (
  practice_id uuid NOT NULL REFERENCES practices (id),
  owner_type text NOT NULL CHECK (owner_type IN ('patient', 'guarantor')),
  owner_id uuid NOT NULL,
  kind text NOT NULL CHECK (kind IN ('phone', 'email')),
  blind_index text NOT NULL,
  PRIMARY KEY (owner_type, owner_id, kind, blind_index)
);
CREATE INDEX contact_blind_indexes_lookup_idx ON contact_blind_indexes (practice_id, kind, blind_index);

-- A billing account at the source (FHIR Account, HL7 PID-18, a statement's account number).
CREATE TABLE ledger_accounts (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  practice_id uuid NOT NULL REFERENCES practices (id),
  identifier_system text NOT NULL,
  identifier_value text NOT NULL CHECK (length(identifier_value) BETWEEN 1 AND 200),
  patient_id uuid REFERENCES patients (id),
  -- The guarantor the source names for the account (a FHIR Account.guarantor), used by records that name none.
  guarantor_id uuid REFERENCES guarantors (id),
  name text,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  CONSTRAINT ledger_accounts_identifier_key UNIQUE (practice_id, identifier_system, identifier_value)
);

-- One balance per practice, guarantor and account, in one currency; amounts are sums of its entries' effects.
CREATE TABLE balances (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  practice_id uuid NOT NULL REFERENCES practices (id),
  guarantor_id uuid NOT NULL REFERENCES guarantors (id),
  account_id uuid NOT NULL REFERENCES ledger_accounts (id),
  patient_id uuid REFERENCES patients (id),
  currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  patient_amount_minor bigint NOT NULL DEFAULT 0,
  insurance_amount_minor bigint NOT NULL DEFAULT 0,
  status text NOT NULL DEFAULT 'open'
    CHECK (status IN ('open', 'in_outreach', 'in_plan', 'paid', 'disputed', 'on_hold', 'sent_to_agency', 'written_off')),
  hold_reason text CHECK (hold_reason IN ('insurance_pending', 'dispute', 'nsa_dispute', 'bankruptcy', 'deceased', 'staff')),
  oldest_open_date date,
  status_changed_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  CONSTRAINT balances_guarantor_account_key UNIQUE (practice_id, guarantor_id, account_id),
  CHECK ((status = 'on_hold') = (hold_reason IS NOT NULL))
);
CREATE INDEX balances_status_idx ON balances (practice_id, status, oldest_open_date);
CREATE INDEX balances_guarantor_idx ON balances (practice_id, guarantor_id);

-- Append-only. amount_minor is the amount as the source reports it; effect_minor its signed effect on the
-- balance (+ charge, − payment/adjustment). A reversal repeats the kind with the amounts negated.
CREATE TABLE ledger_entries (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  seq bigserial NOT NULL UNIQUE,
  practice_id uuid NOT NULL REFERENCES practices (id),
  balance_id uuid NOT NULL REFERENCES balances (id),
  account_id uuid NOT NULL REFERENCES ledger_accounts (id),
  guarantor_id uuid NOT NULL REFERENCES guarantors (id),
  patient_id uuid REFERENCES patients (id),
  kind text NOT NULL CHECK (kind IN ('charge', 'payment', 'adjustment')),
  amount_minor bigint NOT NULL,
  effect_minor bigint NOT NULL,
  currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  service_date date NOT NULL,
  payer text NOT NULL CHECK (payer IN ('patient', 'insurance')),
  service_code text,
  description text,
  line_key text NOT NULL,
  source_connector text NOT NULL,
  source_resource_type text NOT NULL,
  source_id text NOT NULL,
  source_version text NOT NULL,
  reverses_entry_id uuid UNIQUE REFERENCES ledger_entries (id),
  posted_at timestamptz NOT NULL
);
CREATE INDEX ledger_entries_source_idx ON ledger_entries (practice_id, source_connector, source_resource_type, source_id);
CREATE INDEX ledger_entries_balance_idx ON ledger_entries (balance_id, seq);

CREATE FUNCTION ledger_entries_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'ledger_entries is append-only: % is not allowed', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE OR DELETE ON ledger_entries
  FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only();

-- The version of each source record whose contribution is in force, and every version seen (the same version
-- twice, or an older one arriving late, changes nothing).
CREATE TABLE ledger_sources (
  practice_id uuid NOT NULL REFERENCES practices (id),
  connector text NOT NULL,
  resource_type text NOT NULL,
  source_id text NOT NULL,
  version_id text NOT NULL,
  last_updated timestamptz,
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (practice_id, connector, resource_type, source_id)
);
CREATE TABLE ledger_source_versions (
  practice_id uuid NOT NULL REFERENCES practices (id),
  connector text NOT NULL,
  resource_type text NOT NULL,
  source_id text NOT NULL,
  version_id text NOT NULL,
  last_updated timestamptz,
  outcome text NOT NULL CHECK (outcome IN ('posted', 'unchanged', 'stale')),
  received_at timestamptz NOT NULL,
  PRIMARY KEY (practice_id, connector, resource_type, source_id, version_id)
);

-- Every status change of a balance, with who or what caused it.
CREATE TABLE balance_status_history (
  id bigserial PRIMARY KEY,
  balance_id uuid NOT NULL REFERENCES balances (id),
  from_status text,
  to_status text NOT NULL,
  hold_reason text,
  actor text NOT NULL,
  note text,
  occurred_at timestamptz NOT NULL
);
CREATE INDEX balance_status_history_balance_idx ON balance_status_history (balance_id, id);

-- Source records that could not be mapped or posted: the latest failing version of each source, with the
-- OperationOutcome saying why. No body is copied here (the raw record stays where it was stored); a later
-- version that posts, or a reprocess after the mapping is fixed, resolves the entry.
CREATE TABLE ingest_quarantine (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  practice_id uuid NOT NULL REFERENCES practices (id),
  connector text NOT NULL,
  resource_type text NOT NULL,
  source_id text NOT NULL,
  version_id text NOT NULL,
  mapping text NOT NULL,
  outcome jsonb NOT NULL,
  attempts integer NOT NULL DEFAULT 1,
  first_failed_at timestamptz NOT NULL,
  last_failed_at timestamptz NOT NULL,
  resolved_at timestamptz,
  CONSTRAINT ingest_quarantine_source_key UNIQUE (practice_id, connector, resource_type, source_id)
);
CREATE INDEX ingest_quarantine_open_idx ON ingest_quarantine (practice_id, last_failed_at) WHERE resolved_at IS NULL;
