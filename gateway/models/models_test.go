package models

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/config"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/workers"
	"github.com/ragway/ragway/internal/testbin"
)

// memStore is a Store in memory; failPut makes the next puts fail.
type memStore struct {
	mu      sync.Mutex
	rows    map[string]store.ModelDeployment
	changes []store.ModelChange
	failPut error
}

func newMemStore() *memStore { return &memStore{rows: map[string]store.ModelDeployment{}} }

func (s *memStore) ModelDeployments(context.Context) ([]store.ModelDeployment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.ModelDeployment
	for _, d := range s.rows {
		out = append(out, d)
	}
	return out, nil
}

func (s *memStore) PutModelDeployments(_ context.Context, _ string, ds []store.ModelDeployment, c store.ModelChange, create bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failPut != nil {
		return s.failPut
	}
	for _, d := range ds {
		if _, ok := s.rows[d.Name]; ok && create {
			return store.ErrConflict
		}
		s.rows[d.Name] = d
	}
	s.changes = append(s.changes, c)
	return nil
}

func (s *memStore) DeleteModelDeployment(_ context.Context, name string, c store.ModelChange) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.rows[name]; !ok {
		return store.ErrNotFound
	}
	delete(s.rows, name)
	s.changes = append(s.changes, c)
	return nil
}

func (s *memStore) RecordModelChange(_ context.Context, c store.ModelChange) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changes = append(s.changes, c)
	return nil
}

func (s *memStore) ModelChanges(context.Context, int) ([]store.ModelChange, error) { return nil, nil }

func (s *memStore) put(t *testing.T, m config.Model) {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.rows[m.Name] = store.ModelDeployment{Name: m.Name, Config: b}
	s.mu.Unlock()
}

func (s *memStore) recorded(action, model string) []store.ModelChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.ModelChange
	for _, c := range s.changes {
		if c.Action == action && c.Model == model {
			out = append(out, c)
		}
	}
	return out
}

func echo(name string, options map[string]any) config.Model {
	m := config.DefaultModel()
	m.Name, m.Backend, m.Options = name, "echo", options
	return m
}

func newService(t *testing.T, st *memStore) *Service {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	w := workers.New(workers.Options{PluginsDir: testbin.Dir(t), Logger: log})
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	s := New(Options{Workers: w, Store: st, Logger: log, StartTimeout: 20 * time.Second})
	if err := s.Start([]config.Model{echo("base", nil)}); err != nil {
		t.Fatal(err)
	}
	return s
}

func served(s *Service) []string {
	var names []string
	ms, _ := s.List()
	for _, m := range ms {
		names = append(names, m.Status.Name+":"+string(m.Source))
	}
	return names
}

