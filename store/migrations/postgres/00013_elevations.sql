-- Temporary elevation (spec §10): an active user asks for a higher role for
-- a duration; on approval they hold it until expires_at, then the role they
-- came from (from_role) is theirs again. reviewed_by has no foreign key: a
-- decision stays on record after its reviewer is deleted.
-- Statuses: pending, approved (held until expires_at), denied, expired (the
-- role went back), ended (someone set the user's role while it was held).

-- +goose Up
CREATE TABLE elevation_requests (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    from_role        TEXT NOT NULL,
    role             TEXT NOT NULL,
    duration_seconds BIGINT NOT NULL,
    reason           TEXT NOT NULL DEFAULT '',
    status           TEXT NOT NULL,
    comment          TEXT NOT NULL DEFAULT '',
    reviewed_by      TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    decided_at       TIMESTAMPTZ,
    expires_at       TIMESTAMPTZ,
    ended_at         TIMESTAMPTZ
);
-- At most one elevation per user waits or is held, enforced by the database
-- so that concurrent requests cannot both succeed.
CREATE UNIQUE INDEX elevation_requests_one_open ON elevation_requests (user_id) WHERE status IN ('pending', 'approved');
CREATE INDEX elevation_requests_user_created ON elevation_requests (user_id, created_at);
CREATE INDEX elevation_requests_status_expires ON elevation_requests (status, expires_at);

-- +goose Down
DROP TABLE elevation_requests;
