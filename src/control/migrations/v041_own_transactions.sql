-- Each Cutover process's own transaction counts on this database (counted on the wire by
-- db::tally), so the error budget can leave every Cutover process's transactions out.
CREATE TABLE cutover.own_transactions (
    process    uuid PRIMARY KEY,
    host       text NOT NULL,
    pid        integer NOT NULL,
    started_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    commits    bigint NOT NULL,
    rollbacks  bigint NOT NULL,
    deadlocks  bigint NOT NULL
);
