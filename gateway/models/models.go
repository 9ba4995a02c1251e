package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ragway/ragway/gateway/config"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/workers"
)

// Source says where a model's entry comes from, and so what may change it.
type Source string

// Sources of models.
const (
	SourceConfig Source = "config" // the config file, at start
	SourceReload Source = "reload" // the config file, added or changed by a reload
	SourceAdmin  Source = "admin"  // the admin API (Postgres)
)

func (s Source) fromFile() bool { return s == SourceConfig || s == SourceReload }

// Errors of Service's changes; the admin API maps them to statuses.
var (
	// ErrNotFound: no model has that name (404).
	ErrNotFound = errors.New("model not found")
	// ErrConflict: the name is in use, or the model is the config file's (409).
	ErrConflict = errors.New("conflict")
	// ErrNotStarted: the model (or its new version) did not start; what served
	// before serves on (422).
	ErrNotStarted = errors.New("the model did not start")
)

// InvalidError is a model entry that fails the config file's checks (400): each
// problem a *config.FieldError naming its key.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// Store keeps the admin API's models and the record of changes (*store.Store).
type Store interface {
	ModelDeployments(ctx context.Context) ([]store.ModelDeployment, error)
	PutModelDeployments(ctx context.Context, actor string, ds []store.ModelDeployment, c store.ModelChange, create bool) error
	DeleteModelDeployment(ctx context.Context, name string, c store.ModelChange) error
	RecordModelChange(ctx context.Context, c store.ModelChange) error
	ModelChanges(ctx context.Context, limit int) ([]store.ModelChange, error)
}

// Options configures a Service.
type Options struct {
	Workers *workers.Manager
	Store   Store
	// Config reads the config file again (a reload); nil: reloading is refused.
	Config func() (*config.Config, error)
	// StartTimeout bounds how long a change waits for a new model or version to
	// start before it gives up on it. Default 5m.
	StartTimeout time.Duration
	// EmbeddingModel is rag.embedding_model as the gateway started with it: its
	// vectors are in the index, so neither it nor its model's entry may change
	// while the gateway runs (a reload that would is refused).
	EmbeddingModel string
	Logger         *slog.Logger
}

// Service manages the models of one gateway. It is safe for concurrent use; changes
// are made one at a time.
type Service struct {
	opts Options

	mu      sync.Mutex
	current map[string]entry // what the workers serve, by name
	syncing chan struct{}    // kick: Sync again
	// failed are the stored models (their entries, as JSON) that did not start here:
	// not tried again until their entry changes.
	failed map[string]string
	// shown is current as of the last change made (List reads it without waiting
	// for a change in progress).
	shown atomic.Pointer[map[string]entry]
}

// entry is a model as served: its entry and where it comes from.
type entry struct {
	Model  config.Model
	Source Source
}

// New returns a Service serving nothing yet: Start adds the config file's models.
func New(opts Options) *Service {
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 5 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Service{opts: opts, current: map[string]entry{}, syncing: make(chan struct{}, 1), failed: map[string]string{}}
	s.publish()
	return s
}

// publish makes current what List shows. s.mu must be held.
func (s *Service) publish() {
	m := maps.Clone(s.current)
	s.shown.Store(&m)
}

// Start serves the config file's models (their replicas start in the background).
func (s *Service) Start(models []config.Model) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range models {
		if err := s.opts.Workers.Add(m); err != nil {
			return err
		}
		s.current[m.Name] = entry{m, SourceConfig}
	}
	s.publish()
	return nil
}

// Change is one recorded change to the models (who, what, when, where, result).
type Change = store.ModelChange

// Model is a model as the admin API shows it: its entry, source and state.
type Model struct {
	Config config.Model
	Source Source
	Status workers.ModelStatus
}

// List returns every model served, by name, and the versions replaced or removed
// still finishing their requests.
func (s *Service) List() (models []Model, draining []workers.ModelStatus) {
	cur := *s.shown.Load()
	for _, st := range s.opts.Workers.Models() {
		e, ok := cur[st.Name]
		if !ok {
			continue
		}
		models = append(models, Model{Config: e.Model, Source: e.Source, Status: st})
	}
	return models, s.opts.Workers.Retired()
}

