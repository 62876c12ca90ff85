-- A source record's body is kept as the JSON text received (json: checked, stored as is) instead of converted to
-- jsonb: storing is what a Bulk import does for every line, and jsonb's conversion (about 4 times json's check)
-- and its larger rows (a third larger) were a large part of the database's work; reading a body back no longer
-- converts it to text either. JSON that JavaScript reads but jsonb refuses (a \u0000
-- escape, a lone surrogate) is stored too, instead of failing its whole batch. Nothing queries inside bodies.
ALTER TABLE source_records ALTER COLUMN body TYPE json USING body::json;
-- Listing by connector and type is served by the identity key (practice_id, connector, resource_type, ...), and
-- ingest's claim by source_records_pending_idx: one index fewer to update for every record stored.
DROP INDEX source_records_connector_idx;
