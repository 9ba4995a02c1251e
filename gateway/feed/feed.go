package feed

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ragway/ragway/gateway/store"
)

// Source is the log (*store.Store implements it).
type Source interface {
	// Changes returns at most limit changes after id after, in order, and the highest
	// id pruned.
	Changes(ctx context.Context, after int64, limit int) ([]store.Change, int64, error)
	// ListenChanges wakes the caller when changes may have been made, until ctx ends.
	ListenChanges(ctx context.Context) <-chan struct{}
}

// Defaults of Follower.
const (
	DefaultPoll  = 2 * time.Second
	DefaultBatch = 500
)

// Follower applies the changes of the log, in order, from a position on.
type Follower struct {
	Source Source
	// Origin is this gateway's name in the log (store.Options.Origin): its own
	// changes are skipped, it made them in memory already.
	Origin string
	// Apply applies one change. An error stops the round: the change is tried again
	// at the next wake-up.
	Apply func(ctx context.Context, c store.Change) error
	// Reload loads everything again from the database, when changes were pruned
	// before this follower read them; it returns the position it loaded at (the last
	// change before it started loading).
	Reload func(ctx context.Context) (int64, error)
	// Poll is how often the log is read without a notification (default DefaultPoll).
	Poll time.Duration
	// Observe, when set, is told each change applied (the delay since it was made).
	Observe func(c store.Change)
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	pos atomic.Int64
}

// Position is the id of the last change applied (or skipped as its own).
func (f *Follower) Position() int64 { return f.pos.Load() }

// Run follows the log from position from until ctx ends.
func (f *Follower) Run(ctx context.Context, from int64) {
	f.pos.Store(from)
	poll := f.Poll
	if poll <= 0 {
		poll = DefaultPoll
	}
	log := f.Logger
	if log == nil {
		log = slog.Default()
	}
	wake := f.Source.ListenChanges(ctx)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	failing := false
	for {
		err := f.catchUp(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil && !failing:
			failing = true
			log.Warn("following the change feed: retrying", "position", f.Position(), "error", err)
		case err == nil && failing:
			failing = false
			log.Info("following the change feed again", "position", f.Position())
		}
		select {
		case <-ctx.Done():
			return
		case _, ok := <-wake:
			if !ok {
				return
			}
		case <-tick.C:
		}
	}
}

// catchUp applies every change after the position.
func (f *Follower) catchUp(ctx context.Context) error {
	for {
		pos := f.pos.Load()
		cs, horizon, err := f.Source.Changes(ctx, pos, DefaultBatch)
		if err != nil {
			return err
		}
		if horizon > pos {
			// Changes this follower never read were pruned: what they changed is
			// known only to the database now.
			at, err := f.Reload(ctx)
			if err != nil {
				return fmt.Errorf("reload (the feed was pruned past position %d): %w", pos, err)
			}
			f.pos.Store(max(at, horizon))
			continue
		}
		for _, c := range cs {
			if c.Origin == "" || c.Origin != f.Origin {
				if err := f.Apply(ctx, c); err != nil {
					return fmt.Errorf("apply change %d (%s): %w", c.ID, c.Kind, err)
				}
				if f.Observe != nil {
					f.Observe(c)
				}
			}
			f.pos.Store(c.ID)
		}
		if len(cs) < DefaultBatch {
			return nil
		}
	}
}

// Prune deletes the changes older than keep, every interval, until ctx ends. Any
// number of gateways may prune the same log.
func Prune(ctx context.Context, st interface {
	PruneChanges(ctx context.Context, keep time.Duration) (int64, error)
}, keep, every time.Duration, log *slog.Logger) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if n, err := st.PruneChanges(ctx, keep); err != nil && ctx.Err() == nil {
			log.Debug("pruning the change feed", "error", err)
		} else if n > 0 {
			log.Debug("change feed pruned", "changes", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
