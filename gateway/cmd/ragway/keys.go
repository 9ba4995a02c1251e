package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/store"
)

// allScopes are the scopes a key may carry.
var allScopes = []string{store.ScopeChat, store.ScopeIngest, store.ScopeAdmin}

// keys runs `ragway keys create|list|revoke`.
func keys(args []string, stdout, stderr io.Writer) error {
	sub, err := subcommand("keys", args, stderr, "create", "list", "revoke")
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		return keysCreate(args[1:], stdout, stderr)
	case "list":
		return keysList(args[1:], stdout, stderr)
	default:
		return keysRevoke(args[1:], stdout, stderr)
	}
}

func keysCreate(args []string, stdout, stderr io.Writer) error {
	c := newCommand("keys create", "--user NAME [--scopes chat,ingest,admin] [--name LABEL] [--rpm N] [--tpm N] [--if-none] [-c FILE]")
	cfgPath := c.fs.String("c", "", "config file (YAML) naming database_url")
	user := c.fs.String("user", "", "the key's user (created if needed); required")
	scopeList := c.fs.String("scopes", store.ScopeChat, "comma-separated scopes: "+strings.Join(allScopes, ", "))
	name := c.fs.String("name", "", "a label for the key, shown by keys list")
	rpm := c.fs.Int("rpm", 0, "requests per minute (0: unlimited)")
	tpm := c.fs.Int("tpm", 0, "tokens per minute (0: unlimited)")
	ifNone := c.fs.Bool("if-none", false, "do nothing if the user already has an active key")
	if err := c.parseFlags(args, stdout, stderr); err != nil {
		return err
	}
	if err := c.required("user", user, stderr); err != nil {
		return err
	}
	scopes, err := parseScopes(*scopeList)
	if err != nil {
		return fmt.Errorf("keys create: %w", err)
	}
	if *rpm < 0 || *tpm < 0 {
		return errors.New("keys create: --rpm and --tpm must be 0 (unlimited) or more")
	}

	return withStore(*cfgPath, true, func(ctx context.Context, st *store.Store) error {
		if *ifNone {
			existing, err := st.ListAPIKeys(ctx, *user)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("keys create: list the keys of %s: %w", *user, err)
			}
			for _, k := range existing {
				if !k.Revoked() {
					fmt.Fprintf(stderr, "user %s already has an active key (%s): none created\n", *user, k.Prefix)
					return nil
				}
			}
		}

		u, err := st.EnsureUser(ctx, *user)
		if err != nil {
			return fmt.Errorf("keys create: user %s: %w", *user, err)
		}
		var key string
		var created store.APIKey
		// A new prefix may collide with an existing one (1 in 36^8): draw again.
		for attempt := 0; ; attempt++ {
			var prefix string
			var hash []byte
			key, prefix, hash, err = auth.NewKey()
			if err != nil {
				return fmt.Errorf("keys create: %w", err)
			}
			created, err = st.CreateAPIKey(ctx, store.NewAPIKey{
				UserID: u.ID, Prefix: prefix, Hash: hash, Name: *name, Scopes: scopes, RPMLimit: *rpm, TPMLimit: *tpm,
			})
			if errors.Is(err, store.ErrConflict) && attempt < 3 {
				continue
			}
			if err != nil {
				return fmt.Errorf("keys create: store the key: %w", err)
			}
			break
		}
		fmt.Fprintln(stdout, key)
		fmt.Fprintf(stderr, "created key %s for user %s with scopes %s%s; it is shown only once\n",
			created.Prefix, u.Name, strings.Join(scopes, ","), limitsNote(*rpm, *tpm))
		return nil
	})
}

func limitsNote(rpm, tpm int) string {
	if rpm == 0 && tpm == 0 {
		return ""
	}
	return " and limits " + formatLimits(rpm, tpm)
}

