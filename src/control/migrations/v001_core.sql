CREATE TABLE cutover.migrations (
    plan_id       text PRIMARY KEY,
    title         text NOT NULL,
    plan_sha256   text NOT NULL,
    plan_source   text NOT NULL,
    plan_path     text NOT NULL,
    current_phase text CHECK (current_phase IN ('expand','dual_write','backfill','read_switch','contract')),
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending','applying','applied','rolling_back','rolled_back','failed')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cutover.phases (
    plan_id     text NOT NULL REFERENCES cutover.migrations ON DELETE CASCADE,
    phase       text NOT NULL CHECK (phase IN ('expand','dual_write','backfill','read_switch','contract')),
    state       text NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending','applying','applied','rolling_back','rolled_back','failed')),
    plan_sha256 text,
    started_at  timestamptz,
    finished_at timestamptz,
    error       text,
    PRIMARY KEY (plan_id, phase)
);

CREATE TABLE cutover.phase_history (
    id         bigserial PRIMARY KEY,
    plan_id    text NOT NULL,
    phase      text NOT NULL,
    from_state text NOT NULL,
    to_state   text NOT NULL,
    actor      text NOT NULL,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    details    jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE cutover.signoffs (
    id          bigserial PRIMARY KEY,
    plan_id     text NOT NULL,
    gate        text NOT NULL,
    role        text NOT NULL,
    login       text NOT NULL,
    os_user     text NOT NULL,
    host        text NOT NULL,
    plan_sha256 text NOT NULL,
    comment     text NOT NULL DEFAULT '',
    signed_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (plan_id, gate, role, plan_sha256)
);

CREATE TABLE cutover.overrides (
    id          bigserial PRIMARY KEY,
    plan_id     text NOT NULL,
    gate        text NOT NULL,
    login       text NOT NULL,
    reason      text NOT NULL CHECK (length(trim(reason)) > 0),
    plan_sha256 text NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE cutover.flags (
    name       text PRIMARY KEY,
    enabled    boolean NOT NULL DEFAULT false,
    updated_by text NOT NULL DEFAULT session_user,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE cutover.check_results (
    id           bigserial PRIMARY KEY,
    plan_id      text NOT NULL,
    check_name   text NOT NULL,
    kind         text NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('pass','fail','inconclusive')),
    summary      text NOT NULL,
    started_at   timestamptz NOT NULL,
    duration_ms  bigint NOT NULL,
    rows_scanned bigint NOT NULL DEFAULT 0,
    details      jsonb NOT NULL DEFAULT '{}',
    plan_sha256  text NOT NULL
);
CREATE INDEX check_results_latest ON cutover.check_results (plan_id, check_name, id DESC);

CREATE TABLE cutover.backfill (
    plan_id           text PRIMARY KEY,
    state             text NOT NULL DEFAULT 'idle'
                      CHECK (state IN ('idle','running','throttled','paused','stopped','done','failed')),
    reason            text NOT NULL DEFAULT '',
    paused_by         text,
    target_chunk_ms   integer NOT NULL,
    max_rows_per_sec  integer NOT NULL DEFAULT 0,
    workers           integer NOT NULL DEFAULT 1,
    rows_done         bigint NOT NULL DEFAULT 0,
    rows_estimate     bigint,
    throttled_seconds double precision NOT NULL DEFAULT 0,
    started_at        timestamptz,
    finished_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE cutover.backfill_ranges (
    plan_id     text NOT NULL,
    range_id    integer NOT NULL,
    lo          jsonb,
    hi          jsonb,
    checkpoint  jsonb,
    rows_done   bigint NOT NULL DEFAULT 0,
    chunks      bigint NOT NULL DEFAULT 0,
    done        boolean NOT NULL DEFAULT false,
    lease_owner text,
    lease_host  text,
    lease_pid   integer,
    lease_since timestamptz,
    lease_until timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (plan_id, range_id)
);

CREATE TABLE cutover.audit_log (
    seq         bigint PRIMARY KEY,
    at          text NOT NULL,
    login       text NOT NULL,
    os_user     text NOT NULL,
    host        text NOT NULL,
    plan_id     text NOT NULL,
    plan_sha256 text NOT NULL,
    action      text NOT NULL,
    phase       text,
    details     jsonb NOT NULL,
    prev_hash   text NOT NULL,
    hash        text NOT NULL
);

CREATE FUNCTION cutover.audit_log_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'cutover.audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON cutover.audit_log
    FOR EACH ROW EXECUTE FUNCTION cutover.audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON cutover.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION cutover.audit_log_is_append_only();

CREATE FUNCTION cutover.notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cutover_events', TG_TABLE_NAME);
    RETURN NULL;
END
$$;
CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON cutover.migrations
    FOR EACH STATEMENT EXECUTE FUNCTION cutover.notify_change();
CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON cutover.phases
    FOR EACH STATEMENT EXECUTE FUNCTION cutover.notify_change();
CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON cutover.signoffs
    FOR EACH STATEMENT EXECUTE FUNCTION cutover.notify_change();
CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON cutover.flags
    FOR EACH STATEMENT EXECUTE FUNCTION cutover.notify_change();
CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON cutover.check_results
    FOR EACH STATEMENT EXECUTE FUNCTION cutover.notify_change();
CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON cutover.backfill
    FOR EACH STATEMENT EXECUTE FUNCTION cutover.notify_change();
CREATE TRIGGER notify AFTER INSERT ON cutover.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION cutover.notify_change();
