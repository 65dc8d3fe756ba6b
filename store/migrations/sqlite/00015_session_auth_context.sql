-- How a session's sign-in was authenticated (spec §10, step-up MFA): the
-- ID token's acr, its amr (space-separated) and auth_time, NULL when the
-- provider did not say.

-- +goose Up
ALTER TABLE sessions ADD COLUMN acr TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN auth_time TEXT;

-- +goose Down
ALTER TABLE sessions DROP COLUMN auth_time;
ALTER TABLE sessions DROP COLUMN amr;
ALTER TABLE sessions DROP COLUMN acr;
