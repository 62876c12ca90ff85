-- The time zone the outreach rules judged a message's recipient in (from their address, else the policy's, else
-- the practice's), so delivery re-checks quiet hours in the recipient's local time, as planning did. Rows written
-- before this column, or by paths that do not know the recipient, have none: delivery uses the practice's zone.
ALTER TABLE outbox ADD COLUMN recipient_time_zone text;
