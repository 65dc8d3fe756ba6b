-- API token metadata; the token strings themselves are never stored.
-- user_id has no foreign key: a deleted user's tokens stay listed, revoked,
-- for audit, and keep naming their subject.

-- +goose Up
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL DEFAULT '',
    kind         TEXT NOT NULL,
    user_id      TEXT,
    created_by   TEXT NOT NULL DEFAULT '',
    scope        TEXT NOT NULL,
    models       TEXT,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE INDEX api_tokens_user_id ON api_tokens (user_id);
CREATE INDEX api_tokens_created_by ON api_tokens (created_by);
CREATE INDEX api_tokens_revoked ON api_tokens (expires_at) WHERE revoked_at IS NOT NULL;

-- +goose Down
DROP TABLE api_tokens;
