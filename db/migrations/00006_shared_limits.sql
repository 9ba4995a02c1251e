-- Rate limits shared by every gateway on this database: one bucket per key, for its
-- requests per minute and its tokens per minute, refilled continuously. Gateways lease
-- requests from it (a few at a time, and give back what they did not use) and debit
-- the tokens a request used once it is known, so that the limits hold for the sum over
-- all gateways without a round trip for every request.

-- +goose Up
CREATE TABLE limit_buckets (
    key_id     uuid PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    -- requests and tokens left, as of updated_at (tokens may be negative: a debt).
    requests   double precision NOT NULL,
    tokens     double precision NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- +goose StatementBegin
-- ragway_limit refills key p_key's bucket to now under its limits (p_rpm, p_tpm per
-- minute; 0: not limited), then takes up to p_requests requests (fewer when fewer are
-- left: granted says how many; a negative p_requests gives back unused ones) and
-- debits p_tokens tokens (down to a debt of one minute's allowance). It returns the
-- requests granted and the tokens left.
CREATE FUNCTION ragway_limit(p_key uuid, p_rpm integer, p_tpm integer, p_requests integer, p_tokens bigint,
                             OUT granted integer, OUT tokens_left double precision)
LANGUAGE plpgsql AS $$
DECLARE
    b       limit_buckets;
    elapsed double precision;
BEGIN
    INSERT INTO limit_buckets (key_id, requests, tokens) VALUES (p_key, p_rpm, p_tpm)
    ON CONFLICT (key_id) DO NOTHING;
    SELECT * INTO b FROM limit_buckets WHERE key_id = p_key FOR UPDATE;
    elapsed := greatest(extract(epoch FROM clock_timestamp() - b.updated_at), 0);
    b.requests := least(p_rpm, b.requests + p_rpm * elapsed / 60);
    b.tokens := least(p_tpm, b.tokens + p_tpm * elapsed / 60);
    IF p_rpm <= 0 THEN
        granted := greatest(p_requests, 0);
    ELSIF p_requests >= 0 THEN
        granted := least(p_requests, floor(b.requests)::integer);
        b.requests := b.requests - granted;
    ELSE
        granted := 0;
        b.requests := least(p_rpm, b.requests - p_requests);
    END IF;
    IF p_tpm > 0 THEN
        b.tokens := greatest(b.tokens - p_tokens, -p_tpm);
    END IF;
    UPDATE limit_buckets SET requests = b.requests, tokens = b.tokens, updated_at = clock_timestamp()
    WHERE key_id = p_key;
    tokens_left := b.tokens;
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION ragway_limit(uuid, integer, integer, integer, bigint);
DROP TABLE limit_buckets;
