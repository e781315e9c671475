-- CDC projection: one row per plan whose dual-write is a logical replication slot. `start_lsn`
-- is where the slot began (before the copy's first chunk); `applied_lsn` the last change
-- applied, written in the same transaction as the applied changes.
CREATE TABLE cutover.cdc (
    plan_id         text PRIMARY KEY,
    slot            text NOT NULL UNIQUE,
    start_lsn       pg_lsn NOT NULL,
    applied_lsn     pg_lsn NOT NULL,
    applied_changes bigint NOT NULL DEFAULT 0,
    caught_up_at    timestamptz,
    heartbeat       timestamptz,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON cutover.cdc
    FOR EACH STATEMENT EXECUTE FUNCTION cutover.notify_change();
