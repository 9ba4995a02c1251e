package workers

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/ragway/ragway/gateway/config"
	"github.com/ragway/ragway/gateway/metrics"
	"github.com/ragway/ragway/internal/testbin"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// fakeProc is an in-process Process whose generations block until released.
type fakeProc struct {
	pid     int
	sick    *atomic.Bool // Health fails while set
	done    chan struct{}
	release chan struct{} // a Generate returns when this is closed
	started chan int      // pid sent when a Generate starts
}

func (f *fakeProc) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "fake", APIVersion: sdk.APIVersion, Capabilities: []sdk.Capability{sdk.CapabilityChat}}, nil
}
func (f *fakeProc) Load(context.Context, sdk.LoadRequest) (sdk.ModelInfo, error) {
	return sdk.ModelInfo{ContextLength: 128}, nil
}
func (f *fakeProc) Generate(ctx context.Context, _ sdk.GenerateRequest, emit func(sdk.Event) error) error {
	f.started <- f.pid
	select {
	case <-f.release:
	case <-ctx.Done():
		return ctx.Err()
	case <-f.done:
		return sdk.ErrPluginShutdown
	}
	return emit(sdk.Event{Text: "ok", FinishReason: sdk.FinishStop, Usage: &sdk.Usage{}})
}
func (f *fakeProc) Embed(context.Context, sdk.EmbedRequest) (sdk.EmbedResponse, error) {
	return sdk.EmbedResponse{}, sdk.ErrUnsupported
}
func (f *fakeProc) Tokenize(context.Context, sdk.TokenizeRequest) (sdk.TokenizeResponse, error) {
	return sdk.TokenizeResponse{}, sdk.ErrUnsupported
}
func (f *fakeProc) Rerank(context.Context, sdk.RerankRequest) (sdk.RerankResponse, error) {
	return sdk.RerankResponse{}, sdk.ErrUnsupported
}
func (f *fakeProc) Health(context.Context) (sdk.Health, error) {
	if f.sick != nil && f.sick.Load() {
		return sdk.Health{}, errors.New("probe timed out")
	}
	return sdk.Health{OK: true}, nil
}
func (f *fakeProc) Done() <-chan struct{} { return f.done }
func (f *fakeProc) ExitError() error      { return sdk.ErrPluginShutdown }
func (f *fakeProc) Pid() int              { return f.pid }
func (f *fakeProc) Close(context.Context) {
	select {
	case <-f.done:
	default:
		close(f.done)
	}
}

func quietLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func fakeModel(replicas, conc, queue int) config.Model {
	m := config.DefaultModel()
	m.Name, m.Backend, m.Replicas, m.MaxConcurrency, m.MaxQueue = "m", "fake", replicas, conc, queue
	return m
}

// newFakeManager runs model m on fake processes sharing release and started.
func newFakeManager(t *testing.T, m config.Model, queueTimeout time.Duration) (*Manager, chan struct{}, chan int) {
	t.Helper()
	release, started := make(chan struct{}), make(chan int, 64)
	var mu sync.Mutex
	pid := 100
	mgr := New(Options{
		Launch: func(context.Context, config.Model, int) (Process, error) {
			mu.Lock()
			defer mu.Unlock()
			pid++
			return &fakeProc{pid: pid, done: make(chan struct{}), release: release, started: started}, nil
		},
		QueueTimeout: queueTimeout, Logger: quietLog(), Metrics: metrics.New(),
	})
	if err := mgr.Add(m); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = mgr.Close(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := mgr.WaitReady(ctx, m.Name); err != nil {
		t.Fatal(err)
	}
	return mgr, release, started
}

func generate(mgr *Manager, ctx context.Context) error {
	return mgr.Generate(ctx, "m", sdk.GenerateRequest{Prompt: "x"}, nil, func(sdk.Event) error { return nil })
}

func TestDispatchSpreadsLoadAndQueues(t *testing.T) {
	mgr, release, started := newFakeManager(t, fakeModel(2, 2, 1), 5*time.Second)
	errs := make(chan error, 8)
	// Four requests fill both replicas' two slots: two on each.
	for range 4 {
		go func() { errs <- generate(mgr, context.Background()) }()
	}
	perPid := map[int]int{}
	for range 4 {
		perPid[<-started]++
	}
	if len(perPid) != 2 {
		t.Fatalf("requests by replica pid = %v, want 2 on each of 2 replicas", perPid)
	}
	for pid, n := range perPid {
		if n != 2 {
			t.Fatalf("replica %d got %d requests, want 2 (least outstanding)", pid, n)
		}
	}
	// The fifth waits in the queue (max_queue 1); the sixth is refused.
	go func() { errs <- generate(mgr, context.Background()) }()
	waitQueued(t, mgr, 1)
	err := generate(mgr, context.Background())
	var qf *QueueFullError
	if !errors.As(err, &qf) || qf.RetryAfter <= 0 {
		t.Fatalf("sixth request: err = %v, want *QueueFullError with RetryAfter", err)
	}
	close(release)
	for range 5 {
		if err := <-errs; err != nil {
			t.Fatalf("queued or running request failed: %v", err)
		}
	}
}

func waitQueued(t *testing.T, mgr *Manager, n int) {
	t.Helper()
	p, _ := mgr.pool("m")
	for {
		p.mu.Lock()
		q, ch := len(p.waiters), p.changed
		p.mu.Unlock()
		if q == n {
			return
		}
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("queue length = %d, want %d", q, n)
		}
	}
}

