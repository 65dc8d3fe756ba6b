-- Quota hits per usage minute (spec §8): the refusals that were a quota's
-- 429, counted apart from the other refusals (denied still counts them
-- too), for the dashboard's quota-hits chart and the usage API.

-- +goose Up
ALTER TABLE usage_minutes ADD COLUMN quota_hits BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE usage_minutes DROP COLUMN quota_hits;
