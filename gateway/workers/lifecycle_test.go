package workers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/config"
	"github.com/ragway/ragway/internal/testbin"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// echoModel is a model called name on the echo plugin.
func echoModel(t *testing.T, name string, replicas int, options map[string]any) config.Model {
	m := config.DefaultModel()
	m.Name, m.Backend, m.Command, m.Replicas, m.Options = name, "echo", testbin.Echo(t), replicas, options
	return m
}

// load runs streaming chats on model (a name or alias) from n clients, one after
// another each, until stop is closed; every chat must end with its whole answer.
type load struct {
	ok, failed atomic.Int64
	// gone counts chats refused as ErrUnknownModel before any event (their model
	// was removed before they were taken).
	gone atomic.Int64
	mu   sync.Mutex
	errs []string
	wg   sync.WaitGroup
}

func runLoad(mgr *Manager, model string, n int, stop <-chan struct{}) *load {
	l := &load{}
	for i := range n {
		l.wg.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				want := fmt.Sprintf("client %d chat %d says hello", i, j)
				var b strings.Builder
				finished := false
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := mgr.Generate(ctx, model, sdk.GenerateRequest{Messages: []sdk.Message{{Role: "user", Content: want}}}, nil,
					func(e sdk.Event) error {
						b.WriteString(e.Text)
						finished = finished || e.Final()
						return nil
					})
				cancel()
				if errors.Is(err, ErrUnknownModel) && b.Len() == 0 {
					l.gone.Add(1)
					continue
				}
				if err == nil && (!finished || strings.TrimSpace(b.String()) != want) {
					err = fmt.Errorf("cut: got %q, finished %v", b.String(), finished)
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					l.errs = append(l.errs, err.Error())
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		})
	}
	return l
}

func (l *load) check(t *testing.T) {
	t.Helper()
	l.wg.Wait()
	if l.failed.Load() > 0 || l.ok.Load() == 0 {
		t.Fatalf("%d chats served, %d failed: %q", l.ok.Load(), l.failed.Load(), l.errs[:min(len(l.errs), 5)])
	}
}

