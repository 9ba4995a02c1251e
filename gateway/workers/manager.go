package workers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
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
	// Launch starts plugin processes. Default: PluginLauncher(PluginsDir,
	// ModelsDir, Logger).
	Launch LaunchFunc
	// PluginsDir is where ragway-<backend> binaries live (for the default launcher).
	PluginsDir string
	// ModelsDir is the models directory, told to plugins as RAGWAY_MODELS_DIR (for
	// the default launcher; "": not told).
	ModelsDir string
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
	// DrainTimeout bounds how long a replaced or removed model's requests may run
	// on after the change; its processes stop then. Default 10m.
	DrainTimeout time.Duration
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
	// retired are the pools replaced or removed, draining.
	retired map[*pool]struct{}
	drains  sync.WaitGroup
	// starting are the new versions Replace is starting (Close stops them too).
	starting map[*pool]struct{}
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
		opts.Launch = PluginLauncher(opts.PluginsDir, opts.ModelsDir, opts.Logger)
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
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 10 * time.Minute
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	return &Manager{opts: opts, poison: poisonMetrics(opts.Metrics), pools: map[string]*pool{}, aliases: map[string]string{},
		retired: map[*pool]struct{}{}, starting: map[*pool]struct{}{}}
}

// HostSecrets are the gateway's environment variables its plugins do not get: a
// backend may read a variable an option names (vllm-proxy's api_key_env), and these
// are the gateway's own secrets, not an upstream's.
var HostSecrets = []string{"DATABASE_URL", "RAGWAY_DATABASE_URL", "RAGWAY_VECTOR_STORE_API_KEY", "RAGWAY_SERVER_METRICS_TOKEN",
	"RAGWAY_ANNOUNCE_KEY_FILE", "HF_TOKEN", "PGPASSWORD", "PGPASSFILE"}

// PluginLauncher launches ragway-<backend> from pluginsDir (or the model's
// command) as a go-plugin subprocess, logging through log. A plugin learns the models
// directory (modelsDir, made absolute) from RAGWAY_MODELS_DIR.
func PluginLauncher(pluginsDir, modelsDir string, log *slog.Logger) LaunchFunc {
	var env []string
	if modelsDir != "" {
		if abs, err := filepath.Abs(modelsDir); err == nil {
			env = []string{sdk.EnvModelsDir + "=" + abs}
		}
	}
	return func(ctx context.Context, m config.Model, replica int) (Process, error) {
		p, err := sdk.Launch(ctx, sdk.LaunchConfig{
			Path:    m.PluginPath(pluginsDir),
			Env:     env,
			DropEnv: HostSecrets,
			SHA256:  m.SHA256,
			Logger:  log.With("model", m.Name, "replica", replica),
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
	if err := m.namesFreeLocked(model, nil); err != nil {
		return err
	}
	p := m.newPool(model)
	m.pools[model.Name] = p
	for _, a := range model.Aliases {
		m.aliases[a] = model.Name
	}
	p.setNamed()
	p.start()
	return nil
}

func (m *Manager) newPool(model config.Model) *pool {
	p := newPool(model, m.opts.Launch, m.opts.Backoff, m.opts.LoadTimeout, m.opts.Logger, m.opts.Metrics)
	p.quarantine = newQuarantine(m.opts.PoisonWindow, m.opts.PoisonMemory, m.opts.now)
	return p
}

// namesFreeLocked checks that model's name and aliases name no other model than
// replacing (nil: none).
func (m *Manager) namesFreeLocked(model config.Model, replacing *pool) error {
	for _, n := range model.Names() {
		if p, ok := m.resolveLocked(n); ok && p != replacing {
			return fmt.Errorf("%w: model %q: name %q is already in use by model %q", ErrConflict, model.Name, n, p.model.Name)
		}
	}
	return nil
}

// Replace serves a new version of the model called model.Name without a failed
// request: the new version's replicas start and load while the old ones serve; once
// every new replica is ready, new requests go to them (aliases switch with the name,
// at once), requests queued for the old version move over, and the old replicas
// finish what they run (up to Options.DrainTimeout), then stop. When a new replica
// cannot start or load, or the new version is not ready when ctx ends, the new
// version is stopped, the old one keeps serving, and the error says why.
func (m *Manager) Replace(ctx context.Context, model config.Model) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrStopping
	}
	old, ok := m.pools[model.Name]
	if !ok {
		m.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrUnknownModel, model.Name)
	}
	if err := m.namesFreeLocked(model, old); err != nil {
		m.mu.Unlock()
		return err
	}
	np := m.newPool(model)
	m.starting[np] = struct{}{}
	np.start()
	m.mu.Unlock()

	err := np.waitServing(ctx)
	m.mu.Lock()
	delete(m.starting, np)
	m.mu.Unlock()
	if err != nil {
		np.shutdown(context.Background())
		np.forget()
		return fmt.Errorf("model %q: the new version did not start, the old one keeps serving: %w", model.Name, err)
	}
	m.mu.Lock()
	if m.closed || m.pools[model.Name] != old {
		m.mu.Unlock()
		np.shutdown(context.Background())
		np.forget()
		return fmt.Errorf("%w: model %q changed while its new version started", ErrConflict, model.Name)
	}
	m.pools[model.Name] = np
	np.setNamed()
	for a, n := range m.aliases {
		if n == model.Name {
			delete(m.aliases, a)
		}
	}
	for _, a := range model.Aliases {
		m.aliases[a] = model.Name
	}
	m.retireLocked(old, true)
	m.mu.Unlock()
	return nil
}

