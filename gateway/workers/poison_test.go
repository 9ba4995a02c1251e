package workers

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/ragway/ragway/gateway/config"
	"github.com/ragway/ragway/gateway/metrics"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// pluginEnv makes the test binary serve poisonBackend instead of running the
// tests (the go-plugin helper-process pattern): the real plugin protocol, a
// real subprocess that really dies.
const pluginEnv = "RAGWAY_WORKERS_TEST_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(pluginEnv) == "poison" {
		sdk.Serve(poisonBackend{})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// poisonBackend is a plugin with a crash bug: any input containing NUL makes
// the process exit, the way a native backend dies on an input it mishandles.
// A generation echoes the prompt; an embedding is [bytes, 1]; a token is a
// word (at most 8 per input). An input "hold:PATH" waits until the file PATH
// exists before answering.
type poisonBackend struct{}

func (poisonBackend) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "poison", Version: "1.0.0", APIVersion: sdk.APIVersion,
		Capabilities: []sdk.Capability{sdk.CapabilityChat, sdk.CapabilityCompletion, sdk.CapabilityEmbedding, sdk.CapabilityTokenize}}, nil
}

func (poisonBackend) Load(context.Context, sdk.LoadRequest) (sdk.ModelInfo, error) {
	return sdk.ModelInfo{ContextLength: 4096, EmbeddingSize: 2, MaxInputTokens: 8}, nil
}

func (poisonBackend) Health(context.Context) (sdk.Health, error) { return sdk.Health{OK: true}, nil }

// swallow crashes on NUL and waits for the file a "hold:" input names.
func (poisonBackend) swallow(ctx context.Context, in string) error {
	if strings.ContainsRune(in, 0) {
		os.Exit(3)
	}
	path, ok := strings.CutPrefix(in, "hold:")
	if !ok {
		return nil
	}
	// Polling inside the plugin: the test process has no other channel to a
	// request in flight in a plugin process.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (b poisonBackend) Generate(ctx context.Context, req sdk.GenerateRequest, emit func(sdk.Event) error) error {
	if err := b.swallow(ctx, req.Prompt); err != nil {
		return err
	}
	return emit(sdk.Event{Text: req.Prompt, Tokens: 1, FinishReason: sdk.FinishStop, Usage: &sdk.Usage{PromptTokens: 1, CompletionTokens: 1}})
}

func (b poisonBackend) Embed(ctx context.Context, req sdk.EmbedRequest) (sdk.EmbedResponse, error) {
	resp := sdk.EmbedResponse{}
	for _, in := range req.Input {
		if err := b.swallow(ctx, in); err != nil {
			return sdk.EmbedResponse{}, err
		}
		resp.Embeddings = append(resp.Embeddings, []float32{float32(len(in)), 1})
	}
	return resp, nil
}

func (b poisonBackend) Tokenize(ctx context.Context, req sdk.TokenizeRequest) (sdk.TokenizeResponse, error) {
	resp := sdk.TokenizeResponse{}
	for _, in := range req.Input {
		if err := b.swallow(ctx, in); err != nil {
			return sdk.TokenizeResponse{}, err
		}
		resp.Counts = append(resp.Counts, len(strings.Fields(in)))
	}
	return resp, nil
}

// poisonRig runs model "p" (embedding or not) on poisonBackend processes and
// keeps every process it launched, to count the deaths.
type poisonRig struct {
	mgr *Manager
	met *metrics.Metrics
	mu  sync.Mutex
	all []Process
}

func newPoisonRig(t *testing.T, replicas int, embedding bool) *poisonRig {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rig := &poisonRig{met: metrics.New()}
	m := config.DefaultModel()
	m.Name, m.Backend, m.Replicas, m.MaxConcurrency, m.Embedding = "p", "poison", replicas, 4, embedding
	rig.mgr = New(Options{
		Launch: func(ctx context.Context, _ config.Model, replica int) (Process, error) {
			p, err := sdk.Launch(ctx, sdk.LaunchConfig{Path: exe, Env: []string{pluginEnv + "=poison"}, Logger: quietLog()})
			if err != nil {
				return nil, err
			}
			rig.mu.Lock()
			rig.all = append(rig.all, p)
			rig.mu.Unlock()
			return p, nil
		},
		Backoff: Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, Threshold: 10, ResetAfter: time.Minute},
		Logger:  quietLog(), Metrics: rig.met,
	})
	if err := rig.mgr.Add(m); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rig.mgr.Close(context.Background()) })
	rig.waitReady(t)
	return rig
}

