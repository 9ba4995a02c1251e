package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/ragway/ragway/gateway/store"
)

// migrate runs `ragway migrate up|status`.
func migrate(args []string, stdout, stderr io.Writer) error {
	sub, err := subcommand("migrate", args, stderr, "up", "status")
	if err != nil {
		return err
	}
	c := newCommand("migrate "+sub, "[-c FILE]")
	cfgPath := c.fs.String("c", "", "config file (YAML) naming database_url")
	if err := c.parseFlags(args[1:], stdout, stderr); err != nil {
		return err
	}

	return withStore(*cfgPath, false, func(ctx context.Context, st *store.Store) error {
		if sub == "status" {
			return migrateStatus(ctx, st, stdout)
		}
		return migrateUp(ctx, st, stdout)
	})
}

func migrateUp(ctx context.Context, st *store.Store, stdout io.Writer) error {
	applied, err := store.Migrate(ctx, st.DB())
	for _, f := range applied {
		fmt.Fprintln(stdout, "applied", f)
	}
	if err != nil {
		return err
	}
	states, err := store.MigrationStatus(ctx, st.DB())
	if err != nil {
		return err
	}
	var version int64
	for _, s := range states {
		if s.Applied {
			version = max(version, s.Version)
		}
	}
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "database is up to date (version %d)\n", version)
	} else {
		fmt.Fprintf(stdout, "database is at version %d\n", version)
	}
	return nil
}

func migrateStatus(ctx context.Context, st *store.Store, stdout io.Writer) error {
	states, err := store.MigrationStatus(ctx, st.DB())
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tFILE\tAPPLIED AT")
	for _, s := range states {
		at := "pending"
		if s.Applied {
			at = formatTime(s.AppliedAt)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", s.Version, s.Name, at)
	}
	return tw.Flush()
}
