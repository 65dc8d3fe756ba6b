-- One instance at a time delivers a message: a pass claims it for a lease,
-- and a claim left by a crashed instance lapses.

-- +goose Up
ALTER TABLE outbox ADD COLUMN claimed_until TEXT;

-- +goose Down
ALTER TABLE outbox DROP COLUMN claimed_until;