// TestSyncDoesNotUndoAChange: a sync that starts while a change is being made here
// reads the stored models after it, not before (an old copy applied over the change
// would undo it, and nothing would put it back: the feed skips this gateway's own
// changes).
func TestSyncDoesNotUndoAChange(t *testing.T) {
	st := newMemStore()
	s := newService(t, st)
	ctx := context.Background()
	added := make(chan error, 1)
	go func() { added <- s.Add(ctx, "alice (rgw_x)", echo("fresh", map[string]any{"load_delay_ms": 300})) }()
	for s.mu.TryLock() { // until the add holds the lock (it loads for 300 ms)
		s.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(served(s), ","); got != "base:config,fresh:admin" {
		t.Fatalf("after a sync during an add: %s", got)
	}
}

// TestStoredModelsAreChecked: a stored row with a plugin command, or a host path in
// its options, is not served; one that cannot start is recorded once and not tried
// again until it changes.
func TestStoredModelsAreChecked(t *testing.T) {
	st := newMemStore()
	s := newService(t, st)
	ctx := context.Background()
	evil := echo("evil", nil)
	evil.Command = testbin.Echo(t) // a working plugin: only the check keeps it out
	st.put(t, evil)
	st.put(t, echo("pathy", map[string]any{"lib_path": "/tmp/x"}))
	st.put(t, echo("broken", map[string]any{"fail_load": true}))
	st.put(t, echo("good", nil))
	for range 3 {
		_ = s.Sync(ctx)
	}
	if got := strings.Join(served(s), ","); got != "base:config,good:admin" {
		t.Fatalf("served after syncs: %s", got)
	}
	if n := len(st.recorded(store.ModelApplied, "broken")); n != 1 {
		t.Fatalf("the model that cannot start was recorded %d times over 3 syncs, want once", n)
	}
	// Changed, it is tried again.
	st.put(t, echo("broken", nil))
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(served(s), ","); got != "base:config,broken:admin,good:admin" {
		t.Fatalf("after the stored model changed: %s", got)
	}
}

// TestChangeNotStoredIsUndone: a change whose write fails is undone here and says
// so; an add racing another gateway's is a conflict.
func TestChangeNotStoredIsUndone(t *testing.T) {
	st := newMemStore()
	s := newService(t, st)
	ctx := context.Background()
	st.failPut = store.ErrUnavailable
	err := s.Add(ctx, "alice (rgw_x)", echo("lost", nil))
	if err == nil || !strings.Contains(err.Error(), "undone here") {
		t.Fatalf("an add that cannot be stored: %v", err)
	}
	if got := strings.Join(served(s), ","); got != "base:config" {
		t.Fatalf("served after it: %s", got)
	}
	st.failPut = nil
	st.put(t, echo("taken", nil)) // another gateway stored it, not synced here yet
	if err := s.Add(ctx, "alice (rgw_x)", echo("taken", nil)); !errors.Is(err, ErrConflict) {
		t.Fatalf("an add another gateway made first: %v", err)
	}
	if got := strings.Join(served(s), ","); got != "base:config" {
		t.Fatalf("served after the conflict: %s", got)
	}
}

// TestFailedReplaceKeepsItsAliases: a replacement that cannot start changes nothing,
// aliases included.
func TestFailedReplaceKeepsItsAliases(t *testing.T) {
	st := newMemStore()
	s := newService(t, st)
	ctx := context.Background()
	m := echo("v", nil)
	m.Aliases = []string{"chat"}
	if err := s.Add(ctx, "a", m); err != nil {
		t.Fatal(err)
	}
	bad := echo("v", map[string]any{"fail_load": true}) // and without its alias
	if err := s.Replace(ctx, "a", "v", bad); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("a replacement that cannot load: %v", err)
	}
	if st, ok := s.opts.Workers.Model("chat"); !ok || st.Name != "v" {
		t.Fatalf("the alias after a failed replace: %+v, %v", st, ok)
	}
}

// TestStoredVersionThatCannotStart: a stored new version of a served model that
// cannot start here leaves the old version serving, is recorded once and not tried
// again until it changes; a replace through this gateway tries it again, and a
// model stored but not served here can be removed through it.
func TestStoredVersionThatCannotStart(t *testing.T) {
	st := newMemStore()
	s := newService(t, st)
	ctx := context.Background()
	if err := s.Add(ctx, "a", echo("v", nil)); err != nil {
		t.Fatal(err)
	}
	pid := func() int {
		m, _ := s.opts.Workers.Model("v")
		return m.Replicas[0].Pid
	}
	before := pid()
	st.put(t, echo("v", map[string]any{"fail_load": true})) // another gateway's new version
	for range 3 {
		_ = s.Sync(ctx)
	}
	if n := len(st.recorded(store.ModelApplied, "v")); n != 1 || pid() != before {
		t.Fatalf("a stored version that cannot start: recorded %d times over 3 syncs (want 1); pid %d → %d", n, before, pid())
	}
	// Fixed through this gateway: served, and the memo gone.
	if err := s.Replace(ctx, "a", "v", echo("v", map[string]any{"delay_ms": 1})); err != nil {
		t.Fatal(err)
	}
	if pid() == before {
		t.Fatal("the replacement did not start a new version")
	}
	// A stored model not served here (it cannot start on this gateway) is removed
	// through it.
	st.put(t, echo("elsewhere", map[string]any{"fail_load": true}))
	_ = s.Sync(ctx)
	if err := s.Remove(ctx, "a", "elsewhere"); err != nil {
		t.Fatalf("removing a stored model not served here: %v", err)
	}
	if rows, _ := st.ModelDeployments(ctx); len(rows) != 1 {
		t.Fatalf("%d stored models after the removal, want 1", len(rows))
	}
}

// A change of dispatch, like one of replicas or aliases, needs no new version.
func TestDispatchChangeNeedsNoNewVersion(t *testing.T) {
	a := config.Model{Name: "m", Backend: "echo", Replicas: 2}
	b := a
	b.Dispatch = config.DispatchLeastLoaded
	if !sameBut(a, b) {
		t.Fatal("a change of dispatch asks for a new version")
	}
	b.Backend = "other"
	if sameBut(a, b) {
		t.Fatal("a change of backend needs no new version")
	}
}
