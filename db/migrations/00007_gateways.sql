-- Gateways sharing the database say they are alive (gateways.seen_at, every few
-- seconds), and an answer in progress records the gateway generating it (the session's
-- ragway.origin, which a gateway sets on its connections): when a gateway stops
-- without ending its answers (killed, its machine lost), any other gateway marks them
-- failed within seconds, instead of waiting for them to be older than any generation
-- may last.

-- +goose Up
CREATE TABLE gateways (
    origin     text PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE messages ADD COLUMN gateway text DEFAULT nullif(current_setting('ragway.origin', true), '');

-- +goose Down
ALTER TABLE messages DROP COLUMN gateway;
DROP TABLE gateways;
