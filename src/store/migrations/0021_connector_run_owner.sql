-- A connector run names the process running it (host and pid) and proves it alive with a heartbeat on the
-- database's clock, so a run whose process died (kill -9, a crash, a lost machine) is marked `interrupted`
-- instead of showing as running forever. Runs from before this migration have no owner: they are judged by
-- their start time alone.
ALTER TABLE connector_runs
  ADD COLUMN owner_host text,
  ADD COLUMN owner_pid integer,
  ADD COLUMN heartbeat_at timestamptz;
ALTER TABLE connector_runs DROP CONSTRAINT connector_runs_status_check;
ALTER TABLE connector_runs ADD CONSTRAINT connector_runs_status_check CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted'));
CREATE INDEX connector_runs_running_idx ON connector_runs (practice_id, connector) WHERE status = 'running';