// Changes returns the latest limit changes, newest first.
func (s *Service) Changes(ctx context.Context, limit int) ([]Change, error) {
	return s.opts.Store.ModelChanges(ctx, limit)
}

// Add serves model m, added through the admin API by actor, on every gateway: it
// starts here first (ErrNotStarted, nothing kept, when it does not), then is stored.
func (s *Service) Add(ctx context.Context, actor string, m config.Model) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := checkAdmin(m); err != nil {
		return err
	}
	if _, ok := s.current[m.Name]; ok {
		return fmt.Errorf("%w: a model called %q exists: replace it (POST /admin/models/%s/replace)", ErrConflict, m.Name, m.Name)
	}
	next := maps.Clone(s.current)
	next[m.Name] = entry{m, SourceAdmin}
	return s.change(ctx, actor, store.ModelAdded, m.Name, m, next)
}

// errAddedElsewhere: another gateway stored a model of that name meanwhile.
var errAddedElsewhere = fmt.Errorf("%w: another gateway added a model of that name meanwhile", ErrConflict)

// Replace serves a new version of the admin API's model called name (m.Name must be
// name): it starts beside the old one, takes new requests once ready, and the old one
// finishes its requests; ErrNotStarted, and the old one serving on, when it does not
// start.
func (s *Service) Replace(ctx context.Context, actor, name string, m config.Model) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.Name != name {
		return &InvalidError{&config.FieldError{Path: "name", Msg: fmt.Sprintf("must be %q, the model replaced, got %q", name, m.Name)}}
	}
	if err := checkAdmin(m); err != nil {
		return err
	}
	if _, err := s.adminLocked(name); errors.Is(err, ErrNotFound) && s.storedLocked(ctx, name) {
		// Stored, but not served here (it did not start on this gateway): it starts.
	} else if err != nil {
		return err
	}
	delete(s.failed, name)
	next := maps.Clone(s.current)
	next[name] = entry{m, SourceAdmin}
	return s.change(ctx, actor, store.ModelReplaced, name, m, next)
}

// storedLocked reports whether a model called name is stored (an admin API model not
// served here).
func (s *Service) storedLocked(ctx context.Context, name string) bool {
	ds, err := s.opts.Store.ModelDeployments(ctx)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(ds, func(d store.ModelDeployment) bool { return d.Name == name })
}

// Scale makes the admin API's model called name run n replicas.
func (s *Service) Scale(ctx context.Context, actor, name string, n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.adminLocked(name)
	if err != nil {
		return err
	}
	m := e.Model
	m.Replicas = n
	if err := m.Validate(); err != nil {
		return &InvalidError{err}
	}
	next := maps.Clone(s.current)
	next[name] = entry{m, SourceAdmin}
	return s.change(ctx, actor, store.ModelScaled, name, m, next)
}

// Alias points alias at the admin API's model called target, at once, on every
// gateway (a model's versions side by side, switched); target "" removes it. The
// alias may belong to another admin API model (it moves) or to none.
func (s *Service) Alias(ctx context.Context, actor, alias, target string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := config.CheckModelName(alias); err != nil {
		return &InvalidError{&config.FieldError{Path: "alias", Msg: err.Error()}}
	}
	if _, ok := s.current[alias]; ok {
		return fmt.Errorf("%w: %q is a model's name, not an alias", ErrConflict, alias)
	}
	next := maps.Clone(s.current)
	for name, e := range s.current {
		if !slices.Contains(e.Model.Aliases, alias) {
			continue
		}
		if e.Source != SourceAdmin {
			return fmt.Errorf("%w: alias %q belongs to model %q of the config file: change it there and reload", ErrConflict, alias, name)
		}
		m := e.Model
		m.Aliases = slices.DeleteFunc(slices.Clone(m.Aliases), func(a string) bool { return a == alias })
		next[name] = entry{m, SourceAdmin}
	}
	if target != "" {
		e, err := s.adminLocked(target)
		if err != nil {
			return err
		}
		if slices.Contains(e.Model.Aliases, alias) {
			return nil // so it is already
		}
		m := next[target].Model
		m.Aliases = append(slices.Clone(e.Model.Aliases), alias)
		next[target] = entry{m, SourceAdmin}
	}
	what, _ := json.Marshal(map[string]string{"alias": alias, "model": target})
	return s.changeRaw(ctx, actor, store.ModelAliased, alias, what, next)
}

