-- bootstrap_admin applies once per email: to the first subject that signs in
-- with it while pending, never again (not to another subject, not after the
-- user is deleted).

-- +goose Up
CREATE TABLE bootstrap_grants (
    email      TEXT PRIMARY KEY,
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    granted_at TIMESTAMPTZ NOT NULL
);

-- +goose Down
DROP TABLE bootstrap_grants;