func TestQueueTimeout(t *testing.T) {
	mgr, release, started := newFakeManager(t, fakeModel(1, 1, 4), 50*time.Millisecond)
	defer close(release)
	go func() { _ = generate(mgr, context.Background()) }()
	<-started
	err := generate(mgr, context.Background())
	if !errors.Is(err, ErrQueueTimeout) {
		t.Fatalf("err = %v, want ErrQueueTimeout", err)
	}
	if st, _ := mgr.Model("m"); st.Queued != 0 {
		t.Fatalf("queue not emptied after timeout: %d", st.Queued)
	}
}

func TestUnknownModelAndAliases(t *testing.T) {
	m := fakeModel(1, 1, 0)
	m.Aliases = []string{"default"}
	mgr, release, _ := newFakeManager(t, m, time.Second)
	close(release)
	if err := generate(mgr, context.Background()); err != nil {
		t.Fatal(err)
	}
	err := mgr.Generate(context.Background(), "nope", sdk.GenerateRequest{}, nil, nil)
	if !errors.Is(err, ErrUnknownModel) {
		t.Fatalf("err = %v, want ErrUnknownModel", err)
	}
	if st, ok := mgr.Model("default"); !ok || st.Name != "m" {
		t.Fatalf("alias lookup = %v %v", st.Name, ok)
	}
	if err := mgr.Add(fakeModel(1, 1, 0)); err == nil {
		t.Fatal("adding a duplicate model name succeeded")
	}
}

func TestCrashLoopBacksOffBecomesFailedAndUnavailable(t *testing.T) {
	launches := make(chan time.Time, 100)
	met := metrics.New()
	b := Backoff{Initial: 20 * time.Millisecond, Max: 80 * time.Millisecond, Threshold: 3, ResetAfter: time.Minute}
	mgr := New(Options{
		Launch: func(context.Context, config.Model, int) (Process, error) {
			launches <- time.Now()
			return nil, errors.New("boom: cannot start")
		},
		Backoff: b, Logger: quietLog(), Metrics: met,
	})
	defer mgr.Close(context.Background())
	if err := mgr.Add(fakeModel(1, 1, 4)); err != nil {
		t.Fatal(err)
	}
	var at []time.Time
	for range 5 {
		at = append(at, <-launches)
	}
	// Each restart waits at least the backoff for its failure count.
	for i := 1; i < len(at); i++ {
		if gap, min := at[i].Sub(at[i-1]), b.delay(i); gap < min {
			t.Errorf("restart %d came %v after the failure, want >= %v", i, gap, min)
		}
	}
	st, _ := mgr.Model("m")
	if st.Replicas[0].State != StateFailed || !strings.Contains(st.Replicas[0].LastError, "boom") || st.Serviceable() {
		t.Fatalf("replica = %+v, want failed with the launch error", st.Replicas[0])
	}
	if got := testutil.ToFloat64(met.Restarts.WithLabelValues("m")); int(got) != st.Replicas[0].Restarts {
		t.Errorf("restarts metric %v, status %d: they must agree", got, st.Replicas[0].Restarts)
	}
	if got := testutil.ToFloat64(met.ReplicaStates.WithLabelValues("m", string(StateFailed))); got != 1 {
		t.Errorf("ragway_replicas{state=failed} = %v, want 1", got)
	}
	err := generate(mgr, context.Background())
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v, want ErrUnavailable naming the last error", err)
	}
}