// Remove stops serving the admin API's model called name on every gateway: new
// requests for it are 404 at once, the ones it has finish.
func (s *Service) Remove(ctx context.Context, actor, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.adminLocked(name); errors.Is(err, ErrNotFound) && s.storedLocked(ctx, name) {
		// Stored, but not served here (it did not start on this gateway).
	} else if err != nil {
		return err
	}
	// Stored as removed first: a removal that cannot be stored changes nothing (and
	// removing here cannot fail).
	err := s.opts.Store.DeleteModelDeployment(ctx, name, store.ModelChange{Actor: actor, Action: store.ModelRemoved, Model: name, OK: true})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("model %q could not be stored as removed; it is served still: %w", name, err)
	}
	next := maps.Clone(s.current)
	delete(next, name)
	delete(s.failed, name)
	return s.apply(ctx, next)
}

// UpstreamEnvPrefix starts the names of the environment variables an admin API
// model's options may name (an upstream's API key for vllm-proxy's api_key_env).
const UpstreamEnvPrefix = "RAGWAY_UPSTREAM_"

// checkAdmin refuses what the admin API may not set, whoever stored it: a plugin
// binary of its own (an admin key would run any program on the host: plugins come
// from plugins_dir), and paths on the gateway's host in the backend's options (a
// library to load is code to run; a file named by path tells whether it exists).
// Files are named by their name in the models directory (models pull puts them
// there): an option naming a file (a key ending in _path, _file or _dir) is a bare
// name. An option naming an environment variable to read (a key ending in _env) names
// one starting with UpstreamEnvPrefix.
func checkAdmin(m config.Model) error {
	if m.Command != "" {
		return &InvalidError{&config.FieldError{Path: "command",
			Msg: "cannot be set through the admin API: install the plugin as ragway-<backend> in plugins_dir and name its backend"}}
	}
	return checkAdminOptions("options", m.Options)
}

