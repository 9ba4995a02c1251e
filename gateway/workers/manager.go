package workers

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ragway/ragway/gateway/config"
	"github.com/ragway/ragway/gateway/metrics"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// Options configures a Manager.
type Options struct {
	// Launch starts plugin processes. Default: PluginLauncher(PluginsDir, Logger).
	Launch LaunchFunc
	// PluginsDir is where ragway-<backend> binaries live (for the default launcher).
	PluginsDir string
	// QueueTimeout bounds the wait for a free replica. Default 30s.
	QueueTimeout time.Duration
	// LoadTimeout bounds a replica's Info+Load. Default 5m.
	LoadTimeout time.Duration
	// Backoff tunes restarts. Default DefaultBackoff.
	Backoff Backoff
	// PoisonWindow is how long a request that made the backend crash twice
	// is refused at once when sent again. Default DefaultPoisonWindow.
	PoisonWindow time.Duration
	// PoisonMemory bounds how many such requests each model remembers (the
	// least recently seen are forgotten first). Default DefaultPoisonMemory.
	PoisonMemory int
	Logger       *slog.Logger
	Metrics      *metrics.Metrics
	// now is the clock of the poison quarantine (tests); nil: time.Now.
	now func() time.Time
}

// Manager owns every model's pool. It is safe for concurrent use.
type Manager struct {
	opts   Options
	poison *prometheus.CounterVec // ragway_poison_requests_total

	mu      sync.RWMutex
	pools   map[string]*pool // by name
	aliases map[string]string
	closed  bool
}

// New returns a Manager with no models; add them with Add.
func New(opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	if opts.Launch == nil {
		opts.Launch = PluginLauncher(opts.PluginsDir, opts.Logger)
	}
	if opts.QueueTimeout <= 0 {
		opts.QueueTimeout = 30 * time.Second
	}
	if opts.LoadTimeout <= 0 {
		opts.LoadTimeout = 5 * time.Minute
	}
	if opts.Backoff == (Backoff{}) {
		opts.Backoff = DefaultBackoff
	}
	if opts.PoisonWindow <= 0 {
		opts.PoisonWindow = DefaultPoisonWindow
	}
	if opts.PoisonMemory <= 0 {
		opts.PoisonMemory = DefaultPoisonMemory
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	return &Manager{opts: opts, poison: poisonMetrics(opts.Metrics), pools: map[string]*pool{}, aliases: map[string]string{}}
}

// PluginLauncher launches ragway-<backend> from pluginsDir (or the model's
// command) as a go-plugin subprocess, logging through log.
func PluginLauncher(pluginsDir string, log *slog.Logger) LaunchFunc {
	return func(ctx context.Context, m config.Model, replica int) (Process, error) {
		p, err := sdk.Launch(ctx, sdk.LaunchConfig{
			Path:   m.PluginPath(pluginsDir),
			SHA256: m.SHA256,
			Logger: log.With("model", m.Name, "replica", replica),
		})
		if err != nil {
			return nil, err
		}
		return p, nil
	}
}

// Add starts serving model m: its replicas start in the background.
func (m *Manager) Add(model config.Model) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrStopping
	}
	for _, n := range append([]string{model.Name}, model.Aliases...) {
		if _, ok := m.resolveLocked(n); ok {
			return fmt.Errorf("model %q: name %q is already in use", model.Name, n)
		}
	}
	p := newPool(model, m.opts.Launch, m.opts.Backoff, m.opts.LoadTimeout, m.opts.Logger, m.opts.Metrics)
	p.quarantine = newQuarantine(m.opts.PoisonWindow, m.opts.PoisonMemory, m.opts.now)
	m.pools[model.Name] = p
	for _, a := range model.Aliases {
		m.aliases[a] = model.Name
	}
	p.start()
	return nil
}

func (m *Manager) resolveLocked(name string) (*pool, bool) {
	if p, ok := m.pools[name]; ok {
		return p, true
	}
	if n, ok := m.aliases[name]; ok {
		return m.pools[n], true
	}
	return nil, false
}

func (m *Manager) pool(name string) (*pool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrStopping
	}
	p, ok := m.resolveLocked(name)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownModel, name)
	}
	return p, nil
}

