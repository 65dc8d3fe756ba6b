-- A user's own quotas (spec §8), narrowing their role's: a JSON object of
-- quota.Limits, NULL when the user has none of their own.

-- +goose Up
ALTER TABLE users ADD COLUMN limits JSONB;

-- +goose Down
ALTER TABLE users DROP COLUMN limits;
