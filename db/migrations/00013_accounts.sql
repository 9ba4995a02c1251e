-- Accounts for the website. A user may have a password (an argon2id hash in PHC form)
-- and be an admin of the site (its sessions carry the admin scope). A session is an
-- API key of kind 'session' with an expiry: authenticated, scoped, limited and revoked
-- (the change feed's key_revoked included) as every key is. An invitation is a one-time
-- code, stored as its SHA-256, that lets one person sign up. signin_failures counts
-- failed sign-ins per name and per address, for every gateway of the database.

-- +goose Up
ALTER TABLE users
    ADD COLUMN password_hash text CHECK (password_hash IS NULL OR password_hash LIKE '$argon2id$%'),
    ADD COLUMN admin boolean NOT NULL DEFAULT false;

ALTER TABLE api_keys
    ADD COLUMN kind text NOT NULL DEFAULT 'key' CHECK (kind IN ('key', 'session')),
    ADD COLUMN expires_at timestamptz;

CREATE TABLE invites (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    hash       bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
    -- The name the invited person must take; NULL: any free name.
    name       text CHECK (name IS NULL OR (name <> '' AND length(name) <= 200)),
    admin      boolean NOT NULL DEFAULT false,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    used_by    uuid REFERENCES users (id) ON DELETE SET NULL
);

CREATE TABLE signin_failures (
    id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- 'name:<name>' or 'addr:<address>'.
    key text NOT NULL CHECK (length(key) <= 300),
    at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signin_failures_key_at_idx ON signin_failures (key, at);

-- +goose Down
-- Without a kind and an expiry a session would be a key for good: they end first.
DELETE FROM api_keys WHERE kind = 'session';
DROP TABLE signin_failures;
DROP TABLE invites;
ALTER TABLE api_keys DROP COLUMN expires_at, DROP COLUMN kind;
ALTER TABLE users DROP COLUMN admin, DROP COLUMN password_hash;