// checkAdminOptions applies checkAdmin's rules to the options under path, nested
// maps and lists included.
func checkAdminOptions(path string, v any) error {
	switch t := v.(type) {
	case []any:
		for i, x := range t {
			if err := checkAdminOptions(fmt.Sprintf("%s[%d]", path, i), x); err != nil {
				return err
			}
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(t)) {
			p := path + "." + k
			val, _ := t[k].(string)
			switch {
			case strings.HasSuffix(k, "_env"):
				// A variable to read: only the ones meant for upstreams.
				if !strings.HasPrefix(val, UpstreamEnvPrefix) || len(val) == len(UpstreamEnvPrefix) {
					return &InvalidError{&config.FieldError{Path: p,
						Msg: fmt.Sprintf("through the admin API, a variable a backend reads must be one meant for it: its name starts with %s (set it in the gateway's environment)", UpstreamEnvPrefix)}}
				}
			case strings.HasSuffix(k, "_path") || strings.HasSuffix(k, "_file") || strings.HasSuffix(k, "_dir"):
				if k == "lib_path" || strings.HasSuffix(k, "_dir") || val == "" || strings.ContainsAny(val, `/\`) || strings.HasPrefix(val, ".") {
					return &InvalidError{&config.FieldError{Path: p,
						Msg: "paths on the gateway's host are the config file's to set: through the admin API, name a file of the models directory (ragway models pull puts it there) by its bare name, e.g. \"demo\" for demo.gguf"}}
				}
			default:
				if err := checkAdminOptions(p, t[k]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// adminLocked returns the admin API's model called name.
func (s *Service) adminLocked(name string) (entry, error) {
	e, ok := s.current[name]
	switch {
	case !ok:
		return entry{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	case e.Source != SourceAdmin:
		return entry{}, fmt.Errorf("%w: model %q comes from the config file: change it there and reload (SIGHUP, ragway reload)", ErrConflict, name)
	}
	return e, nil
}

// change applies next (the models after an admin API change of model name by
// actor) here, then stores the admin API's models that changed and records the
// change. When applying fails, what served before serves on and nothing is stored.
func (s *Service) change(ctx context.Context, actor, action, name string, m config.Model, next map[string]entry) error {
	what, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return s.changeRaw(ctx, actor, action, name, what, next)
}

func (s *Service) changeRaw(ctx context.Context, actor, action, name string, what json.RawMessage, next map[string]entry) error {
	if err := checkNames(next); err != nil {
		return err
	}
	before := maps.Clone(s.current)
	c := store.ModelChange{Actor: actor, Action: action, Model: name, Config: what}
	if err := s.apply(ctx, next); err != nil {
		c.Error = err.Error()
		s.record(ctx, c)
		// What did start (an added model, here) goes again.
		if rerr := s.apply(context.WithoutCancel(ctx), before); rerr != nil {
			s.opts.Logger.Error("undoing a failed model change", "model", name, "error", rerr)
		}
		return err
	}
	var put []store.ModelDeployment
	for n, e := range next {
		if e.Source != SourceAdmin || sameEntry(before[n], e) {
			continue
		}
		cfg, err := json.Marshal(e.Model)
		if err != nil {
			return err
		}
		put = append(put, store.ModelDeployment{Name: n, Config: cfg})
	}
	c.OK = true
	err := s.opts.Store.PutModelDeployments(ctx, actor, put, c, action == store.ModelAdded)
	if errors.Is(err, store.ErrConflict) {
		err = errAddedElsewhere
	}
	if err != nil {
		if rerr := s.apply(context.WithoutCancel(ctx), before); rerr != nil {
			s.opts.Logger.Error("undoing a model change that could not be stored", "model", name, "error", rerr)
		}
		c.OK, c.Error = false, err.Error()
		s.record(ctx, c)
		if errors.Is(err, ErrConflict) {
			return err
		}
		return fmt.Errorf("the change could not be stored, and was undone here: %w", err)
	}
	s.opts.Logger.Info("model changed", "action", action, "model", name, "by", actor)
	return nil
}

// record records a change, logging (not returning) a failure to.
func (s *Service) record(ctx context.Context, c store.ModelChange) {
	level := slog.LevelInfo
	if !c.OK {
		level = slog.LevelWarn
	}
	s.opts.Logger.Log(ctx, level, "model change", "action", c.Action, "model", c.Model, "by", c.Actor, "ok", c.OK, "error", c.Error)
	if err := s.opts.Store.RecordModelChange(context.WithoutCancel(ctx), c); err != nil {
		s.opts.Logger.Warn("recording a model change", "model", c.Model, "error", err)
	}
}

// checkNames checks that models' names and aliases are unique among them.
func checkNames(models map[string]entry) error {
	seen := map[string]string{}
	for _, n := range slices.Sorted(maps.Keys(models)) {
		for _, name := range models[n].Model.Names() {
			if other, dup := seen[name]; dup {
				return fmt.Errorf("%w: name %q is used by models %q and %q", ErrConflict, name, other, n)
			}
			seen[name] = n
		}
	}
	return nil
}

// sameEntry reports whether two entries serve the same model the same way.
func sameEntry(a, b entry) bool {
	if a.Source != b.Source {
		return false
	}
	ja, _ := json.Marshal(a.Model)
	jb, _ := json.Marshal(b.Model)
	return string(ja) == string(jb)
}

// sameBut reports whether a and b differ at most in their replicas, aliases and
// dispatch (a change that needs no new version).
func sameBut(a, b config.Model) bool {
	a.Replicas, b.Replicas = 0, 0
	a.Aliases, b.Aliases = nil, nil
	a.Dispatch, b.Dispatch = "", ""
	return sameEntry(entry{Model: a}, entry{Model: b})
}

// apply makes the workers serve next, from s.current, and sets s.current to what
// they serve: new models start (and are waited for), changed ones get a new version
// (waited for: the old one serves until it is ready) or just their replicas, aliases
// switch, gone ones are removed. A model that does not start is not served; the
// errors are joined (ErrNotStarted).
func (s *Service) apply(ctx context.Context, next map[string]entry) error {
	w := s.opts.Workers
	var errs []error
	failed := map[string]bool{} // models whose change failed: they keep what they had
	fail := func(name string, err error) {
		errs = append(errs, err)
		failed[name] = true
	}
	defer s.publish()
	startCtx, cancel := context.WithTimeout(ctx, s.opts.StartTimeout)
	defer cancel()
	// Added and changed models, without aliases: those move at once below.
	for _, name := range slices.Sorted(maps.Keys(next)) {
		e := next[name]
		cur, ok := s.current[name]
		m := e.Model
		switch {
		case !ok:
			m.Aliases = nil
			if err := w.Add(m); err != nil {
				fail(name, err)
				continue
			}
			if err := w.Started(startCtx, name); err != nil {
				_ = w.Remove(name)
				fail(name, fmt.Errorf("%w: model %q: %w", ErrNotStarted, name, err))
				continue
			}
			e.Model.Aliases = nil
			s.current[name] = e
		case sameEntry(cur, e):
		case sameBut(cur.Model, m):
			if cur.Model.Replicas != m.Replicas {
				if err := w.Scale(name, m.Replicas); err != nil {
					fail(name, err)
					continue
				}
			}
			if cur.Model.Dispatch != m.Dispatch {
				if err := w.SetDispatch(name, m.Dispatch); err != nil {
					fail(name, err)
					continue
				}
			}
			e.Model.Aliases = cur.Model.Aliases
			s.current[name] = e
		default:
			m.Aliases = cur.Model.Aliases
			if err := w.Replace(startCtx, m); err != nil {
				fail(name, fmt.Errorf("%w: model %q: %w", ErrNotStarted, name, err))
				continue
			}
			e.Model.Aliases = cur.Model.Aliases
			s.current[name] = e
		}
	}
	// Aliases: each points at its model at once (an alias moving between two
	// versions resolves to one or the other, never to nothing).
	want := map[string]string{}
	for name, e := range next {
		cur, served := s.current[name]
		if !served {
			continue
		}
		aliases := e.Model.Aliases
		if failed[name] {
			aliases = cur.Model.Aliases // a change that failed changes nothing
		}
		for _, a := range aliases {
			want[a] = name
		}
	}
	for name, cur := range s.current {
		if _, kept := next[name]; !kept {
			continue
		}
		if failed[name] {
			for _, a := range cur.Model.Aliases {
				if _, taken := want[a]; !taken {
					want[a] = name
				}
			}
		}
	}
	have := map[string]string{}
	for name, e := range s.current {
		for _, a := range e.Model.Aliases {
			have[a] = name
		}
	}
	for a, name := range want {
		if have[a] == name {
			continue
		}
		if err := w.SetAlias(a, name); err != nil {
			errs = append(errs, err)
			continue
		}
		if old, ok := have[a]; ok {
			s.setAliases(old, func(as []string) []string { return slices.DeleteFunc(as, func(x string) bool { return x == a }) })
		}
		s.setAliases(name, func(as []string) []string { return append(as, a) })
	}
	for a, name := range have {
		if _, ok := want[a]; !ok {
			_ = w.SetAlias(a, "")
			s.setAliases(name, func(as []string) []string { return slices.DeleteFunc(as, func(x string) bool { return x == a }) })
		}
	}
	// Gone models, last: their aliases have moved.
	for name := range s.current {
		if _, ok := next[name]; ok {
			continue
		}
		if err := w.Remove(name); err != nil && !errors.Is(err, workers.ErrUnknownModel) {
			errs = append(errs, err)
			continue
		}
		delete(s.current, name)
	}
	return errors.Join(errs...)
}

// setAliases changes the aliases recorded for the model called name.
func (s *Service) setAliases(name string, f func([]string) []string) {
	e, ok := s.current[name]
	if !ok {
		return
	}
	e.Model.Aliases = f(slices.Clone(e.Model.Aliases))
	slices.Sort(e.Model.Aliases)
	s.current[name] = e
}

// Sync serves the admin API's models as stored: what other gateways (or this one,
// before a restart) added, replaced, scaled, re-aliased or removed. A stored model
// that fails the checks, or whose names the config file's models use, is not served
// (and logged). A new version that does not start leaves the old one serving here.
func (s *Service) Sync(ctx context.Context) error {
	// Read under the lock: a change made here meanwhile is either in what is read,
	// or made after this sync.
	s.mu.Lock()
	defer s.mu.Unlock()
	ds, err := s.opts.Store.ModelDeployments(ctx)
	if err != nil {
		return err
	}
	next := map[string]entry{}
	stored := map[string]store.ModelDeployment{} // the stored models this gateway should serve
	taken := map[string]string{}                 // names of the config file's models
	for n, e := range s.current {
		if e.Source.fromFile() {
			next[n] = e
			for _, name := range e.Model.Names() {
				taken[name] = n
			}
		}
	}
	for _, d := range ds {
		m, err := config.ParseModelJSON(d.Config)
		if err == nil && m.Name != d.Name {
			err = fmt.Errorf("its entry is called %q", m.Name)
		}
		if err == nil {
			err = checkAdmin(m)
		}
		if err == nil {
			for _, name := range m.Names() {
				if other, ok := taken[name]; ok {
					err = fmt.Errorf("%w: name %q is used by model %q", ErrConflict, name, other)
				}
			}
		}
		if err != nil {
			s.opts.Logger.Error("a stored model is not served here", "model", d.Name, "error", err)
			continue
		}
		for _, name := range m.Names() {
			taken[name] = m.Name
		}
		stored[m.Name] = d
		if cfg := string(d.Config); s.failed[m.Name] == cfg {
			// It did not start here as stored: not again until it changes.
			if cur, ok := s.current[m.Name]; ok {
				next[m.Name] = cur
			}
			continue
		}
		next[m.Name] = entry{m, SourceAdmin}
	}
	err = s.apply(ctx, next)
	for name := range s.failed {
		if _, ok := stored[name]; !ok {
			delete(s.failed, name) // gone from the store: a new entry is tried afresh
		}
	}
	for name, d := range stored {
		want, _ := config.ParseModelJSON(d.Config)
		if cur, ok := s.current[name]; ok && cur.Source == SourceAdmin && sameBut(cur.Model, want) && cur.Model.Replicas == want.Replicas && cur.Model.Dispatch == want.Dispatch {
			delete(s.failed, name)
			continue
		}
		// Not served as stored (the new version did not start here): remembered,
		// recorded once, not tried again until the stored entry changes.
		if s.failed[name] != string(d.Config) {
			s.failed[name] = string(d.Config)
			s.record(ctx, store.ModelChange{Actor: "sync", Action: store.ModelApplied, Model: name, Config: d.Config,
				Error: fmt.Sprintf("the stored model did not start on this gateway: %v", err)})
		}
	}
	return err
}

// embeddingModelLocked returns the name of the model rag.embedding_model names (it
// may be an alias), "" if none.
func (s *Service) embeddingModelLocked() string {
	if s.opts.EmbeddingModel == "" {
		return ""
	}
	for n, e := range s.current {
		if slices.Contains(e.Model.Names(), s.opts.EmbeddingModel) {
			return n
		}
	}
	return ""
}

// Kick asks Run to Sync soon (a model deployment changed in the database).
func (s *Service) Kick() {
	select {
	case s.syncing <- struct{}{}:
	default:
	}
}

// Run syncs at once and whenever kicked, until ctx ends; a sync that fails is tried
// again after a while. Slow changes (a new version loading) never hold up the
// caller of Kick.
func (s *Service) Run(ctx context.Context) {
	s.Kick()
	retry := time.NewTimer(0)
	<-retry.C
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.syncing:
		case <-retry.C:
		}
		if err := s.Sync(ctx); err != nil && ctx.Err() == nil {
			s.opts.Logger.Warn("serving the stored models: trying again in 10s", "error", err)
			retry.Reset(10 * time.Second)
		}
	}
}

// Report says what a reload changed.
type Report struct {
	Added, Changed, Removed, Unchanged []string
}

// Reload reads the config file again and serves its models as it now says, the way
// the admin API's changes are made (new versions beside the old, removed models
// finishing their requests). A file that fails the checks changes nothing: the
// error is the one `ragway serve` would give at start (an *InvalidError). The admin
// API's models are not the file's to change: a file naming one is refused. Other
// settings take effect at the next start.
func (s *Service) Reload(ctx context.Context, actor string) (Report, error) {
	if s.opts.Config == nil {
		return Report{}, fmt.Errorf("%w: this gateway has no config file to reload", ErrConflict)
	}
	cfg, err := s.opts.Config()
	if err != nil {
		return Report{}, &InvalidError{err}
	}
	if cfg.RAG.EmbeddingModel != s.opts.EmbeddingModel {
		return Report{}, &InvalidError{&config.FieldError{Path: "rag.embedding_model",
			Msg: fmt.Sprintf("cannot change while the gateway runs (the index holds %q's vectors): restart the gateway", s.opts.EmbeddingModel)}}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := map[string]entry{}
	for n, e := range s.current {
		if e.Source == SourceAdmin {
			next[n] = e
		}
	}
	if emb := s.embeddingModelLocked(); emb != "" {
		cur := s.current[emb]
		m, ok := cfg.Model(emb)
		if !ok || m.Name != emb || !sameBut(cur.Model, m) || m.Replicas != cur.Model.Replicas {
			return Report{}, &InvalidError{&config.FieldError{Path: "models",
				Msg: fmt.Sprintf("model %q (rag.embedding_model) cannot be removed or changed while the gateway runs (the index holds its vectors): restart the gateway", emb)}}
		}
	}
	var rep Report
	for i, m := range cfg.Models {
		if _, ok := next[m.Name]; ok {
			return Report{}, &InvalidError{&config.FieldError{Path: fmt.Sprintf("models[%d].name", i),
				Msg: fmt.Sprintf("%q is a model of the admin API: remove it there first, or name this one otherwise", m.Name)}}
		}
		cur, ok := s.current[m.Name]
		switch {
		case !ok:
			rep.Added = append(rep.Added, m.Name)
			next[m.Name] = entry{m, SourceReload}
		case sameEntry(entry{Model: cur.Model}, entry{Model: m}):
			rep.Unchanged = append(rep.Unchanged, m.Name)
			next[m.Name] = cur
		default:
			rep.Changed = append(rep.Changed, m.Name)
			next[m.Name] = entry{m, SourceReload}
		}
	}
	for n, e := range s.current {
		if _, ok := next[n]; !ok && e.Source.fromFile() {
			rep.Removed = append(rep.Removed, n)
		}
	}
	if err := checkNames(next); err != nil {
		return Report{}, &InvalidError{err}
	}
	err = s.apply(ctx, next)
	for _, list := range [][]string{rep.Added, rep.Changed, rep.Removed} {
		for _, n := range list {
			c := store.ModelChange{Actor: actor, Action: store.ModelReloaded, Model: n, OK: true}
			if e, ok := next[n]; ok {
				c.Config, _ = json.Marshal(e.Model)
			}
			if err != nil && strings.Contains(err.Error(), fmt.Sprintf("%q", n)) {
				c.OK, c.Error = false, err.Error()
			}
			s.record(ctx, c)
		}
	}
	return rep, err
}
