-- Rate limits that hold over any minute. A bucket held a whole minute's allowance, so
-- a key could spend it at once and then what refilled: up to twice its limit in a
-- minute. Buckets now hold a burst (the gateways pass it: a tenth of the limit, at
-- least one) and refill at the limit, so that a key gets at most its limit plus the
-- burst in any minute. A token debt is repaid in full (it was forgiven past a
-- minute's allowance, so a key making large requests got more than its limit).
-- Also: a key or user deleted while a gateway still counts for it no longer fails
-- the whole batch it is in (it gets nothing, and nothing is written), and reading a
-- bucket writes nothing.

-- +goose Up
DROP FUNCTION ragway_limit(uuid, integer, integer, integer, bigint);

-- +goose StatementBegin
-- ragway_limit refills key p_key's bucket to now under its limits (p_rpm, p_tpm per
-- minute, 0: not limited; the bucket holds at most p_rpm_burst requests and
-- p_tpm_burst tokens), then takes up to p_requests requests (fewer when fewer are
-- left: granted says how many; a negative p_requests gives back unused ones) and
-- debits p_tokens tokens. It returns the requests granted and the tokens left. A key
-- that does not exist gets nothing.
CREATE FUNCTION ragway_limit(p_key uuid, p_rpm integer, p_rpm_burst integer, p_tpm integer, p_tpm_burst integer,
                             p_requests integer, p_tokens bigint,
                             OUT granted integer, OUT tokens_left double precision)
LANGUAGE plpgsql AS $$
DECLARE
    b       limit_buckets;
    elapsed double precision;
    reading boolean := p_requests = 0 AND p_tokens = 0;
BEGIN
    granted := 0;
    IF reading THEN
        SELECT * INTO b FROM limit_buckets WHERE key_id = p_key;
        IF NOT FOUND THEN
            tokens_left := p_tpm_burst;
            RETURN;
        END IF;
    ELSE
        INSERT INTO limit_buckets (key_id, requests, tokens)
        SELECT p_key, p_rpm_burst, p_tpm_burst FROM api_keys WHERE id = p_key
        ON CONFLICT (key_id) DO NOTHING;
        SELECT * INTO b FROM limit_buckets WHERE key_id = p_key FOR UPDATE;
        IF NOT FOUND THEN
            tokens_left := 0;
            RETURN;
        END IF;
    END IF;
    elapsed := greatest(extract(epoch FROM clock_timestamp() - b.updated_at), 0);
    b.requests := least(p_rpm_burst, b.requests + p_rpm * elapsed / 60);
    b.tokens := least(p_tpm_burst, b.tokens + p_tpm * elapsed / 60);
    tokens_left := b.tokens;
    IF reading THEN
        RETURN;
    END IF;
    IF p_rpm <= 0 THEN
        granted := greatest(p_requests, 0);
    ELSIF p_requests >= 0 THEN
        granted := least(p_requests, floor(b.requests)::integer);
        b.requests := b.requests - granted;
    ELSE
        b.requests := least(p_rpm_burst, b.requests - p_requests);
    END IF;
    IF p_tpm > 0 THEN
        -- A debt is repaid in full, however large (a key of 100 tokens a minute that
        -- used 1000 waits 10 minutes), down to the floor of the gateways' own buckets
        -- (auth.MaxLimit/2 tokens).
        b.tokens := greatest(b.tokens - p_tokens, -50000000);
    END IF;
    UPDATE limit_buckets SET requests = b.requests, tokens = b.tokens, updated_at = clock_timestamp()
    WHERE key_id = p_key;
    tokens_left := b.tokens;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- ragway_quota_add adds p_tokens to user p_user's usage of the current UTC day and
-- month and returns both totals (0 and 0 for a user that does not exist).
CREATE OR REPLACE FUNCTION ragway_quota_add(p_user uuid, p_tokens bigint, OUT day_tokens bigint, OUT month_tokens bigint)
LANGUAGE plpgsql AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    day_tokens := 0;
    month_tokens := 0;
    PERFORM 1 FROM users WHERE id = p_user FOR KEY SHARE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO quota_usage (user_id, period, starts, tokens) VALUES (p_user, 'day', today, p_tokens)
    ON CONFLICT (user_id, period, starts) DO UPDATE SET tokens = quota_usage.tokens + EXCLUDED.tokens
    RETURNING tokens INTO day_tokens;
    INSERT INTO quota_usage (user_id, period, starts, tokens) VALUES (p_user, 'month', date_trunc('month', today)::date, p_tokens)
    ON CONFLICT (user_id, period, starts) DO UPDATE SET tokens = quota_usage.tokens + EXCLUDED.tokens
    RETURNING tokens INTO month_tokens;
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION ragway_limit(uuid, integer, integer, integer, integer, integer, bigint);

-- +goose StatementBegin
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

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION ragway_quota_add(p_user uuid, p_tokens bigint, OUT day_tokens bigint, OUT month_tokens bigint)
LANGUAGE plpgsql AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    INSERT INTO quota_usage (user_id, period, starts, tokens) VALUES (p_user, 'day', today, p_tokens)
    ON CONFLICT (user_id, period, starts) DO UPDATE SET tokens = quota_usage.tokens + EXCLUDED.tokens
    RETURNING tokens INTO day_tokens;
    INSERT INTO quota_usage (user_id, period, starts, tokens) VALUES (p_user, 'month', date_trunc('month', today)::date, p_tokens)
    ON CONFLICT (user_id, period, starts) DO UPDATE SET tokens = quota_usage.tokens + EXCLUDED.tokens
    RETURNING tokens INTO month_tokens;
END;
$$;
-- +goose StatementEnd
