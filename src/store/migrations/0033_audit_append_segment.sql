-- Appends a segment of audit events (one or more, in order) to a practice's chain in one call, so a statement
-- that writes what they record can append them too (src/store/audit.ts, `auditAppendSql`): the Stripe webhook
-- batch appends the audit events of all its payments in the statement that finishes them.
--
-- The upsert of the practice's head row takes the head's lock first (a first event inserts the head, chaining to
-- the newest stored event if a chain was begun before heads existed); under it each event takes its id from the
-- sequence (ids follow the chain) and its hash from the one before it, as SHA-256 of `<prev hash>\n<body>` in hex,
-- where the body is the canonical event text Node made (AuditLog.check recomputes the same). The head then moves
-- to the last event, keeping the hash it replaced in prev_hash.
CREATE FUNCTION audit_append(p_practice uuid, p_at timestamptz, p_events jsonb) RETURNS SETOF audit_events
LANGUAGE plpgsql AS $$
DECLARE
  head_hash text;
  head_events bigint;
  fresh boolean;
  prev text;
  event jsonb;
  appended audit_events;
BEGIN
  IF jsonb_array_length(p_events) = 0 THEN
    RETURN;
  END IF;
  INSERT INTO audit_heads AS h (practice_id, last_event_id, last_hash, prev_hash, events, updated_at)
  SELECT p_practice, 0, coalesce((SELECT hash FROM audit_events WHERE practice_id = p_practice ORDER BY id DESC LIMIT 1), repeat('0', 64)), NULL, 1, p_at
  ON CONFLICT (practice_id) DO UPDATE SET updated_at = h.updated_at
  RETURNING h.last_hash, h.events, (h.xmax = 0) INTO head_hash, head_events, fresh;
  FOR event IN SELECT e.value FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e (value, n) ORDER BY e.n LOOP
    prev := head_hash;
    head_hash := encode(sha256(convert_to(prev || chr(10) || (event ->> 'body'), 'UTF8')), 'hex');
    INSERT INTO audit_events (id, practice_id, occurred_at, actor, action, entity_type, entity_id, detail, prev_hash, hash)
    VALUES (nextval('audit_events_id_seq'), p_practice, p_at, event ->> 'actor', event ->> 'action', event ->> 'entityType', event ->> 'entityId',
            event -> 'detail', prev, head_hash)
    RETURNING * INTO appended;
    RETURN NEXT appended;
  END LOOP;
  UPDATE audit_heads SET last_event_id = appended.id, last_hash = head_hash, prev_hash = prev,
    events = CASE WHEN fresh THEN 0 ELSE head_events END + jsonb_array_length(p_events), updated_at = p_at
  WHERE practice_id = p_practice;
  RETURN;
END;
$$;