// Remove stops serving the model called name: new requests for it (and its aliases)
// are ErrUnknownModel at once; the requests it has, running or queued, finish (up to
// Options.DrainTimeout), then its processes stop.
func (m *Manager) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.pools[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownModel, name)
	}
	delete(m.pools, name)
	for a, n := range m.aliases {
		if n == name {
			delete(m.aliases, a)
		}
	}
	m.retireLocked(p, false)
	return nil
}

// retireLocked retires p (see pool.retire) and drains it in the background.
func (m *Manager) retireLocked(p *pool, redirect bool) {
	p.retire(redirect)
	m.retired[p] = struct{}{}
	m.drains.Add(1)
	go func() {
		defer m.drains.Done()
		ctx, cancel := context.WithTimeout(context.Background(), m.opts.DrainTimeout)
		defer cancel()
		if !p.drain(ctx) {
			m.opts.Logger.Warn("a replaced or removed model's requests were still running at the end of the drain timeout: stopped",
				"model", p.model.Name, "drain_timeout", m.opts.DrainTimeout)
		}
		p.forget()
		m.mu.Lock()
		delete(m.retired, p)
		m.mu.Unlock()
	}()
}

// Scale makes the model called name (or aliased so) run n ≥ 1 replicas: new ones
// start at once; the ones to go take no new request and stop once their requests are
// done.
func (m *Manager) Scale(name string, n int) error {
	if n < 1 {
		return fmt.Errorf("replicas must be >= 1, got %d (to scale to zero when idle, set idle_timeout)", n)
	}
	p, err := m.pool(name)
	if err != nil {
		return err
	}
	p.scale(n)
	return nil
}

