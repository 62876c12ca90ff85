-- One statement appends an audit event (src/store/audit.ts): the upsert of its practice's head row takes the
-- head's lock, moves it to the new event (its id from the sequence, its hash computed in SQL from the head's hash)
-- and keeps the hash it replaced in prev_hash, which the same statement returns and stores as the new event's
-- link. No advisory lock and no separate read of the head: an append is one round trip.
ALTER TABLE audit_heads ADD COLUMN prev_hash text;
UPDATE audit_heads h SET prev_hash = e.prev_hash FROM audit_events e WHERE e.id = h.last_event_id;
