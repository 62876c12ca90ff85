-- outreach_balances.attempted kept once per INSERT statement instead of once per row, same contents.
--
-- The daily planner writes a day's attempts in one INSERT; the row trigger of 0015 ran one UPDATE of
-- outreach_balances per attempt (two thirds of the insert's time on the embedded database: 225 of 330 ms for 300
-- attempts). Inserts now go through one statement-level trigger (transition table) that appends, per balance, the
-- counted `step channel` pairs it does not hold yet. Updates and deletes (rare: delivery outcomes) keep the row
-- trigger, which recomputes the balance's pairs from its attempts. `attempted` is a set: the planner only tests
-- membership (`= ANY`), so the order of its entries carries nothing.
DROP TRIGGER outreach_attempts_attempted ON outreach_attempts;

CREATE FUNCTION outreach_balances_attempted_inserted() RETURNS trigger AS $$
BEGIN
  UPDATE outreach_balances ob
     SET attempted = ob.attempted || ARRAY(SELECT pair FROM unnest(n.added) AS pair WHERE NOT (pair = ANY (ob.attempted)))
    FROM (SELECT balance_id, array_agg(DISTINCT step_id || ' ' || channel) AS added
            FROM new_attempts
           WHERE status IN ('sent', 'delivered', 'failed', 'suppressed')
           GROUP BY balance_id) n
   WHERE ob.balance_id = n.balance_id AND NOT (n.added <@ ob.attempted);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER outreach_attempts_attempted_inserted AFTER INSERT ON outreach_attempts
  REFERENCING NEW TABLE AS new_attempts FOR EACH STATEMENT EXECUTE FUNCTION outreach_balances_attempted_inserted();
CREATE TRIGGER outreach_attempts_attempted AFTER DELETE OR UPDATE OF status, step_id, channel ON outreach_attempts
  FOR EACH ROW EXECUTE FUNCTION outreach_balances_attempted();
