-- Instances read the revocation list incrementally: the tokens revoked since
-- their last read.

-- +goose Up
CREATE INDEX api_tokens_revoked_at ON api_tokens (revoked_at) WHERE revoked_at IS NOT NULL;

-- +goose Down
DROP INDEX api_tokens_revoked_at;
