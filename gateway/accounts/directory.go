package accounts

import (
	"context"
	"fmt"
	"time"

	"github.com/ragway/ragway/gateway/store"
)

// Bounds of the admin listings.
const (
	MaxUsageDays = 366 // the longest usage period, in days
	MaxUsageRows = 1000
)

// Users returns a page of the users by name (p.After: the last name of the page
// before), and whether another page may follow.
func (s *Service) Users(ctx context.Context, p store.Page) ([]store.UserSummary, bool, error) {
	us, err := s.st.ListUsers(ctx, p)
	if err != nil {
		return nil, false, fmt.Errorf("accounts: users: %w", err)
	}
	return us, len(us) == p.Size(), nil
}

// User returns the user called name (ErrNotFound if none).
func (s *Service) User(ctx context.Context, name string) (store.User, error) {
	u, err := s.st.UserByName(ctx, name)
	if err != nil {
		return store.User{}, fmt.Errorf("accounts: user %q: %w", name, err)
	}
	return u, nil
}

// Usage is the usage of a period per user and model.
type Usage struct {
	Since   time.Time
	Totals  []store.UsageTotal // the most tokens first
	HasMore bool               // more pairs used tokens than Totals holds
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
	out.Totals = ts[:min(len(ts), limit)]
	return out, nil
}
