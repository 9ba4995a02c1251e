package workers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ragway/ragway/gateway/config"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// Process is a running plugin process as the supervisor sees it.
// *sdk.Plugin implements it; tests may substitute their own.
type Process interface {
	sdk.Backend
	sdk.Embedder
	sdk.Tokenizer
	sdk.Reranker
	// Done is closed when the process has exited.
	Done() <-chan struct{}
	// ExitError says how the process ended (nil while it runs).
	ExitError() error
	Pid() int
	// Close asks the process to exit, killing it when ctx ends.
	Close(ctx context.Context)
}

// LaunchFunc starts the plugin process of one replica of model m.
type LaunchFunc func(ctx context.Context, m config.Model, replica int) (Process, error)

// Backoff tunes restarts: the delay before restart n (counting consecutive
// failures) is Initial·2^(n-1), capped at Max; after Threshold consecutive
// failures the replica is shown as failed; a replica that served for
// ResetAfter counts as healthy again.
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	Threshold  int
	ResetAfter time.Duration
}

// DefaultBackoff is 100 ms doubling to 30 s, failed after 5 consecutive
// failures, reset after a healthy minute.
var DefaultBackoff = Backoff{Initial: 100 * time.Millisecond, Max: 30 * time.Second, Threshold: 5, ResetAfter: time.Minute}