// Generate runs req on a replica of model (a name or alias), calling emit
// for each event. A request whose replica dies before any event was emitted
// is retried once on another (or the restarted) replica within ctx; a request
// during which two replicas died is a poison request (see ErrPoisonRequest).
//
// adm, when not nil, is the caller's part once a replica took the request: its Admit
// runs once, when a replica has taken the request and before the request is sent
// to it. A request refused before that (the model unavailable, its queue full or
// timed out, a quarantined poison request) never runs Admit. Admit may change the
// request (a stored turn fits its history there); its error ends Generate with that
// error, the replica released. A retry after a replica's death does not run Admit
// again.
func (m *Manager) Generate(ctx context.Context, model string, req sdk.GenerateRequest, adm *Admission, emit func(sdk.Event) error) error {
	p, err := m.pool(model)
	if err != nil {
		return err
	}
	if p.model.Embedding {
		return sdk.InvalidRequestf("model %q is an embedding model", model)
	}
	// The poison key is the request as the caller gave it, before Admit changed it,
	// with what tells it apart beyond its body (Admission.Key): the same request asked
	// again is recognised before anything is admitted, and no other request shares
	// its key.
	canon := struct {
		Req sdk.GenerateRequest
		Key string `json:",omitempty"`
	}{Req: req}
	canon.Req.RequestID = "" // the same request sent again has another id
	admitted := adm == nil || adm.Admit == nil
	if adm != nil {
		canon.Key = adm.Key
	}
	return m.withRetry(ctx, p, func() requestKey { return keyOf("generate", canon) }, func(proc Process, sent *bool) error {
		if !admitted {
			if err := adm.Admit(&req); err != nil {
				return err
			}
			admitted = true
		}
		return proc.Generate(ctx, req, func(e sdk.Event) error {
			// Only what the caller can have passed on makes a retry
			// impossible; an empty delta does not.
			if e.Text != "" || e.Final() {
				*sent = true
			}
			return emit(e)
		})
	})
}

// Admission is a caller's part in Generate once a replica took its request.
type Admission struct {
	// Key tells the request apart beyond its body, for the poison quarantine: what
	// Admit adds to it (a stored turn's user and conversation). Two requests with the
	// same body and the same Key are the same request.
	Key string
	// Admit runs once a replica took the request, before it is sent; it may change
	// the request, and its error ends Generate.
	Admit func(req *sdk.GenerateRequest) error
}

// Embed runs req on a replica of an embedding model, with Generate's retry
// and poison rules.
func (m *Manager) Embed(ctx context.Context, model string, req sdk.EmbedRequest) (sdk.EmbedResponse, error) {
	p, err := m.pool(model)
	if err != nil {
		return sdk.EmbedResponse{}, err
	}
	if !p.model.Embedding {
		return sdk.EmbedResponse{}, sdk.InvalidRequestf("model %q is not an embedding model", model)
	}
	var resp sdk.EmbedResponse
	err = m.withRetry(ctx, p, func() requestKey { return keyOf("embed", req) }, func(proc Process, _ *bool) error {
		var err error
		resp, err = proc.Embed(ctx, req)
		return err
	})
	return resp, err
}

// Tokenize counts the tokens of each input of req with model's tokenizer,
// with Generate's retry and poison rules. A plugin that cannot tokenize
// answers sdk.ErrUnsupported.
func (m *Manager) Tokenize(ctx context.Context, model string, req sdk.TokenizeRequest) (sdk.TokenizeResponse, error) {
	p, err := m.pool(model)
	if err != nil {
		return sdk.TokenizeResponse{}, err
	}
	var resp sdk.TokenizeResponse
	err = m.withRetry(ctx, p, func() requestKey { return keyOf("tokenize", req) }, func(proc Process, _ *bool) error {
		var err error
		resp, err = proc.Tokenize(ctx, req)
		return err
	})
	return resp, err
}

