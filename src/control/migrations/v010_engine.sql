ALTER TABLE cutover.flags ADD COLUMN plan_id text;

CREATE TABLE cutover.statement_progress (
    plan_id     text NOT NULL,
    phase       text NOT NULL,
    direction   text NOT NULL CHECK (direction IN ('apply','rollback')),
    idx         integer NOT NULL,
    statement   text NOT NULL,
    state       text NOT NULL CHECK (state IN ('running','done')),
    attempts    integer NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    PRIMARY KEY (plan_id, phase, direction, idx)
);

CREATE TABLE cutover.rehearsals (
    id          bigserial PRIMARY KEY,
    plan_id     text NOT NULL,
    plan_sha256 text NOT NULL,
    login       text NOT NULL,
    ok          boolean NOT NULL,
    total_ms    double precision NOT NULL,
    results     jsonb NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX rehearsals_latest ON cutover.rehearsals (plan_id, id DESC);

CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON cutover.overrides
    FOR EACH STATEMENT EXECUTE FUNCTION cutover.notify_change();
CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON cutover.rehearsals
    FOR EACH STATEMENT EXECUTE FUNCTION cutover.notify_change();
