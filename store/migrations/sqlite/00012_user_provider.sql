-- The OpenID provider a user signs in through (spec §10: several
-- providers), by its configured name; '' for the users of before.

-- +goose Up
ALTER TABLE users ADD COLUMN provider TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE users DROP COLUMN provider;
