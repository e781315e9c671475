ALTER TABLE cutover.backfill
    ADD COLUMN key_columns   text[],
    ADD COLUMN key_types     text[],
    ADD COLUMN rows_updated  bigint NOT NULL DEFAULT 0,
    ADD COLUMN chunk_rows    integer,
    ADD COLUMN last_chunk_ms double precision,
    ADD COLUMN sweep_passes  integer NOT NULL DEFAULT 0;

ALTER TABLE cutover.backfill_ranges
    ADD COLUMN kind          text NOT NULL DEFAULT 'range' CHECK (kind IN ('range','sweep')),
    ADD COLUMN rows_estimate bigint,
    ADD COLUMN rows_updated  bigint NOT NULL DEFAULT 0;

CREATE TABLE cutover.backfill_chunks (
    id           bigserial PRIMARY KEY,
    plan_id      text NOT NULL,
    range_id     integer NOT NULL,
    worker       text NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    duration_ms  double precision NOT NULL,
    chunk_limit  integer NOT NULL,
    rows_scanned bigint NOT NULL,
    rows_updated bigint NOT NULL,
    target_ms    integer NOT NULL,
    lo           jsonb,
    hi           jsonb
);
CREATE INDEX backfill_chunks_latest ON cutover.backfill_chunks (plan_id, id DESC);

CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON cutover.backfill_ranges
    FOR EACH STATEMENT EXECUTE FUNCTION cutover.notify_change();
