CREATE TABLE cutover.evidence_baselines (
    id       bigserial PRIMARY KEY,
    plan_id  text NOT NULL,
    phase    text NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    snapshot jsonb NOT NULL
);
CREATE INDEX evidence_baselines_latest ON cutover.evidence_baselines (plan_id, phase, id DESC);

CREATE TABLE cutover.metrics_scrapes (
    id      bigserial PRIMARY KEY,
    plan_id text NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    peer    text NOT NULL,
    bytes   integer NOT NULL
);
CREATE INDEX metrics_scrapes_latest ON cutover.metrics_scrapes (plan_id, at DESC);

CREATE TABLE cutover.probe_results (
    id          bigserial PRIMARY KEY,
    plan_id     text NOT NULL,
    gate        text NOT NULL,
    probe       text NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('pass','fail','inconclusive')),
    summary     text NOT NULL,
    evidence    jsonb NOT NULL DEFAULT '[]',
    plan_sha256 text NOT NULL,
    duration_ms bigint NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX probe_results_latest ON cutover.probe_results (plan_id, gate, probe, id DESC);
CREATE TRIGGER notify AFTER INSERT ON cutover.probe_results
    FOR EACH STATEMENT EXECUTE FUNCTION cutover.notify_change();
