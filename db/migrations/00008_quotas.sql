-- Per-user token quotas: a daily and a monthly budget of tokens (prompt and
-- completion) over every key of the user and every gateway, persisted. Periods are
-- UTC days and months. Gateways add what requests used (in batches) and read the
-- totals back.

-- +goose Up
ALTER TABLE users
    ADD COLUMN daily_token_quota bigint CHECK (daily_token_quota > 0),
    ADD COLUMN monthly_token_quota bigint CHECK (monthly_token_quota > 0);

CREATE TABLE quota_usage (
    user_id uuid   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    period  text   NOT NULL CHECK (period IN ('day', 'month')),
    starts  date   NOT NULL,
    tokens  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, period, starts)
);

-- +goose StatementBegin
-- ragway_quota_add adds p_tokens to user p_user's usage of the current UTC day and
-- month and returns both totals.
CREATE FUNCTION ragway_quota_add(p_user uuid, p_tokens bigint, OUT day_tokens bigint, OUT month_tokens bigint)
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

-- +goose Down
DROP FUNCTION ragway_quota_add(uuid, bigint);
DROP TABLE quota_usage;
ALTER TABLE users DROP COLUMN monthly_token_quota, DROP COLUMN daily_token_quota;
