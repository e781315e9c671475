-- The latency guard: the commit probe (one row per plan, written and timed by the throttle's
-- monitoring connection), the guard's readings over time, and the WAL each chunk wrote.
CREATE TABLE cutover.guard_probe (
    plan_id text PRIMARY KEY,
    n       bigint NOT NULL DEFAULT 0,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE cutover.backfill_guard (
    id      bigserial PRIMARY KEY,
    plan_id text NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    ratio   double precision NOT NULL,
    budget  double precision NOT NULL,
    pause   double precision NOT NULL,
    signal  text NOT NULL,
    reason  text NOT NULL
);
CREATE INDEX backfill_guard_latest ON cutover.backfill_guard (plan_id, at DESC);

ALTER TABLE cutover.backfill_chunks ADD COLUMN wal_bytes bigint;
