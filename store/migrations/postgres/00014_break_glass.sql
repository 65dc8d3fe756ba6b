-- Break-glass emergency access (spec §10). A sealed one-time code is kept
-- only as its SHA-256 (hex) and used once. A grant gives its user a role
-- until expires_at; ended_at is set once, by the worker that audits the end,
-- and a grant stays listed until another admin acknowledges it. At most one
-- grant of a user is not ended.

-- +goose Up
CREATE TABLE break_glass_codes (
    hash       TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ,
    used_by    TEXT
);
CREATE TABLE break_glass_grants (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            TEXT NOT NULL,
    reason          TEXT NOT NULL,
    code_used       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    ended_at        TIMESTAMPTZ,
    acknowledged_by TEXT,
    acknowledged_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX break_glass_grants_open ON break_glass_grants (user_id) WHERE ended_at IS NULL;
CREATE INDEX break_glass_grants_expires ON break_glass_grants (expires_at) WHERE ended_at IS NULL;
CREATE INDEX break_glass_grants_unacknowledged ON break_glass_grants (created_at) WHERE acknowledged_at IS NULL;

-- +goose Down
DROP TABLE break_glass_grants;
DROP TABLE break_glass_codes;