// parseScopes parses a comma-separated scope list.
func parseScopes(s string) ([]string, error) {
	var scopes []string
	for _, sc := range strings.Split(s, ",") {
		sc = strings.TrimSpace(sc)
		if sc == "" {
			continue
		}
		if !slices.Contains(allScopes, sc) {
			return nil, fmt.Errorf("unknown scope %q in --scopes (allowed: %s)", sc, strings.Join(allScopes, ", "))
		}
		if !slices.Contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	if len(scopes) == 0 {
		return nil, fmt.Errorf("--scopes is empty (allowed: %s)", strings.Join(allScopes, ", "))
	}
	return scopes, nil
}

func keysList(args []string, stdout, stderr io.Writer) error {
	c := newCommand("keys list", "[--user NAME] [-c FILE]")
	cfgPath := c.fs.String("c", "", "config file (YAML) naming database_url")
	user := c.fs.String("user", "", "list only this user's keys")
	if err := c.parseFlags(args, stdout, stderr); err != nil {
		return err
	}

	return withStore(*cfgPath, true, func(ctx context.Context, st *store.Store) error {
		list, err := st.ListAPIKeys(ctx, *user)
		if errors.Is(err, store.ErrNotFound) && *user != "" {
			return fmt.Errorf("keys list: no user named %q", *user)
		}
		if err != nil {
			return fmt.Errorf("keys list: %w", err)
		}
		if len(list) == 0 {
			if *user != "" {
				fmt.Fprintf(stderr, "user %s has no API keys\n", *user)
			} else {
				fmt.Fprintln(stderr, "no API keys (ragway keys create makes one)")
			}
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PREFIX\tUSER\tNAME\tSCOPES\tLIMITS\tCREATED\tLAST USED\tREVOKED")
		for _, k := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Prefix, k.UserName, orDash(k.Name),
				strings.Join(k.Scopes, ","), formatLimits(k.RPMLimit, k.TPMLimit),
				formatTime(k.CreatedAt), formatTime(k.LastUsedAt), formatTime(k.RevokedAt))
		}
		return tw.Flush()
	})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// formatLimits describes a key's limits ("60 rpm, 10000 tpm", "unlimited").
func formatLimits(rpm, tpm int) string {
	var parts []string
	if rpm > 0 {
		parts = append(parts, fmt.Sprintf("%d rpm", rpm))
	}
	if tpm > 0 {
		parts = append(parts, fmt.Sprintf("%d tpm", tpm))
	}
	if len(parts) == 0 {
		return "unlimited"
	}
	return strings.Join(parts, ", ")
}

func keysRevoke(args []string, stdout, stderr io.Writer) error {
	c := newCommand("keys revoke", "PREFIX|KEY [-c FILE]")
	cfgPath := c.fs.String("c", "", "config file (YAML) naming database_url")
	pos, err := c.parse(args, stdout, stderr)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos, 1, stderr); err != nil {
		return err
	}
	prefix := strings.TrimSpace(pos[0])
	if p, ok := auth.PrefixOf(prefix); ok {
		prefix = p // a whole key: its prefix names it
	} else if !auth.ValidPrefix(prefix) {
		// Not echoed: it may be a mistyped key.
		return fmt.Errorf("keys revoke: the argument is neither a key prefix (%s and %d lowercase letters or digits) nor a whole key",
			auth.KeyScheme, auth.PrefixRandLen)
	}

	return withStore(*cfgPath, true, func(ctx context.Context, st *store.Store) error {
		before, err := st.APIKeyByPrefix(ctx, prefix)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("keys revoke: no key with prefix %s (ragway keys list shows them)", prefix)
		}
		if err != nil {
			return fmt.Errorf("keys revoke %s: %w", prefix, err)
		}
		if before.Revoked() {
			fmt.Fprintf(stdout, "key %s of user %s was already revoked at %s\n", prefix, before.UserName, formatTime(before.RevokedAt))
			return nil
		}
		k, err := st.RevokeAPIKey(ctx, prefix)
		if err != nil {
			return fmt.Errorf("keys revoke %s: %w", prefix, err)
		}
		fmt.Fprintf(stdout, "revoked key %s of user %s\n", k.Prefix, k.UserName)
		return nil
	})
}
