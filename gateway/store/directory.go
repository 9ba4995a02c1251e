package store

import (
	"context"
	"database/sql"
	"time"
)

// UserSummary is a user as the admin pages list it: the account, and how many keys
// and live sessions it holds.
type UserSummary struct {
	User
	// HasPassword: the user can sign in on the website.
	HasPassword bool
	// Keys counts the user's unrevoked API keys, Sessions its live website sessions.
	Keys, Sessions int
	// LastUsedAt is the newest use of any of its keys or sessions (zero: never).
	LastUsedAt time.Time
}

// listUsersSQL lists users by name after $1, at most $2, with their key and session
// counts (from the api_keys_user_id index, per user).
const listUsersSQL = `
SELECT u.id, u.name, u.created_at, u.admin, u.password_hash IS NOT NULL,
	coalesce(k.keys, 0), coalesce(k.sessions, 0), k.last_used_at
FROM users u
LEFT JOIN LATERAL (
	SELECT count(*) FILTER (WHERE kind = 'key' AND revoked_at IS NULL) AS keys,
		count(*) FILTER (WHERE kind = 'session' AND revoked_at IS NULL AND expires_at > now()) AS sessions,
		max(last_used_at) AS last_used_at
	FROM api_keys WHERE user_id = u.id
) k ON true
WHERE u.name > $1
ORDER BY u.name
LIMIT $2`

// ListUsers lists the users by name, a page at a time: p.After is the last name of
// the previous page.
func (s *Store) ListUsers(ctx context.Context, p Page) ([]UserSummary, error) {
	var out []UserSummary
	err := s.do(ctx, "list users", func(ctx context.Context) error {
		out = out[:0]
		rows, err := s.db.QueryContext(ctx, listUsersSQL, p.After, p.Size())
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var u UserSummary
			var last sql.NullTime
			if err := rows.Scan(&u.ID, &u.Name, &u.CreatedAt, &u.Admin, &u.HasPassword, &u.Keys, &u.Sessions, &last); err != nil {
				return err
			}
			u.LastUsedAt = last.Time
			out = append(out, u)
		}
		return rows.Err()
	})
	return out, err
}

// UsageTotal is what one user's requests to one model used within a period.
type UsageTotal struct {
	UserName         string
	Model            string
	Requests         int64
	PromptTokens     int64
	CompletionTokens int64
}

// usageTotalsSQL sums usage since $1 per user and model, the most tokens first, at
// most $2 rows.
const usageTotalsSQL = `
SELECT u.name, g.model, g.requests, g.prompt, g.completion
FROM (
	SELECT user_id, model, count(*) AS requests, sum(prompt_tokens) AS prompt, sum(completion_tokens) AS completion
	FROM usage WHERE created_at >= $1
	GROUP BY user_id, model
) g JOIN users u ON u.id = g.user_id
ORDER BY g.prompt + g.completion DESC, u.name, g.model
LIMIT $2`

// UsageTotals returns the usage since since per user and model, the most tokens
// first, at most limit rows.
func (s *Store) UsageTotals(ctx context.Context, since time.Time, limit int) ([]UsageTotal, error) {
	var out []UsageTotal
	err := s.do(ctx, "usage totals", func(ctx context.Context) error {
		out = out[:0]
		rows, err := s.db.QueryContext(ctx, usageTotalsSQL, since, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var t UsageTotal
			if err := rows.Scan(&t.UserName, &t.Model, &t.Requests, &t.PromptTokens, &t.CompletionTokens); err != nil {
				return err
			}
			out = append(out, t)
		}
		return rows.Err()
	})
	return out, err
}
