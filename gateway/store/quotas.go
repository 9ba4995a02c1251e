package store

import (
	"context"
	"fmt"

	"github.com/lib/pq"
)

// QuotaChange changes a user's token quotas: a nil field keeps that quota, 0 removes
// it.
type QuotaChange struct {
	Daily, Monthly *int64
}

// SetUserQuotas changes the daily and monthly token quotas of the user called name.
// An unknown user is ErrNotFound; a negative quota ErrInvalid.
func (s *Store) SetUserQuotas(ctx context.Context, name string, c QuotaChange) error {
	if c.Daily != nil && *c.Daily < 0 || c.Monthly != nil && *c.Monthly < 0 {
		return fmt.Errorf("%w: a token quota is 0 (none) or more", ErrInvalid)
	}
	return s.do(ctx, "set user quotas", func(ctx context.Context) error {
		res, err := s.db.ExecContext(ctx, `UPDATE users SET
				daily_token_quota = CASE WHEN $2::bigint IS NULL THEN daily_token_quota ELSE nullif($2, 0) END,
				monthly_token_quota = CASE WHEN $3::bigint IS NULL THEN monthly_token_quota ELSE nullif($3, 0) END
			WHERE name = $1`, name, c.Daily, c.Monthly)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// UserQuota is a user's token quotas (0: none) and usage of the current UTC day and
// month.
type UserQuota struct {
	Daily, Monthly int64
	QuotaUsage
}

// UserQuota returns the quotas and usage of the user called name (ErrNotFound if
// there is none).
func (s *Store) UserQuota(ctx context.Context, name string) (UserQuota, error) {
	var q UserQuota
	err := s.do(ctx, "user quota", func(ctx context.Context) error {
		return s.db.QueryRowContext(ctx, `SELECT coalesce(u.daily_token_quota, 0), coalesce(u.monthly_token_quota, 0),
				coalesce((SELECT tokens FROM quota_usage WHERE user_id = u.id AND period = 'day'
					AND starts = (now() AT TIME ZONE 'UTC')::date), 0),
				coalesce((SELECT tokens FROM quota_usage WHERE user_id = u.id AND period = 'month'
					AND starts = date_trunc('month', (now() AT TIME ZONE 'UTC')::date)::date), 0)
			FROM users u WHERE u.name = $1`, name).Scan(&q.Daily, &q.Monthly, &q.Day, &q.Month)
	})
	return q, err
}

// QuotaAdd is tokens a user's requests used, to add to the user's quota usage.
type QuotaAdd struct {
	UserID string
	Tokens int64
}

// QuotaUsage is a user's usage of the current UTC day and month, in tokens.
type QuotaUsage struct {
	Day, Month int64
}

// AddQuotaUsage adds each user's tokens to their usage of the current UTC day and
// month, in one round trip, and returns the totals, in the order of adds. Rows are
// locked in user order (lockOrder).
func (s *Store) AddQuotaUsage(ctx context.Context, adds []QuotaAdd) ([]QuotaUsage, error) {
	order := lockOrder(len(adds), func(i int) string { return adds[i].UserID })
	users, toks := make([]string, len(adds)), make([]int64, len(adds))
	for j, i := range order {
		a := adds[i]
		if !validID(a.UserID) {
			return nil, fmt.Errorf("store: add quota usage: %w: user %q", ErrNotFound, a.UserID)
		}
		users[j], toks[j] = a.UserID, a.Tokens
	}
	out := make([]QuotaUsage, len(adds))
	err := s.do(ctx, "add quota usage", func(ctx context.Context) error {
		rows, err := s.db.QueryContext(ctx, `SELECT t.i, q.day_tokens, q.month_tokens
			FROM unnest($1::uuid[], $2::bigint[]) WITH ORDINALITY AS t(u, tok, i), LATERAL ragway_quota_add(t.u, t.tok) q
			ORDER BY t.i`, pq.Array(users), pq.Array(toks))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				i int
				u QuotaUsage
			)
			if err := rows.Scan(&i, &u.Day, &u.Month); err != nil {
				return err
			}
			out[order[i-1]] = u
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
