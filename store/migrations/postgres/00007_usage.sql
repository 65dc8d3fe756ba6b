-- Usage per minute (spec §8): the meter of every instance adds its counts to
-- the row of their key, so a row is the sum over instances. No foreign keys:
-- usage stays on record after its user or token is gone, as audit does.

-- +goose Up
CREATE TABLE usage_minutes (
    minute            TIMESTAMPTZ NOT NULL,
    user_id           TEXT NOT NULL,
    token_id          TEXT NOT NULL DEFAULT '',
    model             TEXT NOT NULL DEFAULT '',
    route_kind        TEXT NOT NULL,
    token_kind        TEXT NOT NULL DEFAULT '',
    role              TEXT NOT NULL DEFAULT '',
    requests          BIGINT NOT NULL DEFAULT 0,
    errors            BIGINT NOT NULL DEFAULT 0,
    denied            BIGINT NOT NULL DEFAULT 0,
    prompt_tokens     BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    total_tokens      BIGINT NOT NULL DEFAULT 0,
    estimated         BIGINT NOT NULL DEFAULT 0,
    latency_ms        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, user_id, token_id, model, route_kind)
);
CREATE INDEX usage_minutes_user ON usage_minutes (user_id, minute);
CREATE INDEX usage_minutes_token ON usage_minutes (token_id, minute);

-- +goose Down
DROP TABLE usage_minutes;