func TestBackoffDelays(t *testing.T) {
	b := DefaultBackoff
	for _, c := range []struct {
		failures int
		want     time.Duration
	}{{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {4, 800 * time.Millisecond}, {20, 30 * time.Second}} {
		if got := b.delay(c.failures); got != c.want {
			t.Errorf("delay(%d) = %v, want %v", c.failures, got, c.want)
		}
	}
}

// Real plugin processes from here on.

func echoManager(t *testing.T, options map[string]any, replicas int) *Manager {
	t.Helper()
	m := config.DefaultModel()
	m.Name, m.Backend, m.Command, m.Replicas, m.Options = "echo", "echo", testbin.Echo(t), replicas, options
	mgr := New(Options{Logger: quietLog(), Metrics: metrics.New()})
	if err := mgr.Add(m); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mgr.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := mgr.WaitReady(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	return mgr
}

func chat(mgr *Manager, ctx context.Context, text string, onEvent func(sdk.Event)) (string, error) {
	var b strings.Builder
	err := mgr.Generate(ctx, "echo", sdk.GenerateRequest{Messages: []sdk.Message{{Role: "user", Content: text}}}, nil, func(e sdk.Event) error {
		b.WriteString(e.Text)
		if onEvent != nil {
			onEvent(e)
		}
		return nil
	})
	return b.String(), err
}

func TestKillRestartsAndRetriesBeforeFirstToken(t *testing.T) {
	mgr := echoManager(t, map[string]any{"delay_ms": 300}, 1)
	st, _ := mgr.Model("echo")
	pid := st.Replicas[0].Pid
	type result struct {
		text string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		text, err := chat(mgr, context.Background(), "alpha beta", nil)
		res <- result{text, err}
	}()
	// Kill the replica while the request waits for its first token.
	waitOutstanding(t, mgr, 1)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil || r.text != "alpha beta" {
		t.Fatalf("retried request = %q, %v; want the full answer", r.text, r.err)
	}
	st, _ = mgr.Model("echo")
	if st.Replicas[0].Pid == pid || st.Replicas[0].Restarts != 1 {
		t.Fatalf("replica after kill = %+v, want a restarted process", st.Replicas[0])
	}
}

func waitOutstanding(t *testing.T, mgr *Manager, n int) {
	t.Helper()
	p, _ := mgr.pool("echo")
	waitOutstandingOn(t, p, n)
}

func TestCrashAfterFirstTokenIsNotRetried(t *testing.T) {
	mgr := echoManager(t, map[string]any{"fail_after": 2, "delay_ms": 30}, 1)
	text, err := chat(mgr, context.Background(), "one two three four", nil)
	if !sdk.IsPluginShutdown(err) || text != "one two" {
		t.Fatalf("got %q, %v; want the two tokens then ErrPluginShutdown", text, err)
	}
	// The replica comes back and serves again.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mgr.WaitReady(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	if text, err := chat(mgr, ctx, "hi", nil); err != nil || text != "hi" {
		t.Fatalf("after restart: %q, %v", text, err)
	}
}

func TestInvalidOptionsFailPermanently(t *testing.T) {
	m := config.DefaultModel()
	m.Name, m.Backend, m.Command, m.Options = "echo", "echo", testbin.Echo(t), map[string]any{"no_such_option": 1}
	mgr := New(Options{Logger: quietLog(), Metrics: metrics.New()})
	defer mgr.Close(context.Background())
	if err := mgr.Add(m); err != nil {
		t.Fatal(err)
	}
	p, _ := mgr.pool("echo")
	for {
		p.mu.Lock()
		s, ch := p.replicas[0].state, p.changed
		p.mu.Unlock()
		if s == StateFailed {
			break
		}
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("state = %s, want failed", s)
		}
	}
	st, _ := mgr.Model("echo")
	if !strings.Contains(st.Replicas[0].LastError, "no_such_option") {
		t.Fatalf("last error %q does not name the option", st.Replicas[0].LastError)
	}
}

func TestCloseStopsPlugins(t *testing.T) {
	mgr := echoManager(t, nil, 2)
	st, _ := mgr.Model("echo")
	if err := mgr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, r := range st.Replicas {
		if err := syscall.Kill(r.Pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("plugin pid %d still exists after Close (kill 0: %v)", r.Pid, err)
		}
	}
	if err := generate(mgr, context.Background()); !errors.Is(err, ErrStopping) {
		t.Fatalf("after Close: %v, want ErrStopping", err)
	}
}