// SetAlias points alias at the model called target, at once: requests resolve it to
// the new target from then on (a model's versions side by side, switched). An empty
// target removes the alias.
func (m *Manager) SetAlias(alias, target string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.pools[alias]; ok {
		return fmt.Errorf("%w: %q is a model's name, not an alias", ErrConflict, alias)
	}
	if target == "" {
		delete(m.aliases, alias)
		return nil
	}
	if _, ok := m.pools[target]; !ok {
		return fmt.Errorf("%w: %q", ErrUnknownModel, target)
	}
	m.aliases[alias] = target
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
	check := func(p *pool) error {
		switch {
		case p.model.Embedding:
			return sdk.InvalidRequestf("model %q is an embedding model", model)
		case p.model.Rerank:
			return sdk.InvalidRequestf("model %q is a rerank model", model)
		}
		return nil
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
	conversation := ""
	if adm != nil {
		conversation = adm.Conversation
	}
	rt := &routing{prefixes: func() []prefix { return prefixesOf(req, conversation) }}
	return m.withRetry(ctx, model, check, rt, func() requestKey { return keyOf("generate", canon) }, func(proc Process, sent *bool) error {
		if !admitted {
			if err := adm.Admit(&req); err != nil {
				return err
			}
			admitted = true
			if conversation == "" && adm.Conversation != "" {
				// A conversation Admit began: its next turn comes back here.
				rt.late = []prefix{conversationPrefix(adm.Conversation)}
			}
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

// routing is what a request tells the dispatch of its prompt (prefix affinity).
type routing struct {
	// prefixes computes its beginnings, once (beginnings), when its pool dispatches
	// by them.
	prefixes func() []prefix
	computed []prefix
	done     bool
	// late are beginnings known once a replica took it (a conversation it began),
	// remembered for that replica.
	late []prefix
}

// beginnings are the request's beginnings, computed the first time (a retry on
// another replica does not hash the prompt again).
func (rt *routing) beginnings() []prefix {
	if !rt.done {
		rt.computed, rt.done = rt.prefixes(), true
	}
	return rt.computed
}

// SetDispatch changes how the model called name picks among its replicas
// (config.Model.Dispatch), at once.
func (m *Manager) SetDispatch(name, dispatch string) error {
	p, err := m.pool(name)
	if err != nil {
		return err
	}
	p.setDispatch(dispatch)
	return nil
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
	// Conversation names the stored conversation whose history Admit adds ("" for
	// none): its turns go to the replica that served its last one, when that one is
	// not too busy (prefix affinity). Admit sets it for a conversation it begins.
	Conversation string
}

// Embed runs req on a replica of an embedding model, with Generate's retry
// and poison rules.
func (m *Manager) Embed(ctx context.Context, model string, req sdk.EmbedRequest) (sdk.EmbedResponse, error) {
	check := func(p *pool) error {
		if !p.model.Embedding {
			return sdk.InvalidRequestf("model %q is not an embedding model", model)
		}
		return nil
	}
	var resp sdk.EmbedResponse
	err := m.withRetry(ctx, model, check, nil, func() requestKey { return keyOf("embed", req) }, func(proc Process, _ *bool) error {
		var err error
		resp, err = proc.Embed(ctx, req)
		return err
	})
	return resp, err
}

// Rerank scores req's documents against its query on a replica of a rerank
// model, with Generate's retry and poison rules.
func (m *Manager) Rerank(ctx context.Context, model string, req sdk.RerankRequest) (sdk.RerankResponse, error) {
	check := func(p *pool) error {
		if !p.model.Rerank {
			return sdk.InvalidRequestf("model %q is not a rerank model", model)
		}
		return nil
	}
	var resp sdk.RerankResponse
	err := m.withRetry(ctx, model, check, nil, func() requestKey { return keyOf("rerank", req) }, func(proc Process, _ *bool) error {
		var err error
		resp, err = proc.Rerank(ctx, req)
		return err
	})
	return resp, err
}

// Tokenize counts the tokens of each input of req with model's tokenizer,
// with Generate's retry and poison rules. A plugin that cannot tokenize
// answers sdk.ErrUnsupported.
func (m *Manager) Tokenize(ctx context.Context, model string, req sdk.TokenizeRequest) (sdk.TokenizeResponse, error) {
	var resp sdk.TokenizeResponse
	err := m.withRetry(ctx, model, nil, nil, func() requestKey { return keyOf("tokenize", req) }, func(proc Process, _ *bool) error {
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
//
// The model's name is resolved to its pool (check, when not nil, may refuse it) and
// resolved again when that pool was replaced or removed before the request was
// taken: the request goes to the new version, or is ErrUnknownModel.
func (m *Manager) withRetry(ctx context.Context, model string, check func(*pool) error, rt *routing, keyOf func() requestKey, call func(Process, *bool) error) error {
	// deaths counts the replicas that died serving the request, over redirects: a
	// request retried after a death runs alone wherever it goes.
	deaths := 0
	for redirect := range maxRedirects {
		p, err := m.pool(model)
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(p); err != nil {
				return err
			}
		}
		// A request sent back by a version replaced while it waited was accepted
		// already: the new version's queue takes it whatever its max_queue.
		err = m.runOn(ctx, p, &deaths, redirect > 0, rt, keyOf, call)
		if !errors.Is(err, errRetired) {
			return err
		}
	}
	return fmt.Errorf("model %q: %w: it changed %d times while the request waited", model, ErrUnavailable, maxRedirects)
}

// maxRedirects bounds how often a request follows its model to a new version.
const maxRedirects = 8

// runOn is withRetry on one pool.
func (m *Manager) runOn(ctx context.Context, p *pool, deaths *int, redirected bool, rt *routing, keyOf func() requestKey, call func(Process, *bool) error) error {
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
	for {
		// After a death the request runs alone on its replica: should it
		// kill that one too, the death is its own and no other request dies
		// with it.
		var ps []prefix
		if rt != nil && p.affine() {
			ps = rt.beginnings()
		}
		g, err := p.acquire(ctx, m.opts.QueueTimeout, *deaths > 0, redirected, ps)
		if err != nil {
			return err
		}
		sent := false
		err = func() error {
			defer p.release(g)
			return call(g.proc, &sent)
		}()
		if rt != nil && len(rt.late) > 0 {
			p.remember(g.r, g.proc, rt.late)
		}
		if err == nil || ctx.Err() != nil || !sdk.IsPluginShutdown(err) {
			return err
		}
		*deaths++
		k := keyNow()
		if *deaths >= 2 {
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
	aliases := m.aliasesByModel()
	out := make([]ModelStatus, 0, len(pools))
	for _, p := range pools {
		st := p.status()
		st.Aliases = aliases[st.Name]
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b ModelStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// aliasesByModel returns each model's aliases, sorted.
func (m *Manager) aliasesByModel() map[string][]string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := map[string][]string{}
	for a, n := range m.aliases {
		out[n] = append(out[n], a)
	}
	for _, as := range out {
		slices.Sort(as)
	}
	return out
}

// Retired returns the status of the versions replaced or removed that are still
// finishing their requests (their replicas draining), by name.
func (m *Manager) Retired() []ModelStatus {
	m.mu.RLock()
	out := make([]ModelStatus, 0, len(m.retired))
	for p := range m.retired {
		out = append(out, p.status())
	}
	m.mu.RUnlock()
	slices.SortFunc(out, func(a, b ModelStatus) int { return strings.Compare(a.Name, b.Name) })
	for i := range out {
		out[i].Aliases = nil
	}
	return out
}

// Model returns the status of the model with that name or alias.
func (m *Manager) Model(name string) (ModelStatus, bool) {
	// Every request resolves its model here: the model's own aliases only, under the
	// lock taken anyway.
	m.mu.RLock()
	p, ok := m.resolveLocked(name)
	var aliases []string
	if ok {
		for a, n := range m.aliases {
			if n == p.model.Name {
				aliases = append(aliases, a)
			}
		}
	}
	m.mu.RUnlock()
	if !ok {
		return ModelStatus{}, false
	}
	slices.Sort(aliases)
	st := p.status()
	st.Aliases = aliases
	return st, true
}

// Started waits until every replica of the model called name serves. It fails with
// the error of the first replica that could not start or load, or when ctx ends.
func (m *Manager) Started(ctx context.Context, name string) error {
	p, err := m.pool(name)
	if err != nil {
		return err
	}
	return p.waitServing(ctx)
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
	pools := make([]*pool, 0, len(m.pools)+len(m.retired))
	for _, p := range m.pools {
		pools = append(pools, p)
	}
	for p := range m.retired {
		pools = append(pools, p) // draining: shut down with the rest
	}
	for p := range m.starting {
		pools = append(pools, p) // a new version Replace starts: it will not serve
	}
	m.mu.Unlock()
	defer m.drains.Wait() // the drains end with their pools
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
