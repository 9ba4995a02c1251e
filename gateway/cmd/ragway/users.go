package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ragway/ragway/gateway/store"
)

// users runs `ragway users quota`.
func users(args []string, stdout, stderr io.Writer) error {
	if _, err := subcommand("users", args, stderr, "quota"); err != nil {
		return err
	}
	return usersQuota(args[1:], stdout, stderr)
}

// usersQuota sets a user's token quotas.
func usersQuota(args []string, stdout, stderr io.Writer) error {
	c := newCommand("users quota", "--user NAME [--daily N] [--monthly N] [-c FILE]")
	cfgPath := c.fs.String("c", "", "config file (YAML) naming database_url")
	user := c.fs.String("user", "", "the user; required")
	daily := c.fs.Int64("daily", 0, "tokens a day, over all the user's keys and every gateway (UTC days; 0: no quota)")
	monthly := c.fs.Int64("monthly", 0, "tokens a month (UTC months; 0: no quota)")
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
	if *daily < 0 || *monthly < 0 {
		return errors.New("users quota: --daily and --monthly must be 0 (no quota) or more")
	}
	return withStore(*cfgPath, true, func(ctx context.Context, st *store.Store) error {
		err := st.SetUserQuotas(ctx, *user, *daily, *monthly)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("users quota: no user called %q (keys create --user makes one)", *user)
		}
		if err != nil {
			return fmt.Errorf("users quota: %w", err)
		}
		fmt.Fprintf(stdout, "user %s: daily quota %s, monthly quota %s\n", *user, quotaText(*daily), quotaText(*monthly))
		return nil
	})
}

func quotaText(n int64) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprintf("%d tokens", n)
}
