-- The initial schema: users and their API keys, conversations and messages, knowledge
-- bases with documents and chunks, admin-added model deployments, and usage.
-- Ids are UUIDs (never sequential: they appear in URLs). A row that cannot outlive its
-- parent is deleted with it (ON DELETE CASCADE).

-- +goose Up
CREATE TABLE users (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL UNIQUE CHECK (name <> '' AND length(name) <= 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A key is shown once. Only its SHA-256 and a visible prefix (to find it, and to show
-- users which key is which) are stored.
CREATE TABLE api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    prefix       text NOT NULL UNIQUE,
    hash         bytea NOT NULL CHECK (length(hash) = 32),
    name         text NOT NULL DEFAULT '',
    scopes       text[] NOT NULL CHECK (scopes <@ ARRAY['chat', 'ingest', 'admin']::text[]),
    rpm_limit    integer CHECK (rpm_limit > 0),
    tpm_limit    integer CHECK (tpm_limit > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id);

CREATE TABLE conversations (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title         text NOT NULL DEFAULT '',
    model         text NOT NULL DEFAULT '',
    system_prompt text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Listing a user's conversations, most recent first.
CREATE INDEX conversations_user_id_updated_at_idx ON conversations (user_id, updated_at DESC, id);

-- seq orders a conversation's messages. An assistant message is inserted as
-- in_progress when generation starts and completed, cancelled or failed when it ends,
-- with what was generated so far.
CREATE TABLE messages (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq               bigint GENERATED ALWAYS AS IDENTITY,
    conversation_id   uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role              text NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content           text NOT NULL,
    status            text NOT NULL DEFAULT 'complete'
                      CHECK (status IN ('in_progress', 'complete', 'cancelled', 'failed')),
    model             text,
    finish_reason     text,
    error             text,
    prompt_tokens     integer,
    completion_tokens integer,
    sources           jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    completed_at      timestamptz
);
CREATE INDEX messages_conversation_id_seq_idx ON messages (conversation_id, seq);

CREATE TABLE knowledge_bases (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name            text NOT NULL CHECK (name <> '' AND length(name) <= 200),
    description     text NOT NULL DEFAULT '',
    embedding_model text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, name)
);

CREATE TABLE documents (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kb_id       uuid NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    title       text NOT NULL,
    source      text NOT NULL DEFAULT '',
    mime_type   text NOT NULL DEFAULT '',
    sha256      bytea NOT NULL CHECK (length(sha256) = 32),
    bytes       bigint NOT NULL CHECK (bytes >= 0),
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'indexed', 'failed')),
    error       text,
    chunk_count integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- The same content twice in one knowledge base is a duplicate.
    UNIQUE (kb_id, sha256)
);
CREATE INDEX documents_kb_id_created_at_idx ON documents (kb_id, created_at DESC, id);

-- A chunk carries its knowledge base's id too, so an index is rebuilt per knowledge
-- base without a join. sparse_indices/sparse_values are the chunk's lexical vector
-- (term hash, weight); dense is its embedding when an embedding model is configured.
CREATE TABLE chunks (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    document_id    uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    kb_id          uuid NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    ordinal        integer NOT NULL CHECK (ordinal >= 0),
    heading        text NOT NULL DEFAULT '',
    content        text NOT NULL,
    token_count    integer NOT NULL DEFAULT 0,
    dense          real[],
    sparse_indices bigint[] NOT NULL DEFAULT '{}',
    sparse_values  real[] NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (document_id, ordinal)
);
CREATE INDEX chunks_kb_id_idx ON chunks (kb_id);

-- Models added through the admin API; config is a models entry of the config file.
CREATE TABLE model_deployments (
    name       text PRIMARY KEY,
    config     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per served request. A revoked key keeps its usage; deleting a user deletes it.
CREATE TABLE usage (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    api_key_id        uuid REFERENCES api_keys (id) ON DELETE SET NULL,
    model             text NOT NULL,
    route             text NOT NULL,
    prompt_tokens     integer NOT NULL DEFAULT 0,
    completion_tokens integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_api_key_id_created_at_idx ON usage (api_key_id, created_at);
CREATE INDEX usage_user_id_created_at_idx ON usage (user_id, created_at);

-- +goose Down
DROP TABLE usage;
DROP TABLE model_deployments;
DROP TABLE chunks;
DROP TABLE documents;
DROP TABLE knowledge_bases;
DROP TABLE messages;
DROP TABLE conversations;
DROP TABLE api_keys;
DROP TABLE users;
