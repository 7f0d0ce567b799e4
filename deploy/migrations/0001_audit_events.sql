-- The append-only audit history: one hash chain per transfer (DESIGN.md §3 "Audit history").
CREATE TABLE audit_events (
    event_id        text        PRIMARY KEY,
    transfer_id     text        NOT NULL,
    seq             bigint      NOT NULL CHECK (seq >= 1),
    event_type      text        NOT NULL,
    stage           text        NOT NULL,
    actor           text        NOT NULL CHECK (actor <> ''),
    role            text        NOT NULL CHECK (role <> ''),
    workflow_time   timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    policy_version  text,
    request_digest  text,
    payload         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    prev_hash       text        NOT NULL,
    hash            text        NOT NULL UNIQUE,
    UNIQUE (transfer_id, seq)
);
CREATE INDEX audit_events_type_time ON audit_events (event_type, workflow_time);

-- The database itself refuses to rewrite history, whoever asks.
CREATE FUNCTION audit_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'record a correcting event instead of changing history';
END;
$$;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();

-- Current state of every transfer; rebuilt from audit_events alone by `tpt audit rebuild`.
CREATE TABLE transfers (
    transfer_id      text        PRIMARY KEY,
    stage            text        NOT NULL,
    donor            text,
    recipient        text,
    total_value_usd  numeric(20, 2),
    priority         text,
    route            text,
    needs_attention  boolean     NOT NULL DEFAULT false,
    blocked_reason   text,
    request_digest   text,
    policy_version   text,
    created_at       timestamptz NOT NULL,
    stage_entered_at timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    last_seq         bigint      NOT NULL,
    head_hash        text        NOT NULL
);
CREATE INDEX transfers_stage ON transfers (stage, donor, created_at);

-- The worker's role: append events and maintain the projection, nothing more.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tpt_worker') THEN
        CREATE ROLE tpt_worker LOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO tpt_worker;
GRANT SELECT, INSERT ON audit_events TO tpt_worker;
GRANT SELECT, INSERT, UPDATE ON transfers TO tpt_worker;
