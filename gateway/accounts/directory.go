package accounts

import (
	"context"
	"fmt"
	"time"

	"github.com/ragway/ragway/gateway/store"
)

// Bounds of the admin listings.
const (
	MaxUserPage  = store.MaxPageLimit // the most users one page lists
	MaxUsageDays = 366                // the longest usage period, in days
	MaxUsageRows = 1000
)

// Page bounds a listing of users: at most Limit (0: the default of 50; at most
// MaxUserPage) after the user named After (empty: from the start).
type Page struct {
	Limit int
	After string
}

// User is a user as the admin pages list it: the account, and how many keys and
// live sessions it holds.
type User struct {
	ID, Name  string
	Admin     bool
	CreatedAt time.Time
	// HasPassword: the user can sign in on the website.
	HasPassword bool
	// Keys counts the user's unrevoked API keys, Sessions its live website sessions.
	Keys, Sessions int
	// LastUsedAt is the newest use of any of its keys or sessions (zero: never).
	LastUsedAt time.Time
}

// Users returns a page of the users by name, and whether another page may follow.
func (s *Service) Users(ctx context.Context, p Page) ([]User, bool, error) {
	sp := store.Page(p)
	us, err := s.st.ListUsers(ctx, sp)
	if err != nil {
		return nil, false, fmt.Errorf("accounts: users: %w", err)
	}
	out := make([]User, len(us))
	for i, u := range us {
		out[i] = User{ID: u.ID, Name: u.Name, Admin: u.Admin, CreatedAt: u.CreatedAt, HasPassword: u.HasPassword,
			Keys: u.Keys, Sessions: u.Sessions, LastUsedAt: u.LastUsedAt}
	}
	return out, len(us) == sp.Size(), nil
}

// User returns the user called name (ErrNotFound if none).
func (s *Service) User(ctx context.Context, name string) (User, error) {
	u, err := s.st.UserByName(ctx, name)
	if err != nil {
		return User{}, fmt.Errorf("accounts: user %q: %w", name, err)
	}
	return User{ID: u.ID, Name: u.Name, Admin: u.Admin, CreatedAt: u.CreatedAt}, nil
}

// UsageTotal is what one user's requests to one model used within a period.
type UsageTotal struct {
	UserName, Model                          string
	Requests, PromptTokens, CompletionTokens int64
}

// Usage is the usage of a period per user and model.
type Usage struct {
	Since   time.Time
	Totals  []UsageTotal // the most tokens first
	HasMore bool         // more pairs used tokens than Totals holds
}

// Usage returns the usage of the last days days (1 to MaxUsageDays) per user and
// model, at most limit (1 to MaxUsageRows) pairs.
func (s *Service) Usage(ctx context.Context, days, limit int) (Usage, error) {
	if days < 1 || days > MaxUsageDays {
		return Usage{}, &FieldError{"days", fmt.Sprintf("a period is 1 to %d days", MaxUsageDays)}
	}
	if limit < 1 || limit > MaxUsageRows {
		return Usage{}, &FieldError{"limit", fmt.Sprintf("a usage listing holds 1 to %d rows", MaxUsageRows)}
	}
	out := Usage{Since: s.opts.Now().Add(-time.Duration(days) * 24 * time.Hour).Truncate(time.Second)}
	ts, err := s.st.UsageTotals(ctx, out.Since, limit+1)
	if err != nil {
		return Usage{}, fmt.Errorf("accounts: usage: %w", err)
	}
	out.HasMore = len(ts) > limit
	for _, t := range ts[:min(len(ts), limit)] {
		out.Totals = append(out.Totals, UsageTotal{UserName: t.UserName, Model: t.Model, Requests: t.Requests,
			PromptTokens: t.PromptTokens, CompletionTokens: t.CompletionTokens})
	}
	return out, nil
}
