-- Notifications. `outbox` holds one row per event instance, enqueued in the transaction of the
-- change that caused it (triggers below) or by a watcher for time-based events; `dedup_key` makes
-- each instance unique. `outbox_deliveries` holds one row per event and target, with its retry
-- state. `notify_watch` remembers since when a condition holds (a gate blocked).
CREATE TABLE cutover.outbox (
    id            bigserial PRIMARY KEY,
    plan_id       text NOT NULL,
    event         text NOT NULL,
    dedup_key     text NOT NULL UNIQUE,
    phase         text,
    login         text NOT NULL DEFAULT session_user,
    threshold_ms  bigint,
    details       jsonb NOT NULL DEFAULT '{}',
    audit_seq     bigint,
    occurred_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    fanned_out_at timestamptz
);
CREATE INDEX outbox_unfanned ON cutover.outbox (plan_id, id) WHERE fanned_out_at IS NULL;

CREATE TABLE cutover.outbox_deliveries (
    outbox_id       bigint NOT NULL REFERENCES cutover.outbox ON DELETE CASCADE,
    target          text NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending','delivered','gave_up')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_attempt_at timestamptz,
    last_error      text,
    delivered_at    timestamptz,
    PRIMARY KEY (outbox_id, target)
);
CREATE INDEX outbox_deliveries_due ON cutover.outbox_deliveries (next_attempt_at)
    WHERE state = 'pending';

CREATE TABLE cutover.notify_watch (
    plan_id   text NOT NULL,
    condition text NOT NULL,
    since     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (plan_id, condition)
);

-- Audited changes that notify. SECURITY DEFINER: a login allowed to append to the audit log
-- always gets its outbox row, even before a DBA re-ran the grants for the new tables.
CREATE FUNCTION cutover.outbox_from_audit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ev text := CASE NEW.action
        WHEN 'phase.apply' THEN 'phase.applied'
        WHEN 'phase.rollback' THEN 'phase.rolled_back'
        WHEN 'phase.apply.failed' THEN 'phase.failed'
        WHEN 'phase.rollback.failed' THEN 'phase.failed'
        WHEN 'signoff' THEN 'signoff'
        WHEN 'gate.override' THEN 'override'
        WHEN 'backfill.done' THEN 'backfill.done'
    END;
BEGIN
    IF ev IS NOT NULL THEN
        INSERT INTO cutover.outbox (plan_id, event, dedup_key, phase, login, details, audit_seq, occurred_at)
        VALUES (NEW.plan_id, ev, 'audit:' || NEW.seq, NEW.phase, NEW.login,
                CASE WHEN jsonb_typeof(NEW.details) = 'object' THEN NEW.details ELSE '{}' END
                  || jsonb_build_object('action', NEW.action, 'os_user', NEW.os_user, 'host', NEW.host),
                NEW.seq, NEW.at::timestamptz)
        ON CONFLICT (dedup_key) DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox AFTER INSERT ON cutover.audit_log
    FOR EACH ROW EXECUTE FUNCTION cutover.outbox_from_audit();

-- A check whose latest result turns to fail (a repeated failure does not notify again).
CREATE FUNCTION cutover.outbox_from_check() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM (SELECT outcome FROM cutover.check_results
                                   WHERE plan_id = NEW.plan_id AND check_name = NEW.check_name
                                     AND id < NEW.id
                                   ORDER BY id DESC LIMIT 1) prev
                    WHERE prev.outcome = 'fail') THEN
        INSERT INTO cutover.outbox (plan_id, event, dedup_key, login, details, occurred_at)
        VALUES (NEW.plan_id, 'check.failed', 'check:' || NEW.id, session_user,
                jsonb_build_object('check', NEW.check_name, 'kind', NEW.kind, 'summary', NEW.summary,
                                   'rows_scanned', NEW.rows_scanned, 'duration_ms', NEW.duration_ms),
                clock_timestamp())
        ON CONFLICT (dedup_key) DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox AFTER INSERT ON cutover.check_results
    FOR EACH ROW WHEN (NEW.outcome = 'fail') EXECUTE FUNCTION cutover.outbox_from_check();

-- The backfill entering `failed` (whoever writes the row).
CREATE FUNCTION cutover.outbox_from_backfill() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO cutover.outbox (plan_id, event, dedup_key, phase, login, details, occurred_at)
    VALUES (NEW.plan_id, 'backfill.failed',
            format('backfill.failed:%s:%s', NEW.plan_id,
                   (extract(epoch FROM coalesce(NEW.state_changed_at, clock_timestamp())) * 1000000)::bigint),
            'backfill', session_user,
            jsonb_build_object('reason', NEW.reason, 'rows_done', NEW.rows_done,
                               'rows_estimate', NEW.rows_estimate),
            coalesce(NEW.state_changed_at, clock_timestamp()))
    ON CONFLICT (dedup_key) DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox AFTER UPDATE OF state ON cutover.backfill
    FOR EACH ROW WHEN (NEW.state = 'failed' AND OLD.state IS DISTINCT FROM 'failed')
    EXECUTE FUNCTION cutover.outbox_from_backfill();

CREATE TRIGGER notify AFTER INSERT ON cutover.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION cutover.notify_change();
