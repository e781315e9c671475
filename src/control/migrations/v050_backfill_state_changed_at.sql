-- When the backfill's state last changed, kept by a trigger whoever writes the row, so a probe
-- judged before a state change can be recognised as stale.
ALTER TABLE cutover.backfill ADD COLUMN state_changed_at timestamptz;
UPDATE cutover.backfill SET state_changed_at = updated_at;

CREATE FUNCTION cutover.backfill_state_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.state IS DISTINCT FROM OLD.state THEN
        NEW.state_changed_at := clock_timestamp();
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER state_changed_at BEFORE INSERT OR UPDATE ON cutover.backfill
    FOR EACH ROW EXECUTE FUNCTION cutover.backfill_state_changed();
