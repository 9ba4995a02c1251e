package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/ragway/ragway/gateway/config"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/internal/pgcluster"
)

// pingTimeout bounds the first contact with the database.
const pingTimeout = 10 * time.Second

// openStore loads the config file cfgPath (none if "") with the environment, and opens
// and pings the database it names. The caller closes the store.
func openStore(ctx context.Context, cfgPath string) (*store.Store, error) {
	cfg, err := config.Load(cfgPath, os.Environ())
	if err != nil {
		return nil, err
	}
	dbURL, local, err := resolveDatabaseURL(cfg)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(dbURL, store.Options{})
	if err != nil {
		return nil, err // names the problem, not the password
	}
	// The pool's own ping, for the driver's error as is ("connection refused"), which
	// names neither the URL nor the password.
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := st.DB().PingContext(pctx); err != nil {
		st.Close()
		unreachable := store.IsUnavailable(err) || errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil
		switch {
		case local != "" && unreachable:
			return nil, fmt.Errorf("no database URL is set, and the project-local Postgres (%s) does not answer at %s: %v — start it with `go tool -modfile=tools/go.mod task db:up` in %s, or set DATABASE_URL",
				local, store.RedactURL(dbURL), err, filepath.Dir(filepath.Dir(local)))
		case local != "":
			return nil, fmt.Errorf("no database URL is set, and the project-local Postgres (%s) refuses its database at %s: %w — `go tool -modfile=tools/go.mod task db:up` creates it; or set DATABASE_URL",
				local, store.RedactURL(dbURL), err)
		case unreachable:
			return nil, fmt.Errorf("cannot reach the database at %s: %v — is it running? (task db:up)", store.RedactURL(dbURL), err)
		}
		return nil, fmt.Errorf("cannot use the database at %s: %w", store.RedactURL(dbURL), err)
	}
	return st, nil
}

// resolveDatabaseURL returns the database the commands use: database_url (the config
// file, else RAGWAY_DATABASE_URL), else DATABASE_URL, else the project-local cluster
// of the checkout this ragway belongs to (see [pgcluster.FindRoot]): its database
// "ragway", the one `task db:up` and `task run` use. local is that cluster's
// directory when it is the one returned. With none of these the error says what to
// set or run.
func resolveDatabaseURL(cfg *config.Config) (dbURL, local string, err error) {
	dbURL, err = cfg.ResolveDatabaseURL(os.Getenv)
	if !errors.Is(err, config.ErrNoDatabase) {
		return dbURL, "", err
	}
	exe, _ := os.Executable()
	wd, _ := os.Getwd()
	root, ok := pgcluster.FindRoot(exe, wd)
	if !ok {
		return "", "", fmt.Errorf("%w; and this ragway is not in a ragway checkout (neither %s nor the working directory %s), so it has no project-local cluster to use",
			err, exe, wd)
	}
	c, err := pgcluster.Project(root)
	if err != nil {
		return "", "", err
	}
	if !c.Initialized() {
		return "", "", fmt.Errorf("no database configured (database_url, RAGWAY_DATABASE_URL or DATABASE_URL), and the checkout's project-local Postgres cluster %s has not been made: run `go tool -modfile=tools/go.mod task db:up` in %s (or `task run`), or set DATABASE_URL",
			c.Dir, root)
	}
	dbURL, err = c.URL(pgcluster.ProjectDatabase)
	if err != nil {
		return "", "", fmt.Errorf("no database configured, and the project-local cluster: %w", err)
	}
	return dbURL, c.Dir, nil
}

// withStore runs fn with the database of the config file cfgPath (see openStore) under
// a context Ctrl-C cancels, and closes it after. checkSchema refuses a database whose
// schema is older than this ragway (`ragway migrate up` says what to do).
func withStore(cfgPath string, checkSchema bool, fn func(ctx context.Context, st *store.Store) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	st, err := openStore(ctx, cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	if checkSchema {
		if err := store.CheckSchema(ctx, st.DB()); err != nil {
			return err
		}
	}
	return fn(ctx, st)
}
