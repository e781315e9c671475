-- Hand attestations of scorecard categories (Observability: "the dashboard and alerts are at
-- URL"), recorded and audited like sign-offs, bound to the plan version attested.
CREATE TABLE cutover.attestations (
    id          bigserial PRIMARY KEY,
    plan_id     text NOT NULL,
    category    text NOT NULL CHECK (category IN ('observability')),
    role        text NOT NULL,
    login       text NOT NULL,
    os_user     text NOT NULL,
    host        text NOT NULL,
    url         text NOT NULL CHECK (url <> ''),
    plan_sha256 text NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX attestations_latest ON cutover.attestations (plan_id, category, id DESC);
CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON cutover.attestations
    FOR EACH STATEMENT EXECUTE FUNCTION cutover.notify_change();

-- Call counts of the statements the hidden-reader census saw reading a legacy column, one row
-- per census run: a reader whose count has not moved for the contract gate's observation
-- window has drained (an old app version that was rolled away).
CREATE TABLE cutover.census_samples (
    id       bigserial PRIMARY KEY,
    plan_id  text NOT NULL,
    taken_at timestamptz NOT NULL,
    calls    jsonb NOT NULL
);
CREATE INDEX census_samples_by_time ON cutover.census_samples (plan_id, taken_at);
