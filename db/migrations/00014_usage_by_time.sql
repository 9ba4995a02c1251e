-- The admin pages sum usage over a period for every user (usage per user and model):
-- an index on the time alone serves that range without reading older rows. It is
-- built CONCURRENTLY (outside a transaction), so requests' usage rows keep being
-- written while it builds; a build an interruption left half-done is dropped first.

-- +goose NO TRANSACTION
-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS usage_created_at_idx;
CREATE INDEX CONCURRENTLY usage_created_at_idx ON usage (created_at);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS usage_created_at_idx;
