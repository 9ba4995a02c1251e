-- Rate limits that hold over any minute, over every gateway.
--
-- A bucket held a whole minute's allowance, so a key could spend it at once and then
-- what refilled: up to twice its limit in a minute. Buckets now hold a burst (the
-- gateways pass it: a tenth of the limit, at least one) and refill at the limit.
--
-- Requests a gateway leased and has not used yet are counted in limit_leases, and a
-- bucket refills only up to its burst less every live lease: requests in the bucket
-- and in leases together never exceed the burst, so a key gets at most its limit
-- plus the burst in any minute, however many gateways hold leases. A gateway reports
-- the leased requests it used (and gives back the others) as it syncs; a lease it does
-- not refresh for 3 s expires (a gateway that died), and the gateway stops using it
-- before that (after 2 s).
--
-- Also: a token debt is repaid in full (it was forgiven past a minute's allowance, so
-- a key making large requests got more than its limit); a key or user deleted while a
-- gateway still counts for it no longer fails the whole batch it is in (it gets
-- nothing); reading a bucket without a lease writes nothing. ragway_limit's previous
-- form stays for gateways of the previous version during a rolling upgrade.

-- +goose Up
CREATE TABLE limit_leases (
    key_id  uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    gateway text NOT NULL,
    leased  integer NOT NULL CHECK (leased > 0),
    expires timestamptz NOT NULL,
    PRIMARY KEY (key_id, gateway)
);

-- +goose StatementBegin
-- ragway_limit settles gateway p_gateway's part in key p_key's bucket, under the key's
-- limits (p_rpm, p_tpm per minute, 0: not limited; the bucket holds at most
-- p_rpm_burst requests and p_tpm_burst tokens, leases included):
--   - p_used requests of the gateway's lease were used since it last said;
--   - p_requests > 0 more are leased (fewer when fewer are left: granted says how
--     many), p_requests < 0 unused ones are given back;
--   - p_tokens tokens are debited.
-- The bucket is refilled to now first. It returns the requests granted, the requests
-- the gateway holds leased after the call (what it may use: a gateway whose call
-- failed, or whose lease lapsed, learns here what the bucket counts as its own) and
-- the tokens left. A key that does not exist gets nothing. A call that asks, uses and
-- debits nothing, from a gateway without a lease, writes nothing.
CREATE FUNCTION ragway_limit(p_key uuid, p_gateway text, p_rpm integer, p_rpm_burst integer, p_tpm integer,
                             p_tpm_burst integer, p_requests integer, p_used integer, p_tokens bigint,
                             OUT granted integer, OUT held integer, OUT tokens_left double precision)
LANGUAGE plpgsql AS $$
DECLARE
    b       limit_buckets;
    at      timestamptz := clock_timestamp();
    mine    integer;
    others  integer;
    back    integer;
    elapsed double precision;
BEGIN
    granted := 0;
    held := 0;
    tokens_left := 0;
    PERFORM 1 FROM api_keys WHERE id = p_key FOR KEY SHARE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF p_requests = 0 AND p_used = 0 AND p_tokens = 0 AND NOT EXISTS (
        SELECT 1 FROM limit_leases WHERE key_id = p_key AND gateway = p_gateway AND expires > at) THEN
        SELECT * INTO b FROM limit_buckets WHERE key_id = p_key;
        IF NOT FOUND THEN
            tokens_left := p_tpm_burst;
        ELSE
            tokens_left := least(p_tpm_burst, b.tokens + p_tpm * greatest(extract(epoch FROM at - b.updated_at), 0) / 60);
        END IF;
        RETURN;
    END IF;

    INSERT INTO limit_buckets (key_id, requests, tokens) VALUES (p_key, p_rpm_burst, p_tpm_burst)
    ON CONFLICT (key_id) DO NOTHING;
    SELECT * INTO b FROM limit_buckets WHERE key_id = p_key FOR UPDATE;
    -- The time of the call once the bucket is ours: calls that waited for each other
    -- refill in order.
    at := greatest(clock_timestamp(), b.updated_at);
    SELECT coalesce(sum(leased) FILTER (WHERE gateway = p_gateway), 0), coalesce(sum(leased) FILTER (WHERE gateway <> p_gateway), 0)
    INTO mine, others FROM limit_leases WHERE key_id = p_key AND expires > at;
    elapsed := greatest(extract(epoch FROM at - b.updated_at), 0);

    IF p_rpm > 0 THEN
        -- The refill since the last call, under the leases of that time (a request used
        -- meanwhile and said only now was still leased); then the requests used leave
        -- the lease, and unused ones given back return to the bucket.
        b.requests := least(b.requests + p_rpm * elapsed / 60, p_rpm_burst - others - mine);
        mine := greatest(mine - greatest(p_used, 0), 0);
        back := least(greatest(-p_requests, 0), mine);
        mine := mine - back;
        b.requests := b.requests + back;
        IF p_requests > 0 THEN
            granted := greatest(least(p_requests, floor(b.requests)::integer), 0);
            b.requests := b.requests - granted;
            mine := mine + granted;
        END IF;
    ELSE
        granted := greatest(p_requests, 0);
        mine := 0;
    END IF;
    b.tokens := least(p_tpm_burst, b.tokens + p_tpm * elapsed / 60);
    IF p_tpm > 0 THEN
        -- A debt is repaid in full, however large (a key of 100 tokens a minute that
        -- used 1000 waits 10 minutes), down to the floor of the gateways' own buckets
        -- (auth.MaxLimit/2 tokens).
        b.tokens := greatest(b.tokens - p_tokens, -50000000);
    END IF;
    UPDATE limit_buckets SET requests = b.requests, tokens = b.tokens, updated_at = at WHERE key_id = p_key;

    IF mine > 0 THEN
        INSERT INTO limit_leases (key_id, gateway, leased, expires) VALUES (p_key, p_gateway, mine, at + interval '3 seconds')
        ON CONFLICT (key_id, gateway) DO UPDATE SET leased = EXCLUDED.leased, expires = EXCLUDED.expires;
    END IF;
    -- This gateway's lease when it holds none, and expired ones (gateways that died).
    DELETE FROM limit_leases WHERE key_id = p_key AND (expires <= at OR gateway = p_gateway AND mine = 0);
    held := mine;
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
DROP FUNCTION ragway_limit(uuid, text, integer, integer, integer, integer, integer, integer, bigint);
DROP TABLE limit_leases;

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
