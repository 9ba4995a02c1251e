-- The admin pages sum usage over a period for every user (usage per user and model):
-- an index on the time alone serves that range without reading older rows.

-- +goose Up
CREATE INDEX usage_created_at_idx ON usage (created_at);

-- +goose Down
DROP INDEX usage_created_at_idx;
