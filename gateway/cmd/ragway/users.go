package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ragway/ragway/gateway/accounts"
	"github.com/ragway/ragway/gateway/store"
)

// users runs `ragway users quota|invite|password`.
func users(args []string, stdout, stderr io.Writer) error {
	sub, err := subcommand("users", args, stderr, "quota", "invite", "password")
	if err != nil {
		return err
	}
	switch sub {
	case "invite":
		return usersInvite(args[1:], stdout, stderr)
	case "password":
		return usersPassword(args[1:], os.Stdin, stdout, stderr)
	}
	return usersQuota(args[1:], stdout, stderr)
}

// usersInvite makes an invitation to sign up on the website (shown once).
func usersInvite(args []string, stdout, stderr io.Writer) error {
	c := newCommand("users invite", "[--name NAME] [--admin] [-c FILE]")
	cfgPath := c.fs.String("c", "", "config file (YAML) naming database_url")
	name := c.fs.String("name", "", "the name the invited person must take (default: any free name)")
	admin := c.fs.Bool("admin", false, "the account is an admin of the site (its sessions carry the admin scope)")
	if err := c.parseFlags(args, stdout, stderr); err != nil {
		return err
	}
	return withStore(*cfgPath, true, func(ctx context.Context, st *store.Store) error {
		a, err := accounts.New(st, accounts.Options{})
		if err != nil {
			return fmt.Errorf("users invite: %w", err)
		}
		code, expires, err := a.Invite(ctx, "", strings.TrimSpace(*name), *admin)
		var fe *accounts.FieldError
		if errors.As(err, &fe) {
			return fmt.Errorf("users invite: --%s: %s", fe.Field, fe.Reason)
		}
		if err != nil {
			return fmt.Errorf("users invite: %w", err)
		}
		fmt.Fprintln(stdout, code)
		fmt.Fprintf(stderr, "invitation made; it is shown only once and is valid until %s\n", expires.UTC().Format("2006-01-02 15:04 MST"))
		return nil
	})
}

// usersPassword sets a user's website password, read from stdin (its first line),
// creating the user if needed.
func usersPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := newCommand("users password", "--user NAME [--admin|--no-admin] [-c FILE]  (the password on stdin)")
	cfgPath := c.fs.String("c", "", "config file (YAML) naming database_url")
	user := c.fs.String("user", "", "the user; required")
	admin := c.fs.Bool("admin", false, "make the user an admin of the site")
	noAdmin := c.fs.Bool("no-admin", false, "make the user not an admin of the site")
	if err := c.parseFlags(args, stdout, stderr); err != nil {
		return err
	}
	if err := c.required("user", user, stderr); err != nil {
		return err
	}
	if err := accounts.CheckName(*user); err != nil {
		return fmt.Errorf("users password: --user: %w", err)
	}
	if *admin && *noAdmin {
		return errors.New("users password: --admin or --no-admin, not both")
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, accounts.MaxPasswordBytes+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("users password: reading the password from stdin: %w", err)
	}
	password := strings.TrimRight(line, "\r\n")
	if err := accounts.CheckPassword(password); err != nil {
		return fmt.Errorf("users password: %w (the password is read from stdin)", err)
	}
	var role *bool
	switch {
	case *admin:
		role = new(true)
	case *noAdmin:
		role = new(false)
	}
	return withStore(*cfgPath, true, func(ctx context.Context, st *store.Store) error {
		a, err := accounts.New(st, accounts.Options{})
		if err != nil {
			return fmt.Errorf("users password: %w", err)
		}
		hash, err := a.HashPassword(ctx, password)
		if err != nil {
			return fmt.Errorf("users password: %w", err)
		}
		u, err := st.SetPassword(ctx, *user, hash, role)
		if err != nil {
			return fmt.Errorf("users password: %w", err)
		}
		fmt.Fprintf(stdout, "password set for user %s (admin of the site: %v)\n", u.Name, u.Admin)
		return nil
	})
}

// usersQuota shows a user's token quotas and usage, after changing those given.
func usersQuota(args []string, stdout, stderr io.Writer) error {
	c := newCommand("users quota", "--user NAME [--daily N] [--monthly N] [-c FILE]")
	cfgPath := c.fs.String("c", "", "config file (YAML) naming database_url")
	user := c.fs.String("user", "", "the user; required")
	daily := c.fs.Int64("daily", 0, "tokens a day, over all the user's keys and every gateway (UTC days; 0: no quota; unset: unchanged)")
	monthly := c.fs.Int64("monthly", 0, "tokens a month (UTC months; 0: no quota; unset: unchanged)")
	if err := c.parseFlags(args, stdout, stderr); err != nil {
		return err
	}
	if err := c.required("user", user, stderr); err != nil {
		return err
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
