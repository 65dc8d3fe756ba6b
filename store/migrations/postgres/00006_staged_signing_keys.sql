-- Staged key rotation: a key is published as the next key before it signs.
-- activated_at is when a key started signing, NULL while it waits. Each API
-- token records the kid that signed it, so that replacing a key in an
-- emergency revokes exactly that key's tokens.

-- +goose Up
ALTER TABLE signing_keys ADD COLUMN activated_at TIMESTAMPTZ;
-- Until now every key signed from the moment it was stored.
UPDATE signing_keys SET activated_at = created_at;
ALTER TABLE api_tokens ADD COLUMN kid TEXT;
-- A token minted until now was signed by the newest key of its time.
UPDATE api_tokens SET kid = (
    SELECT k.id FROM signing_keys k WHERE k.created_at <= api_tokens.created_at
    ORDER BY k.created_at DESC, k.id DESC LIMIT 1
);

-- +goose Down
ALTER TABLE api_tokens DROP COLUMN kid;
-- Without activated_at a waiting key would look like one that signs; it
-- has signed nothing, so it can go.
DELETE FROM signing_keys WHERE activated_at IS NULL AND retired_at IS NULL;
ALTER TABLE signing_keys DROP COLUMN activated_at;