// TestChangesUnderLoadFailNothing: under a steady load of streaming chats, a model
// replaced five times, scaled 1→3→1, and a second model added and removed: every
// chat gets its whole answer, and the versions' processes stop once replaced.
func TestChangesUnderLoadFailNothing(t *testing.T) {
	mgr := New(Options{Logger: quietLog()})
	t.Cleanup(func() { _ = mgr.Close(context.Background()) })
	m := echoModel(t, "chat", 1, map[string]any{"delay_ms": 5})
	m.Aliases = []string{"default"}
	if err := mgr.Add(m); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := mgr.WaitReady(ctx, "chat"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	byName, byAlias := runLoad(mgr, "chat", 6, stop), runLoad(mgr, "default", 2, stop)

	var pids []int
	for i := range 5 {
		st, _ := mgr.Model("chat")
		for _, r := range st.Replicas {
			pids = append(pids, r.Pid)
		}
		v := echoModel(t, "chat", 1, map[string]any{"delay_ms": 5 + i%2, "load_delay_ms": 100})
		v.Aliases = []string{"default"}
		if err := mgr.Replace(ctx, v); err != nil {
			t.Fatalf("replace %d: %v", i+1, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, n := range []int{3, 1} {
		if err := mgr.Scale("chat", n); err != nil {
			t.Fatal(err)
		}
		if err := mgr.WaitReady(ctx, "chat"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if st, _ := mgr.Model("chat"); n == 3 && len(st.Replicas) != 3 {
			t.Fatalf("scaled to 3: %d replicas", len(st.Replicas))
		}
	}
	if err := mgr.Add(echoModel(t, "second", 1, nil)); err != nil {
		t.Fatal(err)
	}
	if err := mgr.WaitReady(ctx, "second"); err != nil {
		t.Fatal(err)
	}
	second := runLoad(mgr, "second", 2, stop)
	time.Sleep(300 * time.Millisecond)
	if err := mgr.Remove("second"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	byName.check(t)
	t.Logf("chats served: %d by name, %d by alias, %d of the second model", byName.ok.Load(), byAlias.ok.Load(), second.ok.Load())
	byAlias.check(t)
	// The second model's clients were served until it was removed, their chats in
	// flight finished; after, it is unknown before any token, nothing else.
	second.check(t)
	if second.gone.Load() == 0 {
		t.Fatal("no chat of the removed model was refused after the removal")
	}
	// One replica after scaling down, and the old versions' processes are gone.
	deadline := time.Now().Add(10 * time.Second)
	for len(mgr.Retired()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	st, _ := mgr.Model("chat")
	if len(st.Replicas) != 1 || len(mgr.Retired()) != 0 {
		t.Fatalf("after the changes: %d replicas, %d versions still draining", len(st.Replicas), len(mgr.Retired()))
	}
	for _, pid := range pids {
		if processAlive(pid) {
			t.Fatalf("process %d of a replaced version still runs", pid)
		}
	}
}

// TestReplaceThatFailsKeepsTheOld: a new version that cannot load leaves the old one
// serving, and the error says why.
func TestReplaceThatFailsKeepsTheOld(t *testing.T) {
	mgr := echoManager(t, nil, 1)
	st, _ := mgr.Model("echo")
	pid := st.Replicas[0].Pid
	bad := echoModel(t, "echo", 1, map[string]any{"fail_load": true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := mgr.Replace(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "fail_load is set") || !strings.Contains(err.Error(), "the old one keeps serving") {
		t.Fatalf("replace with a version that cannot load: %v", err)
	}
	if st, _ := mgr.Model("echo"); st.Replicas[0].Pid != pid {
		t.Fatal("the old version's replica changed")
	}
	if got, err := chat(mgr, ctx, "still here", nil); err != nil || strings.TrimSpace(got) != "still here" {
		t.Fatalf("after the failed replace: %q, %v", got, err)
	}
	if n := len(mgr.Retired()); n != 0 {
		t.Fatalf("%d versions draining after a failed replace", n)
	}
	// A new version whose options the plugin refuses fails the same way.
	invalid := echoModel(t, "echo", 1, map[string]any{"no_such_option": 1})
	if err := mgr.Replace(ctx, invalid); err == nil || !strings.Contains(err.Error(), "no_such_option") {
		t.Fatalf("replace with invalid options: %v", err)
	}
}

// TestRemoveFinishesInFlight: a removed model's running request finishes; new ones
// are ErrUnknownModel at once.
func TestRemoveFinishesInFlight(t *testing.T) {
	mgr := echoManager(t, map[string]any{"delay_ms": 100}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	first := make(chan struct{})
	var once sync.Once
	res := make(chan error, 1)
	var got string
	go func() {
		var err error
		got, err = chat(mgr, ctx, "one two three four five", func(sdk.Event) { once.Do(func() { close(first) }) })
		res <- err
	}()
	<-first
	if err := mgr.Remove("echo"); err != nil {
		t.Fatal(err)
	}
	if _, err := chat(mgr, ctx, "too late", nil); !errors.Is(err, ErrUnknownModel) {
		t.Fatalf("a chat after the removal: %v, want ErrUnknownModel", err)
	}
	if err := <-res; err != nil || strings.TrimSpace(got) != "one two three four five" {
		t.Fatalf("the chat in flight: %q, %v", got, err)
	}
	if err := mgr.Replace(ctx, echoModel(t, "echo", 1, nil)); !errors.Is(err, ErrUnknownModel) {
		t.Fatalf("replacing a removed model: %v", err)
	}
}

// TestAliasSwitchesAtOnce: two versions side by side; an alias moves from one to the
// other at once.
func TestAliasSwitchesAtOnce(t *testing.T) {
	mgr := New(Options{Logger: quietLog()})
	t.Cleanup(func() { _ = mgr.Close(context.Background()) })
	v1 := echoModel(t, "chat@v1", 1, nil)
	v1.Aliases = []string{"chat"}
	for _, m := range []config.Model{v1, echoModel(t, "chat@v2", 1, nil)} {
		if err := mgr.Add(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := mgr.Add(echoModel(t, "chat", 1, nil)); !errors.Is(err, ErrConflict) {
		t.Fatalf("a model named like an alias: %v", err)
	}
	if err := mgr.SetAlias("chat", "chat@v2"); err != nil {
		t.Fatal(err)
	}
	if st, ok := mgr.Model("chat"); !ok || st.Name != "chat@v2" || strings.Join(st.Aliases, ",") != "chat" {
		t.Fatalf("chat resolves to %+v", st)
	}
	if st, _ := mgr.Model("chat@v1"); len(st.Aliases) != 0 {
		t.Fatalf("v1 keeps aliases %v", st.Aliases)
	}
	if err := mgr.SetAlias("chat@v1", "chat@v2"); !errors.Is(err, ErrConflict) {
		t.Fatalf("an alias named like a model: %v", err)
	}
	if err := mgr.SetAlias("chat", "nothing"); !errors.Is(err, ErrUnknownModel) {
		t.Fatalf("an alias of nothing: %v", err)
	}
}

// processAlive reports whether process pid exists (a zombie not yet reaped counts).
func processAlive(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