func TestIdleReplicaStopsAndStartsOnDemand(t *testing.T) {
	m := config.DefaultModel()
	m.Name, m.Backend, m.Command, m.IdleTimeout = "echo", "echo", testbin.Echo(t), config.Duration(100*time.Millisecond)
	m.MaxQueue = 0 // a cold start still admits the request that triggers it
	met := metrics.New()
	mgr := New(Options{Logger: quietLog(), Metrics: met})
	if err := mgr.Add(m); err != nil {
		t.Fatal(err)
	}
	defer mgr.Close(context.Background())
	p, _ := mgr.pool("echo")
	waitState := func(want State) {
		t.Helper()
		for {
			p.mu.Lock()
			s, ch := p.replicas[0].state, p.changed
			p.mu.Unlock()
			if s == want {
				return
			}
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				t.Fatalf("state = %s, want %s", s, want)
			}
		}
	}
	waitState(StateReady)
	pid := p.status().Replicas[0].Pid
	waitState(StateIdle)
	if !processGoneSoon(pid) {
		t.Fatalf("idle replica's process %d still runs", pid)
	}
	if st, _ := mgr.Model("echo"); !st.Serviceable() {
		t.Fatal("an idle model must count as serviceable")
	}
	// The next request starts it again (a cold start) and is served.
	text, err := chat(mgr, context.Background(), "wake up", nil)
	if err != nil || text != "wake up" {
		t.Fatalf("request to an idle model: %q, %v", text, err)
	}
}

func processGoneSoon(pid int) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func TestFailedHealthProbesReplaceTheProcess(t *testing.T) {
	var sick atomic.Bool
	launched := make(chan *fakeProc, 8)
	m := fakeModel(1, 1, 4)
	m.HealthInterval = config.Duration(5 * time.Millisecond)
	mgr := New(Options{
		Launch: func(context.Context, config.Model, int) (Process, error) {
			f := &fakeProc{pid: 200 + len(launched), sick: &sick, done: make(chan struct{}), release: make(chan struct{}), started: make(chan int, 1)}
			launched <- f
			return f, nil
		},
		Backoff: Backoff{Initial: time.Millisecond, Max: time.Millisecond, Threshold: 5, ResetAfter: time.Minute},
		Logger:  quietLog(), Metrics: metrics.New(),
	})
	defer mgr.Close(context.Background())
	if err := mgr.Add(m); err != nil {
		t.Fatal(err)
	}
	first := <-launched
	sick.Store(true)
	select {
	case <-first.done: // closed by the supervisor after two failed probes
	case <-time.After(5 * time.Second):
		t.Fatal("an unresponsive plugin was not stopped")
	}
	sick.Store(false)
	select {
	case <-launched:
	case <-time.After(5 * time.Second):
		t.Fatal("no replacement process was launched")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := mgr.WaitReady(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	if st, _ := mgr.Model("m"); st.Replicas[0].Restarts < 1 || !strings.Contains(st.Replicas[0].LastError, "health probe") {
		t.Fatalf("replica = %+v, want a restart after failed health probes", st.Replicas[0])
	}
}

// TestAdmitRunsOnceAReplicaTookTheRequest: Generate's admit runs only once a replica
// took the request (never for a request refused before: a full queue), once, before
// the request reaches the process; its error ends the request and frees the slot.
func TestAdmitRunsOnceAReplicaTookTheRequest(t *testing.T) {
	mgr, release, started := newFakeManager(t, fakeModel(1, 1, 0), 5*time.Second)
	ctx := context.Background()
	busy := make(chan error, 1)
	go func() { busy <- generate(mgr, ctx) }()
	<-started // the only slot is taken

	admits := 0
	admit := &Admission{Admit: func(*sdk.GenerateRequest) error { admits++; return nil }}
	err := mgr.Generate(ctx, "m", sdk.GenerateRequest{Prompt: "x"}, admit, func(sdk.Event) error { return nil })
	var full *QueueFullError
	if !errors.As(err, &full) || admits != 0 {
		t.Fatalf("refused request: err %v, admitted %d times; want a queue-full error and no admission", err, admits)
	}
	close(release)
	if err := <-busy; err != nil {
		t.Fatal(err)
	}

	err = mgr.Generate(ctx, "m", sdk.GenerateRequest{Prompt: "x"}, &Admission{Admit: func(req *sdk.GenerateRequest) error {
		admits++
		if len(started) != 0 {
			t.Error("admit ran after the process got the request")
		}
		return nil
	}}, func(sdk.Event) error { return nil })
	if err != nil || admits != 1 {
		t.Fatalf("admitted request: err %v, admitted %d times; want nil, once", err, admits)
	}
	<-started

	refused := errors.New("the conversation is gone")
	err = mgr.Generate(ctx, "m", sdk.GenerateRequest{Prompt: "x"}, &Admission{Admit: func(*sdk.GenerateRequest) error { return refused }}, func(sdk.Event) error { return nil })
	if !errors.Is(err, refused) || len(started) != 0 {
		t.Fatalf("admit's error: err %v (want it), %d generations started (want 0)", err, len(started))
	}
	// The slot was released: the next request runs.
	if err := generate(mgr, ctx); err != nil {
		t.Fatalf("after a refused admission: %v", err)
	}
}
