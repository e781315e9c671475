CREATE TABLE cutover.golden_snapshots (
    plan_id      text NOT NULL,
    check_name   text NOT NULL,
    query_sha256 text NOT NULL,
    row_count    bigint NOT NULL,
    checksum     text NOT NULL,
    taken_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (plan_id, check_name, query_sha256)
);