// withRetry acquires a replica and runs call on it. When the replica's
// process died (sdk.ErrPluginShutdown) before call produced anything, it
// runs call once more on another replica. A request during which two replicas
// died is not run again: it is answered with a *PoisonError and its key is
// quarantined, so that the same request is refused at once for the poison
// window. Only the key's short hash is logged, never the request. keyOf computes the
// request's key; it runs only when a key is needed (something is quarantined, or a
// replica died), not on every request's path.
func (m *Manager) withRetry(ctx context.Context, p *pool, keyOf func() requestKey, call func(Process, *bool) error) error {
	var (
		key    requestKey
		hasKey bool
	)
	keyNow := func() requestKey {
		if !hasKey {
			key, hasKey = keyOf(), true
		}
		return key
	}
	if p.quarantine.len() > 0 && p.quarantine.has(keyNow()) {
		m.poison.WithLabelValues(p.model.Name, "refused").Inc()
		m.opts.Logger.Warn("poison request refused: it made the backend crash twice recently", "model", p.model.Name, "request", key.String())
		return &PoisonError{Model: p.model.Name, Hash: key.String(), Quarantined: true}
	}
	deaths := 0
	for {
		// After a death the request runs alone on its replica: should it
		// kill that one too, the death is its own and no other request dies
		// with it.
		g, err := p.acquire(ctx, m.opts.QueueTimeout, deaths > 0)
		if err != nil {
			return err
		}
		sent := false
		err = func() error {
			defer p.release(g)
			return call(g.proc, &sent)
		}()
		if err == nil || ctx.Err() != nil || !sdk.IsPluginShutdown(err) {
			return err
		}
		deaths++
		k := keyNow()
		if deaths >= 2 {
			p.quarantine.add(k)
			m.poison.WithLabelValues(p.model.Name, "crashed").Inc()
			m.opts.Logger.Error("poison request: two replicas died while serving it; not retried, refused for the poison window",
				"model", p.model.Name, "replica", g.r.id, "request", k.String(), "window", m.opts.PoisonWindow)
			return &PoisonError{Model: p.model.Name, Hash: k.String()}
		}
		if sent {
			return err // the caller has passed events on: a retry would repeat them
		}
		// The retry cannot pick the dead process again: the SDK returns
		// ErrPluginShutdown once the exit is observed, and dispatch skips
		// processes whose Done is closed.
		m.opts.Metrics.Retries.WithLabelValues(p.model.Name).Inc()
		m.opts.Logger.Warn("replica died before the first event; retrying once", "model", p.model.Name, "replica", g.r.id, "request", k.String())
	}
}

// Models returns the status of every model, by name.
func (m *Manager) Models() []ModelStatus {
	m.mu.RLock()
	pools := make([]*pool, 0, len(m.pools))
	for _, p := range m.pools {
		pools = append(pools, p)
	}
	m.mu.RUnlock()
	out := make([]ModelStatus, 0, len(pools))
	for _, p := range pools {
		out = append(out, p.status())
	}
	slices.SortFunc(out, func(a, b ModelStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Model returns the status of the model with that name or alias.
func (m *Manager) Model(name string) (ModelStatus, bool) {
	m.mu.RLock()
	p, ok := m.resolveLocked(name)
	m.mu.RUnlock()
	if !ok {
		return ModelStatus{}, false
	}
	return p.status(), true
}

// WaitReady blocks until every replica of model is serving, or ctx ends.
func (m *Manager) WaitReady(ctx context.Context, model string) error {
	p, err := m.pool(model)
	if err != nil {
		return err
	}
	for {
		p.mu.Lock()
		ready := true
		for _, r := range p.replicas {
			ready = ready && r.serving()
		}
		ch := p.changed
		p.mu.Unlock()
		if ready {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("model %q not ready: %w", model, context.Cause(ctx))
		}
	}
}

// Close stops accepting requests, lets in-flight ones finish until ctx
// ends, then stops every plugin process. It returns when all are gone.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	pools := make([]*pool, 0, len(m.pools))
	for _, p := range m.pools {
		pools = append(pools, p)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	var cut atomic.Int32
	for _, p := range pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !p.shutdown(ctx) {
				cut.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := cut.Load(); n > 0 {
		return fmt.Errorf("shutdown grace period ended with requests of %d model(s) still in flight", n)
	}
	return nil
}
