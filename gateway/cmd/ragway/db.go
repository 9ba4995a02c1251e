package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/ragway/ragway/gateway/config"
	"github.com/ragway/ragway/gateway/store"
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
	dbURL, err := cfg.ResolveDatabaseURL(os.Getenv)
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
		if store.IsUnavailable(err) || errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, fmt.Errorf("cannot reach the database at %s: %v — is it running? (task db:up)", store.RedactURL(dbURL), err)
		}
		return nil, fmt.Errorf("cannot use the database at %s: %w", store.RedactURL(dbURL), err)
	}
	return st, nil
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
