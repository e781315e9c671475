-- The governance (roster, gates, authorization matrix) a plan's first registered version fixed,
-- and every approved change of it since.
CREATE TABLE cutover.plan_anchors (
    plan_id           text PRIMARY KEY,
    governance        jsonb NOT NULL,
    governance_sha256 text NOT NULL,
    plan_sha256       text NOT NULL,
    anchored_by       text NOT NULL,
    anchored_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON cutover.plan_anchors
    FOR EACH STATEMENT EXECUTE FUNCTION cutover.notify_change();
-- Migrations registered before anchors existed are anchored by the first action after the
-- upgrade, with the governance of the plan version used for it.
