-- Agency hand-off: each export to a collection agency (who, when, how many, a digest of the file; never the
-- file itself, which holds names and addresses) and each balance an export sent, until it is recalled.
-- A balance becomes agency-ready when the planner records its cadence's agency step (an outreach_attempts row
-- on the `agency` channel); the export moves it to `sent_to_agency`, which stops all outreach. Every row belongs
-- to a practice.

CREATE TABLE agency_exports (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  practice_id uuid NOT NULL REFERENCES practices (id),
  actor text NOT NULL CHECK (length(trim(actor)) > 0),
  balance_count integer NOT NULL CHECK (balance_count >= 0),
  -- SHA-256 of the CSV as handed over, so a file can be matched to its export later.
  sha256 text NOT NULL,
  created_at timestamptz NOT NULL
);
CREATE INDEX agency_exports_practice_idx ON agency_exports (practice_id, created_at DESC);

CREATE TABLE agency_referrals (
  practice_id uuid NOT NULL REFERENCES practices (id),
  export_id uuid NOT NULL REFERENCES agency_exports (id),
  balance_id uuid NOT NULL REFERENCES balances (id),
  -- The amount the agency was told, in minor units of the balance's currency.
  amount_minor bigint NOT NULL CHECK (amount_minor > 0),
  currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  sent_at timestamptz NOT NULL,
  recalled_at timestamptz,
  recalled_by text,
  PRIMARY KEY (export_id, balance_id)
);
-- A balance is with an agency at most once at a time.
CREATE UNIQUE INDEX agency_referrals_active_idx ON agency_referrals (balance_id) WHERE recalled_at IS NULL;
CREATE INDEX agency_referrals_practice_idx ON agency_referrals (practice_id, balance_id);

-- The daily planner looks up each balance's counted attempts by balance (and the agency-ready list by channel).
CREATE INDEX outreach_attempts_agency_idx ON outreach_attempts (practice_id, balance_id) WHERE channel = 'agency';

-- What each balance's cadence has attempted, as `step channel` entries (counted statuses only: sent, delivered,
-- failed, suppressed), kept by a trigger so the daily planner can tell from this one row, without reading the
-- attempts, whether a step could be due: most balances are between steps on any day and are not read further.
ALTER TABLE outreach_balances ADD COLUMN attempted text[] NOT NULL DEFAULT '{}';
UPDATE outreach_balances ob SET attempted = s.attempted
FROM (SELECT balance_id, array_agg(DISTINCT step_id || ' ' || channel) AS attempted FROM outreach_attempts
      WHERE status IN ('sent', 'delivered', 'failed', 'suppressed') GROUP BY balance_id) s
WHERE s.balance_id = ob.balance_id;

CREATE FUNCTION outreach_balances_attempted() RETURNS trigger AS $$
DECLARE
  counted text[] := ARRAY['sent', 'delivered', 'failed', 'suppressed'];
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.status = ANY (counted) THEN
      UPDATE outreach_balances SET attempted = array_append(attempted, NEW.step_id || ' ' || NEW.channel)
      WHERE balance_id = NEW.balance_id AND NOT (NEW.step_id || ' ' || NEW.channel = ANY (attempted));
    END IF;
    RETURN NULL;
  END IF;
  IF TG_OP = 'UPDATE' AND (OLD.status = ANY (counted)) = (NEW.status = ANY (counted)) AND OLD.step_id = NEW.step_id AND OLD.channel = NEW.channel THEN
    RETURN NULL;
  END IF;
  UPDATE outreach_balances SET attempted = coalesce((
    SELECT array_agg(DISTINCT a.step_id || ' ' || a.channel) FROM outreach_attempts a
    WHERE a.balance_id = outreach_balances.balance_id AND a.status = ANY (counted)), '{}')
  WHERE balance_id = (CASE WHEN TG_OP = 'DELETE' THEN OLD.balance_id ELSE NEW.balance_id END);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER outreach_attempts_attempted AFTER INSERT OR DELETE OR UPDATE OF status, step_id, channel ON outreach_attempts
  FOR EACH ROW EXECUTE FUNCTION outreach_balances_attempted();