func (b Backoff) delay(failures int) time.Duration {
	d := b.Initial
	for i := 1; i < failures && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// replica is one plugin process slot of a pool, owned by its supervise
// goroutine. Fields below the mutex line are guarded by the pool's mutex.
type replica struct {
	id   int
	pool *pool

	// guarded by pool.mu
	state       State
	proc        Process
	outstanding int
	restarts    int
	lastErr     string
	since       time.Time
	lastActive  time.Time     // last take or release, for idle_timeout
	isolation   isolation     // held or reserved for an isolated request
	wake        chan struct{} // buffered(1): start an idle replica
	// leaving: scaled down; takes no new request and stops once it has none.
	leaving bool
	// coldStarts counts its starts from idle; lastColdStart is the last one's time.
	coldStarts    int
	lastColdStart time.Duration
	// cancel stops the replica's supervisor (set when it starts).
	cancel context.CancelFunc
	// prefixes are the beginnings of the prompts its process was sent (affinity).
	prefixes prefixIndex
}

// errIdle ends serve when the replica was idle for the model's idle_timeout.
var errIdle = errors.New("idle")

// permanentError marks a start failure that retrying cannot fix (invalid
// options, a plugin lacking a capability); the replica stays failed.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// supervise runs the replica until ctx is cancelled (remove or shutdown):
// start, serve, detect a crash, back off, restart.
func (r *replica) supervise(ctx context.Context) {
	p := r.pool
	log := p.log.With("replica", r.id)
	defer func() {
		if p.leaving(r) {
			p.removeReplica(r) // scaled down: gone from the pool
		}
	}()
	failures := 0
	cold := false // woken from idle: a cold start
	for {
		started := time.Now()
		proc, err := r.start(ctx)
		if err == nil {
			took := time.Since(started)
			p.metrics.StartSeconds.WithLabelValues(p.model.Name).Observe(took.Seconds())
			if cold {
				cold = false
				p.metrics.ColdStarts.WithLabelValues(p.model.Name).Inc()
				p.metrics.ColdStartSeconds.WithLabelValues(p.model.Name).Observe(took.Seconds())
				p.mu.Lock()
				r.coldStarts++
				r.lastColdStart = took
				p.mu.Unlock()
				log.Info("cold start: an idle replica woken by a request is ready", "took", took.Round(time.Millisecond))
			}
			log.Info("replica ready", "pid", proc.Pid(), "start", time.Since(started).Round(time.Millisecond))
			readyAt := time.Now()
			err = r.serve(ctx, proc)
			if ctx.Err() != nil {
				r.stop(proc)
				return
			}
			if errors.Is(err, errIdle) {
				log.Info("replica idle: stopped", "idle_timeout", p.model.IdleTimeout.Std())
				select {
				case <-r.wake:
					cold = true
					continue
				case <-ctx.Done():
					p.setState(r, StateStopped, nil)
					return
				}
			}
			if time.Since(readyAt) >= p.backoff.ResetAfter {
				failures = 0
			}
		}
		if ctx.Err() != nil {
			p.setState(r, StateStopped, nil)
			return
		}
		if p.isRetiring() {
			// Replaced or removed: what it served is elsewhere now.
			log.Info("replica of a retired version down: not restarted", "error", err)
			p.setState(r, StateStopped, err)
			return
		}
		failures++
		var perm permanentError
		if errors.As(err, &perm) {
			log.Error("replica failed; not restarting: fix the model's config", "error", err)
			p.setState(r, StateFailed, err)
			<-ctx.Done()
			p.setState(r, StateStopped, err)
			return
		}
		delay := p.backoff.delay(failures)
		log.Error("replica down", "error", err, "failures", failures, "restart_in", delay)
		if failures >= p.backoff.Threshold {
			p.setState(r, StateFailed, err)
		} else {
			p.setState(r, StateStarting, err)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			p.setState(r, StateStopped, err)
			return
		}
		p.mu.Lock()
		r.restarts++
		p.mu.Unlock()
		p.metrics.Restarts.WithLabelValues(p.model.Name).Inc()
	}
}

// start launches the process, checks its Info and loads the model. On
// success the replica is ready and owns proc.
func (r *replica) start(ctx context.Context) (Process, error) {
	p := r.pool
	if p.state(r) != StateFailed {
		p.setState(r, StateStarting, nil)
	}
	proc, err := p.launch(ctx, p.model, r.id)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (Process, error) {
		closeProc(proc, 2*time.Second)
		return nil, err
	}
	if p.state(r) != StateFailed {
		p.setState(r, StateLoading, nil)
	}
	loadCtx, cancel := context.WithTimeout(ctx, p.loadTimeout)
	defer cancel()
	info, err := proc.Info(loadCtx)
	if err != nil {
		return fail(err)
	}
	if p.model.Embedding && !info.Has(sdk.CapabilityEmbedding) {
		return fail(permanentError{fmt.Errorf("backend %s (plugin %s) cannot serve embedding models", p.model.Backend, info.Name)})
	}
	if p.model.Rerank && !info.Has(sdk.CapabilityRerank) {
		return fail(permanentError{fmt.Errorf("backend %s (plugin %s) cannot serve rerank models", p.model.Backend, info.Name)})
	}
	mi, err := proc.Load(loadCtx, sdk.LoadRequest{Model: p.model.Name, Options: p.model.Options, Embedding: p.model.Embedding,
		Rerank: p.model.Rerank})
	if err != nil {
		// A model the backend refuses, or cannot serve in the mode asked (a rerank
		// upstream without the endpoint), does not load on a retry either.
		if sdk.IsInvalidRequest(err) || errors.Is(err, sdk.ErrUnsupported) {
			err = permanentError{err}
		}
		return fail(err)
	}
	p.mu.Lock()
	r.proc = proc
	r.prefixes.reset() // a new process: nothing cached
	r.lastActive = time.Now()
	if mi.ContextLength > 0 {
		p.contextLength = mi.ContextLength
	}
	p.maxInputTokens = mi.MaxInputTokens
	p.capabilities = info.Capabilities
	p.mu.Unlock()
	p.setState(r, StateReady, nil)
	return proc, nil
}

// serve watches a ready replica until its process dies, fails its health
// probes or ctx ends. It returns why the replica went down.
func (r *replica) serve(ctx context.Context, proc Process) error {
	p := r.pool
	interval := p.model.HealthInterval.Std()
	if interval <= 0 {
		interval = config.DefaultHealthInterval.Std()
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var idleC <-chan time.Time
	if idle := p.model.IdleTimeout.Std(); idle > 0 {
		t := time.NewTicker(max(idle/4, 10*time.Millisecond))
		defer t.Stop()
		idleC = t.C
	}
	misses := 0
	down := func(err error) error {
		p.mu.Lock()
		r.proc = nil
		p.mu.Unlock()
		// Release what the process held on the host side (connection,
		// go-plugin's socket directory); it is dead or being replaced.
		closeProc(proc, time.Second)
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-proc.Done():
			return down(proc.ExitError())
		case <-idleC:
			if p.retireIfIdle(r) {
				closeProc(proc, 5*time.Second)
				return errIdle
			}
		case <-tick.C:
			hctx, cancel := context.WithTimeout(ctx, max(interval, time.Second))
			h, err := proc.Health(hctx)
			cancel()
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case sdk.IsPluginShutdown(err):
				return down(err)
			case err == nil && !h.OK:
				err = fmt.Errorf("health probe: plugin reports not ok: %s", h.Message)
			}
			if err == nil {
				misses = 0
				continue
			}
			misses++
			if misses < 2 {
				r.pool.log.Warn("health probe failed", "replica", r.id, "error", err)
				continue
			}
			// Unresponsive: replace the process.
			return down(fmt.Errorf("health probe failed twice: %w", err))
		}
	}
}

// stop ends a replica whose pool is shutting down (the pool has drained
// in-flight requests already): stop the process.
func (r *replica) stop(proc Process) {
	p := r.pool
	p.setState(r, StateDraining, nil)
	closeProc(proc, 5*time.Second)
	p.mu.Lock()
	r.proc = nil
	p.mu.Unlock()
	p.setState(r, StateStopped, nil)
}

// closeProc asks proc to exit, killing it after grace.
func closeProc(proc Process, grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	proc.Close(ctx)
}
