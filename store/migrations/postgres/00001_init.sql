-- +goose Up
CREATE TABLE users (
    id                TEXT PRIMARY KEY,
    issuer            TEXT NOT NULL,
    subject           TEXT NOT NULL,
    email             TEXT NOT NULL DEFAULT '',
    name              TEXT NOT NULL DEFAULT '',
    role              TEXT NOT NULL,
    status            TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    last_login_at     TIMESTAMPTZ,
    access_expires_at TIMESTAMPTZ,
    UNIQUE (issuer, subject)
);
CREATE INDEX users_role_status ON users (role, status);

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    TIMESTAMPTZ NOT NULL,
    last_seen_at  TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    id_token_hint TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- reviewed_by has no foreign key: a decision stays on record after its
-- reviewer is deleted.
CREATE TABLE access_requests (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT NOT NULL DEFAULT '',
    team           TEXT NOT NULL DEFAULT '',
    purpose        TEXT NOT NULL DEFAULT '',
    requested_role TEXT NOT NULL DEFAULT '',
    status         TEXT NOT NULL,
    role           TEXT NOT NULL DEFAULT '',
    comment        TEXT NOT NULL DEFAULT '',
    reviewed_by    TEXT,
    created_at     TIMESTAMPTZ NOT NULL,
    decided_at     TIMESTAMPTZ,
    expires_at     TIMESTAMPTZ
);
-- At most one pending request per user, enforced by the database so that
-- concurrent submissions cannot both succeed.
CREATE UNIQUE INDEX access_requests_one_pending ON access_requests (user_id) WHERE status = 'pending';
CREATE INDEX access_requests_user_created ON access_requests (user_id, created_at);
CREATE INDEX access_requests_status_created ON access_requests (status, created_at);

-- No foreign keys: the audit trail outlives the users it mentions.
CREATE TABLE audit_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time       TIMESTAMPTZ NOT NULL,
    type       TEXT NOT NULL,
    actor_id   TEXT NOT NULL DEFAULT '',
    target_id  TEXT NOT NULL DEFAULT '',
    ip         TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    detail     JSONB
);
CREATE INDEX audit_events_actor ON audit_events (actor_id);
CREATE INDEX audit_events_target ON audit_events (target_id);
CREATE INDEX audit_events_type ON audit_events (type);

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    channel         TEXT NOT NULL,
    payload         BYTEA NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    delivered_at    TIMESTAMPTZ,
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL;

CREATE TABLE signing_keys (
    id             TEXT PRIMARY KEY,
    algorithm      TEXT NOT NULL,
    private_sealed BYTEA NOT NULL,
    public_jwk     BYTEA NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    retired_at     TIMESTAMPTZ,
    publish_until  TIMESTAMPTZ
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

-- +goose Down
DROP TABLE settings;
DROP TABLE signing_keys;
DROP TABLE outbox;
DROP TABLE audit_events;
DROP TABLE access_requests;
DROP TABLE sessions;
DROP TABLE users;
