-- A token's own quotas (spec §8), given at creation and carried in its
-- claims, kept so that the token lists show them: a JSON object of
-- quota.Limits, NULL when the token has none of its own.

-- +goose Up
ALTER TABLE api_tokens ADD COLUMN limits TEXT;

-- +goose Down
ALTER TABLE api_tokens DROP COLUMN limits;