func (rig *poisonRig) waitReady(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := rig.mgr.WaitReady(ctx, "p"); err != nil {
		t.Fatal(err)
	}
}

// deaths counts the launched processes that have exited.
func (rig *poisonRig) deaths() int {
	rig.mu.Lock()
	defer rig.mu.Unlock()
	n := 0
	for _, p := range rig.all {
		if !alive(p) {
			n++
		}
	}
	return n
}

func (rig *poisonRig) first() Process {
	rig.mu.Lock()
	defer rig.mu.Unlock()
	return rig.all[0]
}

func (rig *poisonRig) embed(ctx context.Context, in string) error {
	_, err := rig.mgr.Embed(ctx, "p", sdk.EmbedRequest{Input: []string{in}})
	return err
}

func TestPoisonRequestKillsTwoReplicasThenIsQuarantined(t *testing.T) {
	rig := newPoisonRig(t, 3, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	poison := "x\x00"

	err := rig.embed(ctx, poison)
	var pe *PoisonError
	if !errors.Is(err, ErrPoisonRequest) || !errors.As(err, &pe) || pe.Quarantined {
		t.Fatalf("poison embed: err = %v, want a *PoisonError (crashed, not quarantined)", err)
	}
	if strings.ContainsRune(err.Error(), 0) || strings.Contains(err.Error(), "stderr") || len(pe.Hash) != 16 {
		t.Fatalf("poison error %q must name a 16-digit hash, never the input nor the plugin's output", err)
	}
	rig.waitReady(t)
	if n := rig.deaths(); n != 2 {
		t.Fatalf("one poison request killed %d replicas, want exactly 2", n)
	}

	// The same request again is refused at once: no replica dies.
	err = rig.embed(ctx, poison)
	if !errors.As(err, &pe) || !pe.Quarantined {
		t.Fatalf("poison embed sent again: err = %v, want a quarantined *PoisonError", err)
	}
	if n := rig.deaths(); n != 2 {
		t.Fatalf("the repeated poison request killed replicas: %d deaths in all, want 2", n)
	}
	// Other requests are served, on every replica.
	for i := range 6 {
		if err := rig.embed(ctx, strings.Repeat("ok ", i+1)); err != nil {
			t.Fatalf("innocent embed %d after the poison: %v", i, err)
		}
	}
	if got := testutil.ToFloat64(rig.mgr.poison.WithLabelValues("p", "crashed")); got != 1 {
		t.Errorf(`ragway_poison_requests_total{outcome="crashed"} = %v, want 1`, got)
	}
	if got := testutil.ToFloat64(rig.mgr.poison.WithLabelValues("p", "refused")); got != 1 {
		t.Errorf(`ragway_poison_requests_total{outcome="refused"} = %v, want 1`, got)
	}
	if got := testutil.ToFloat64(rig.met.Retries.WithLabelValues("p")); got != 1 {
		t.Errorf("ragway_request_retries_total = %v, want 1 (the poison's one retry)", got)
	}
}

// A request in flight on the replica a poison request kills is retried and
// served, and is not taken for poison: the poison's second crash cannot take
// it down too (retries after a death run alone on their replica).
func TestRequestSharingAReplicaWithPoisonIsServed(t *testing.T) {
	rig := newPoisonRig(t, 1, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gate := filepath.Join(t.TempDir(), "open")
	gen := func(prompt string) (string, error) {
		var b strings.Builder
		err := rig.mgr.Generate(ctx, "p", sdk.GenerateRequest{Prompt: prompt}, nil, func(e sdk.Event) error {
			b.WriteString(e.Text)
			return nil
		})
		return b.String(), err
	}
	type result struct {
		text string
		err  error
	}
	held := make(chan result, 1)
	go func() {
		text, err := gen("hold:" + gate)
		held <- result{text, err}
	}()
	p, _ := rig.mgr.pool("p")
	waitOutstandingOn(t, p, 1)
	poisoned := make(chan error, 1)
	go func() {
		_, err := gen("boom\x00")
		poisoned <- err
	}()
	// The poison kills the replica under both requests; let the held one
	// finish on its retry.
	select {
	case <-rig.first().Done():
	case <-ctx.Done():
		t.Fatal("the poison request did not crash the replica")
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := <-held; r.err != nil || r.text != "hold:"+gate {
		t.Fatalf("request sharing the replica with the poison: %q, %v; want its answer", r.text, r.err)
	}
	if err := <-poisoned; !errors.Is(err, ErrPoisonRequest) {
		t.Fatalf("poison generate: %v, want ErrPoisonRequest", err)
	}
	rig.waitReady(t)
	if n := rig.deaths(); n != 2 {
		t.Fatalf("deaths = %d, want 2", n)
	}
	// The innocent request is not quarantined.
	if text, err := gen("hold:" + gate); err != nil || text != "hold:"+gate {
		t.Fatalf("the innocent request sent again: %q, %v", text, err)
	}
}

// waitOutstandingOn waits until p's replicas have n requests outstanding in all.
func waitOutstandingOn(t *testing.T, p *pool, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		p.mu.Lock()
		got, ch := 0, p.changed
		for _, r := range p.replicas {
			got += r.outstanding
		}
		p.mu.Unlock()
		if got == n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("outstanding = %d, want %d", got, n)
		}
	}
}

func TestTokenizeHasThePoisonRuleAndTheLimitIsShown(t *testing.T) {
	rig := newPoisonRig(t, 2, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if st, _ := rig.mgr.Model("p"); st.MaxInputTokens != 8 {
		t.Fatalf("ModelStatus.MaxInputTokens = %d, want the plugin's 8", st.MaxInputTokens)
	}
	resp, err := rig.mgr.Tokenize(ctx, "p", sdk.TokenizeRequest{Input: []string{"one two", "three"}})
	if err != nil || !slices.Equal(resp.Counts, []int{2, 1}) {
		t.Fatalf("Tokenize = %v, %v; want [2 1]", resp.Counts, err)
	}
	for i, want := range []bool{false, true} {
		_, err := rig.mgr.Tokenize(ctx, "p", sdk.TokenizeRequest{Input: []string{"ok", "bad\x00"}})
		var pe *PoisonError
		if !errors.As(err, &pe) || pe.Quarantined != want {
			t.Fatalf("poison tokenize #%d: %v, want a *PoisonError with Quarantined %v", i+1, err, want)
		}
	}
	rig.waitReady(t)
	if n := rig.deaths(); n != 2 {
		t.Fatalf("deaths = %d, want 2", n)
	}
	// An embedding of the same input is another request: not quarantined
	// (it is poison too, and found out the same way).
	if err := rig.embed(ctx, "fine"); err != nil {
		t.Fatal(err)
	}
}

func TestQuarantineWindowAndMemory(t *testing.T) {
	now := time.Unix(1000, 0)
	q := newQuarantine(time.Minute, 2, func() time.Time { return now })
	a, b, c := keyOf("embed", "a"), keyOf("embed", "b"), keyOf("embed", "c")
	if a == b || keyOf("embed", "a") != a || keyOf("generate", "a") == a {
		t.Fatal("keys must be equal exactly for equal kind and request")
	}
	q.add(a)
	q.add(b)
	if !q.has(b) || !q.has(a) || q.has(c) {
		t.Fatal("has after add")
	}
	q.add(c) // memory 2: b is the least recently seen (a was looked up after it)
	if q.has(b) || !q.has(a) || !q.has(c) || q.len() != 2 {
		t.Fatalf("after a third key: len %d, want a and c kept, b forgotten", q.len())
	}
	now = now.Add(time.Minute)
	if q.has(a) || q.has(c) || q.len() != 0 {
		t.Fatal("keys outlived the window")
	}
}

func TestGenerateKeyIgnoresRequestID(t *testing.T) {
	r1 := sdk.GenerateRequest{Prompt: "p", RequestID: "one"}
	r2 := sdk.GenerateRequest{Prompt: "p", RequestID: "two"}
	k := func(r sdk.GenerateRequest) requestKey { r.RequestID = ""; return keyOf("generate", r) }
	if k(r1) != k(r2) {
		t.Fatal("the request id must not change a request's key")
	}
	if len(k(r1).String()) != 16 {
		t.Fatalf("short hash %q, want 16 hex digits", k(r1).String())
	}
}

// An isolated request (a retry after a death) gets a replica to itself: a
// busy replica is reserved for it and drains, ordinary requests go elsewhere
// or wait, and are not held up behind it.
func TestIsolatedRequestGetsAReplicaToItself(t *testing.T) {
	mgr, release, _ := newFakeManager(t, fakeModel(2, 2, 4), 5*time.Second)
	defer close(release)
	p, _ := mgr.pool("m")
	ctx := context.Background()
	take := func(isolated bool) grant {
		g, err := p.acquire(ctx, 5*time.Second, isolated, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	grants := []grant{take(false), take(false), take(false)} // 2 on one replica, 1 on the other
	isolatedC := make(chan grant, 1)
	go func() { isolatedC <- take(true) }()
	waitQueued(t, mgr, 1)
	p.mu.Lock()
	var reserved *replica
	for _, r := range p.replicas {
		if r.isolation == isolationReserved {
			reserved = r
		}
	}
	p.mu.Unlock()
	if reserved == nil || reserved.outstanding != 1 {
		t.Fatalf("the replica with the fewest requests must be reserved for the isolated request, got %+v", reserved)
	}
	// The other replica is full and the reserved one takes no ordinary
	// request: an ordinary one waits.
	ordinaryC := make(chan grant, 1)
	go func() { ordinaryC <- take(false) }()
	waitQueued(t, mgr, 2)
	for i, g := range grants {
		if g.r == reserved {
			p.release(g)
			grants = append(grants[:i], grants[i+1:]...)
			break
		}
	}
	iso := <-isolatedC
	if iso.r != reserved || !iso.isolated || reserved.isolation != isolationHeld {
		t.Fatalf("isolated grant on replica %d (isolated %v), want the drained replica %d held", iso.r.id, iso.isolated, reserved.id)
	}
	waitQueued(t, mgr, 1) // the ordinary request still waits: its replica is full, the other held
	p.release(grants[0])
	ord := <-ordinaryC
	if ord.r == reserved {
		t.Fatal("an ordinary request was dispatched to a replica held by an isolated one")
	}
	p.release(iso)
	if reserved.isolation != isolationNone {
		t.Fatalf("released replica isolation = %d, want none", reserved.isolation)
	}
	// An isolated request that gives up frees its reservation.
	short, cancel := context.WithCancel(ctx)
	gone := make(chan error, 1)
	extra := []grant{take(false), take(false)} // with ord and grants[1]: both replicas full
	go func() {
		_, err := p.acquire(short, 5*time.Second, true, false, nil)
		gone <- err
	}()
	waitQueued(t, mgr, 1)
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled isolated acquire: %v", err)
	}
	p.mu.Lock()
	for _, r := range p.replicas {
		if r.isolation != isolationNone {
			t.Errorf("replica %d still isolated (%d) after the isolated request left", r.id, r.isolation)
		}
	}
	p.mu.Unlock()
	for _, g := range append(extra, ord, grants[1]) {
		p.release(g)
	}
}

// TestPoisonKeyIsTheAdmittedRequest: a request completed at admission (a stored turn,
// whose history Admit adds) is quarantined under its Admission.Key too: another
// conversation's turn with the same new message is not refused, the same turn asked
// again is, before it is admitted.
func TestPoisonKeyIsTheAdmittedRequest(t *testing.T) {
	rig := newPoisonRig(t, 3, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	turn := func(key, history string) (admitted bool, err error) {
		adm := &Admission{Key: key, Admit: func(req *sdk.GenerateRequest) error {
			admitted = true
			req.Prompt = history + req.Prompt
			return nil
		}}
		err = rig.mgr.Generate(ctx, "p", sdk.GenerateRequest{Prompt: "hi"}, adm, func(sdk.Event) error { return nil })
		return admitted, err
	}
	var pe *PoisonError
	if _, err := turn("alice/conversation-1", "x\x00"); !errors.As(err, &pe) || pe.Quarantined {
		t.Fatalf("a turn whose history crashes the backend: %v, want a *PoisonError", err)
	}
	rig.waitReady(t)
	if admitted, err := turn("bob/conversation-2", "hello "); err != nil || !admitted {
		t.Fatalf("another conversation's turn with the same message: admitted %v, %v; want served", admitted, err)
	}
	if admitted, err := turn("alice/conversation-1", "x\x00"); !errors.As(err, &pe) || !pe.Quarantined || admitted {
		t.Fatalf("the poison turn again: admitted %v, %v; want refused as quarantined before admission", admitted, err)
	}
}
