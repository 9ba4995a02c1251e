package health

import (
	"context"
	"errors"
	"log/slog"

	"github.com/ragway/ragway/gateway/store"
)

// Pinger checks that the database answers and has this build's schema (*store.Store
// implements it).
type Pinger interface {
	Ready(ctx context.Context) error
}

// Database checks the database.
type Database struct {
	Store Pinger
	// Logger gets the causes of a database that is not ready; nil: slog.Default().
	Logger *slog.Logger
}

// State is the state of a dependency.
type State struct {
	Ready bool
	// Error says why it is not ready, in words for anyone (empty when ready).
	Error string
}

// Check reports whether the database answers, within ctx, and has this build's schema.
func (d *Database) Check(ctx context.Context) State {
	err := d.Store.Ready(ctx)
	if err == nil {
		return State{Ready: true}
	}
	log := d.Logger
	if log == nil {
		log = slog.Default()
	}
	switch {
	case errors.Is(err, store.ErrUnavailable):
		log.Debug("readyz: database", "error", err)
		return State{Error: "the database does not answer"}
	case errors.Is(err, store.ErrSchema):
		log.Error("readyz: database", "error", err)
		return State{Error: "the database's schema is not this ragway's (see the gateway's log)"}
	default:
		log.Warn("readyz: database", "error", err)
		return State{Error: "database error"}
	}
}
