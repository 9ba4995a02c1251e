// Package usage accounts for served requests: it charges their tokens to the key's
// tokens-per-minute limit and writes one usage row per request (user, key, model,
// route, token counts) to Postgres in the background: off the request path, in
// batches, and kept in memory while Postgres is unavailable (up to a bound) until it
// returns.
package usage

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/store"
)

// Writer stores usage rows (*store.Store implements it).
type Writer interface {
	RecordUsage(ctx context.Context, rows ...store.Usage) error
}

// Options tunes a Recorder. Zero values take the defaults.
type Options struct {
	// MaxPending bounds the rows kept while Postgres is unavailable (default
	// 100,000); beyond, the oldest are dropped and counted in Dropped.
	MaxPending int
	// Batch is the most rows written at once (default 500).
	Batch int
	// RetryEvery is the wait after a failed write (default 1s).
	RetryEvery time.Duration
	// Spend, when set, charges a request's tokens to its key's rate limit
	// (auth.Limiter.Spend).
	Spend  func(p auth.Principal, tokens int)
	Logger *slog.Logger
}

// Recorder queues usage rows and writes them from one goroutine.
type Recorder struct {
	w    Writer
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	pending []store.Usage
	dropped int64
	wake    chan struct{}
	done    chan struct{}
	stop    chan struct{}
}

// New starts a Recorder writing to w. Close it to flush.
func New(w Writer, opts Options) *Recorder {
	if opts.MaxPending <= 0 {
		opts.MaxPending = 100_000
	}
	if opts.Batch <= 0 {
		opts.Batch = 500
	}
	if opts.RetryEvery <= 0 {
		opts.RetryEvery = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Recorder{w: w, opts: opts, log: opts.Logger, wake: make(chan struct{}, 1), done: make(chan struct{}), stop: make(chan struct{})}
	go r.run()
	return r
}

// Account charges a served request's tokens to p's key and queues its usage row. A
// request without a key (p zero) is not accounted.
func (r *Recorder) Account(p auth.Principal, route, model string, promptTokens, completionTokens int) {
	if p.KeyID == "" {
		return
	}
	if r.opts.Spend != nil {
		r.opts.Spend(p, promptTokens+completionTokens)
	}
	r.Record(store.Usage{UserID: p.UserID, APIKeyID: p.KeyID, Model: model, Route: route,
		PromptTokens: promptTokens, CompletionTokens: completionTokens})
}

// Record queues one row. It never blocks on Postgres.
func (r *Recorder) Record(u store.Usage) {
	r.mu.Lock()
	if len(r.pending) >= r.opts.MaxPending {
		r.pending = r.pending[1:]
		r.dropped++
	}
	r.pending = append(r.pending, u)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Pending returns the rows not written yet and the rows dropped so far.
func (r *Recorder) Pending() (pending int, dropped int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending), r.dropped
}

func (r *Recorder) run() {
	defer close(r.done)
	for {
		select {
		case <-r.wake:
		case <-r.stop:
			r.flush()
			return
		}
		if !r.flush() {
			select {
			case <-time.After(r.opts.RetryEvery):
				r.kick()
			case <-r.stop:
				r.flush()
				return
			}
		}
	}
}

func (r *Recorder) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// flush writes pending rows batch by batch; it reports false when a write failed (the
// rows stay pending).
func (r *Recorder) flush() bool {
	for {
		r.mu.Lock()
		n := min(len(r.pending), r.opts.Batch)
		batch := append([]store.Usage(nil), r.pending[:n]...)
		r.mu.Unlock()
		if n == 0 {
			return true
		}
		// No deadline of our own: the store's query timeout makes a Postgres that
		// hangs an ErrUnavailable, and unavailable rows are kept.
		err := r.w.RecordUsage(context.Background(), batch...)
		if err != nil {
			if errors.Is(err, store.ErrUnavailable) {
				r.log.Debug("usage rows kept until the database is back", "rows", n, "error", err)
				return false
			}
			// Postgres refused the batch (a user deleted meanwhile): store the rows one
			// by one, dropping only those it refuses.
			for i, u := range batch {
				if err := r.w.RecordUsage(context.Background(), u); err != nil {
					if errors.Is(err, store.ErrUnavailable) {
						r.remove(i) // the rows before are stored (or dropped)
						return false
					}
					r.log.Warn("usage row not stored", "model", u.Model, "route", u.Route, "error", err)
				}
			}
		}
		r.remove(n)
	}
}

func (r *Recorder) remove(n int) {
	r.mu.Lock()
	r.pending = r.pending[n:]
	if len(r.pending) == 0 {
		r.pending = nil
	}
	r.mu.Unlock()
}

// Close writes what is pending (one attempt, bounded by ctx) and stops the Recorder.
func (r *Recorder) Close(ctx context.Context) error {
	close(r.stop)
	select {
	case <-r.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if n, _ := r.Pending(); n > 0 {
		return errors.New("usage: rows not stored at shutdown: the database is unavailable")
	}
	return nil
}
