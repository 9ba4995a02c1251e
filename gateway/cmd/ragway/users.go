package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ragway/ragway/gateway/store"
)

// users runs `ragway users quota`.
func users(args []string, stdout, stderr io.Writer) error {
	if _, err := subcommand("users", args, stderr, "quota"); err != nil {
		return err
	}
	return usersQuota(args[1:], stdout, stderr)
}

// usersQuota shows a user's token quotas and usage, after changing those given.
func usersQuota(args []string, stdout, stderr io.Writer) error {
	c := newCommand("users quota", "--user NAME [--daily N] [--monthly N] [-c FILE]")
	cfgPath := c.fs.String("c", "", "config file (YAML) naming database_url")
	user := c.fs.String("user", "", "the user; required")
	daily := c.fs.Int64("daily", 0, "tokens a day, over all the user's keys and every gateway (UTC days; 0: no quota; unset: unchanged)")
	monthly := c.fs.Int64("monthly", 0, "tokens a month (UTC months; 0: no quota; unset: unchanged)")
	pos, err := c.parse(args, stdout, stderr)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos, 0, stderr); err != nil {
		return err
	}
	*user = strings.TrimSpace(*user)
	if *user == "" {
		c.printUsage(stderr)
		return errors.New("users quota: --user is required")
	}
	var change store.QuotaChange
	c.fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "daily":
			change.Daily = daily
		case "monthly":
			change.Monthly = monthly
		}
	})
	if *daily < 0 || *monthly < 0 {
		return errors.New("users quota: --daily and --monthly must be 0 (no quota) or more")
	}
	return withStore(*cfgPath, true, func(ctx context.Context, st *store.Store) error {
		notFound := fmt.Errorf("users quota: no user called %q (keys create --user makes one)", *user)
		if change.Daily != nil || change.Monthly != nil {
			err := st.SetUserQuotas(ctx, *user, change)
			if errors.Is(err, store.ErrNotFound) {
				return notFound
			}
			if err != nil {
				return fmt.Errorf("users quota: %w", err)
			}
		}
		q, err := st.UserQuota(ctx, *user)
		if errors.Is(err, store.ErrNotFound) {
			return notFound
		}
		if err != nil {
			return fmt.Errorf("users quota: %w", err)
		}
		now := time.Now().UTC()
		y, m, d := now.Date()
		fmt.Fprintf(stdout, "user %s\n  daily quota:   %s, %d used today (resets %s)\n  monthly quota: %s, %d used this month (resets %s)\n",
			*user, quotaText(q.Daily), q.Day, time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC).Format("2006-01-02 15:04 MST"),
			quotaText(q.Monthly), q.Month, time.Date(y, m+1, 1, 0, 0, 0, 0, time.UTC).Format("2006-01-02 15:04 MST"))
		return nil
	})
}

func quotaText(n int64) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprintf("%d tokens", n)
}
