-- A chunk's vectors are stored packed, little-endian: dense as float32s, sparse as
-- (uint32 term id, float32 weight) pairs, term ids ascending. Arrays in text form cost
-- more to write and parse than the ingestion of the text itself; bytes are copied as is.

-- +goose Up
ALTER TABLE chunks
    DROP COLUMN dense,
    DROP COLUMN sparse_indices,
    DROP COLUMN sparse_values,
    ADD COLUMN dense bytea CHECK (length(dense) % 4 = 0),
    ADD COLUMN sparse bytea NOT NULL DEFAULT '' CHECK (length(sparse) % 8 = 0);

-- +goose Down
ALTER TABLE chunks
    DROP COLUMN dense,
    DROP COLUMN sparse,
    ADD COLUMN dense real[],
    ADD COLUMN sparse_indices bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN sparse_values real[] NOT NULL DEFAULT '{}';
