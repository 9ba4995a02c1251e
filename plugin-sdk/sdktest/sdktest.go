package sdktest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// Config says which plugin to check and how to load a working model.
type Config struct {
	// Path is the plugin binary.
	Path string
	// Options are Load options that give a working model. Generation must be
	// slow enough to be cancelled after its first event (for the echo
	// example: delay_ms).
	Options map[string]any
	// Embedding loads the model as an embedding model and checks Embed
	// instead of Generate.
	Embedding bool
	// InvalidOptions are option sets Load must reject with
	// sdk.ErrInvalidRequest. Default: Options plus
	// {"definitely_not_an_option": 1}.
	InvalidOptions []map[string]any
	// Messages is the prompt. Default: a user message of about 40 words.
	Messages []sdk.Message
	// Timeout bounds each check. Default: 60s.
	Timeout time.Duration
}

// DefaultMessages is the prompt used when Config.Messages is empty.
var DefaultMessages = []sdk.Message{{
	Role: "user",
	Content: "Repeat after me, word for word: a lighthouse keeper on a small island found a glass bottle " +
		"on the shore after a storm, and inside it was a letter written fifty years ago by a sailor " +
		"who promised to come back one day.",
}}

// maxTokens caps every generation the checks run.
const maxTokens = 64

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = 60 * time.Second
	}
	if len(c.Messages) == 0 {
		c.Messages = DefaultMessages
	}
	if c.InvalidOptions == nil {
		bad := maps.Clone(c.Options)
		if bad == nil {
			bad = map[string]any{}
		}
		bad["definitely_not_an_option"] = 1
		c.InvalidOptions = []map[string]any{bad}
	}
	return c
}

// check is one conformance check. It returns nil when the plugin passes, a
// skipError when the check does not apply, any other error when it fails.
type check struct {
	name string
	run  func(ctx context.Context, h *harness) error
}

var checks = []check{
	{"Handshake", checkHandshake},
	{"Info", checkInfo},
	{"GenerateBeforeLoad", checkGenerateBeforeLoad},
	{"LoadErrors", checkLoadErrors},
	{"EventOrder", checkEventOrder},
	{"Greedy", checkGreedy},
	{"MaxTokens", checkMaxTokens},
	{"StopSequence", checkStopSequence},
	{"Cancellation", checkCancellation},
	{"Concurrency", checkConcurrency},
	{"Embeddings", checkEmbeddings},
	{"Tokenize", checkTokenize},
	{"HostileInputs", checkHostileInputs},
	{"Crash", checkCrash},
}

// Run checks the plugin at cfg.Path against the backend contract, one
// subtest per check.
func Run(t *testing.T, cfg Config) {
	t.Helper()
	cfg = cfg.withDefaults()
	if cfg.Path == "" {
		t.Fatal("sdktest: Config.Path is empty")
	}
	if _, err := os.Stat(cfg.Path); err != nil {
		t.Fatalf("sdktest: plugin binary: %v", err)
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(cfg, t.Cleanup)
			ctx, cancel := context.WithTimeout(t.Context(), cfg.Timeout)
			defer cancel()
			err := c.run(ctx, h)
			var skip skipError
			switch {
			case errors.As(err, &skip):
				t.Skip(skip.reason)
			case err != nil:
				if tail := h.stderr.String(); tail != "" {
					t.Fatalf("%v\nplugin stderr (last lines):\n%s", err, tail)
				}
				t.Fatal(err)
			}
		})
	}
}

// skipError says a check does not apply to the plugin.
type skipError struct{ reason string }

func (s skipError) Error() string { return "skipped: " + s.reason }

func skipf(format string, args ...any) error { return skipError{fmt.Sprintf(format, args...)} }

// harness launches plugin processes for one check.
type harness struct {
	cfg Config
	// cleanup registers process kills (t.Cleanup).
	cleanup func(func())
	// prompt bounds what must happen promptly: a cancelled call returning,
	// a slot being freed, the first event of a request on an idle plugin.
	prompt time.Duration
	stderr *lineTail
}

func newHarness(cfg Config, cleanup func(func())) *harness {
	return &harness{cfg: cfg, cleanup: cleanup, prompt: min(10*time.Second, cfg.Timeout), stderr: &lineTail{max: 20}}
}

// launch starts the plugin; it is killed at cleanup.
func (h *harness) launch(ctx context.Context) (*sdk.Plugin, error) {
	p, err := sdk.Launch(ctx, sdk.LaunchConfig{
		Path:         h.cfg.Path,
		Logger:       slog.New(slog.DiscardHandler),
		StartTimeout: h.cfg.Timeout,
		Stderr:       h.stderr,
	})
	if err != nil {
		return nil, err
	}
	h.cleanup(p.Kill)
	return p, nil
}

func (h *harness) load(ctx context.Context, p *sdk.Plugin, opts map[string]any) (sdk.ModelInfo, error) {
	return p.Load(ctx, sdk.LoadRequest{Model: "sdktest", Options: opts, Embedding: h.cfg.Embedding})
}

// loaded launches the plugin and loads Config.Options.
func (h *harness) loaded(ctx context.Context) (*sdk.Plugin, sdk.ModelInfo, error) {
	p, err := h.launch(ctx)
	if err != nil {
		return nil, sdk.ModelInfo{}, err
	}
	mi, err := h.load(ctx, p, h.cfg.Options)
	if err != nil {
		return nil, sdk.ModelInfo{}, fmt.Errorf("load with Config.Options: %w", err)
	}
	return p, mi, nil
}

// request is a generation of the configured prompt with sampling s.
func (h *harness) request(s sdk.Sampling) sdk.GenerateRequest {
	if s.MaxTokens == 0 {
		s.MaxTokens = maxTokens
	}
	return sdk.GenerateRequest{Messages: h.cfg.Messages, Sampling: s, RequestID: "sdktest"}
}

func greedy() sdk.Sampling {
	temp, seed := 0.0, int64(1)
	return sdk.Sampling{Temperature: &temp, Seed: &seed}
}

// generation is the outcome of one Generate call.
type generation struct {
	events []sdk.Event
	text   string
	final  sdk.Event
}

// generate runs req to its end and checks the event contract.
func generate(ctx context.Context, p *sdk.Plugin, req sdk.GenerateRequest) (generation, error) {
	var g generation
	err := p.Generate(ctx, req, func(e sdk.Event) error {
		g.events = append(g.events, e)
		return nil
	})
	if err != nil {
		return g, fmt.Errorf("generate: %w", err)
	}
	if err := checkEvents(g.events); err != nil {
		return g, err
	}
	var b strings.Builder
	for _, e := range g.events {
		b.WriteString(e.Text)
	}
	g.text, g.final = b.String(), g.events[len(g.events)-1]
	return g, nil
}

// checkEvents checks the events of a completed generation: zero or more
// deltas, then exactly one final event that is the last, with a valid
// finish reason and consistent usage.
func checkEvents(evs []sdk.Event) error {
	if len(evs) == 0 {
		return errors.New("generation produced no events")
	}
	tokens := 0
	var early *sdk.Usage // the prompt's usage a delta carried (API 1.3)
	for i, e := range evs {
		last := i == len(evs)-1
		if e.Tokens < 0 {
			return fmt.Errorf("event %d has negative Tokens %d", i, e.Tokens)
		}
		tokens += e.Tokens
		switch {
		case !last && e.Final():
			return fmt.Errorf("event %d of %d is final (%q): the final event must be the last", i, len(evs), e.FinishReason)
		case !last && e.Usage != nil && early != nil:
			return fmt.Errorf("delta event %d carries Usage again; one delta at most may carry the prompt's", i)
		case !last && e.Usage != nil && e.Usage.CompletionTokens != 0:
			return fmt.Errorf("delta event %d carries Usage with CompletionTokens %d; a delta carries only the prompt's", i, e.Usage.CompletionTokens)
		case !last && e.Usage != nil:
			early = e.Usage
		case last && !e.Final():
			return fmt.Errorf("the last event has no FinishReason")
		}
	}
	final := evs[len(evs)-1]
	switch final.FinishReason {
	case sdk.FinishStop, sdk.FinishLength:
	case sdk.FinishError:
		return fmt.Errorf("generation finished with an error: %s", final.Error)
	case sdk.FinishCancelled:
		return errors.New("generation that nobody cancelled finished with FinishCancelled")
	default:
		return fmt.Errorf("final event has unknown FinishReason %q", final.FinishReason)
	}
	u := final.Usage
	switch {
	case u == nil:
		return errors.New("final event has no Usage")
	case u.PromptTokens <= 0:
		return fmt.Errorf("Usage.PromptTokens = %d, want > 0", u.PromptTokens)
	case u.CompletionTokens != tokens:
		return fmt.Errorf("Usage.CompletionTokens = %d, but the events' Tokens add up to %d", u.CompletionTokens, tokens)
	case u.CachedTokens < 0 || u.CachedTokens > u.PromptTokens:
		return fmt.Errorf("Usage.CachedTokens = %d, want between 0 and PromptTokens %d", u.CachedTokens, u.PromptTokens)
	case early != nil && (early.PromptTokens != u.PromptTokens || early.CachedTokens != u.CachedTokens):
		return fmt.Errorf("a delta's early Usage (prompt %d, cached %d) differs from the final's (prompt %d, cached %d)",
			early.PromptTokens, early.CachedTokens, u.PromptTokens, u.CachedTokens)
	}
	return nil
}

// running is a generation in the background.
type running struct {
	first  chan struct{} // closed at the first event
	result chan error    // the Generate error, once
}

func start(ctx context.Context, p *sdk.Plugin, req sdk.GenerateRequest) *running {
	r := &running{first: make(chan struct{}), result: make(chan error, 1)}
	var once sync.Once
	go func() {
		r.result <- p.Generate(ctx, req, func(sdk.Event) error {
			once.Do(func() { close(r.first) })
			return nil
		})
	}()
	return r
}

// errFinishedEarly: the generation ended before its first event was seen.
var errFinishedEarly = errors.New("generation finished before it could be interrupted: make generation slower (Config.Options)")

// waitFirst waits for the first event, or fails when the generation ends
// first or ctx ends.
func (r *running) waitFirst(ctx context.Context) error {
	select {
	case <-r.first:
		return nil
	case err := <-r.result:
		r.result <- err // keep it for wait
		if err != nil {
			return fmt.Errorf("generation failed before its first event: %w", err)
		}
		return errFinishedEarly
	case <-ctx.Done():
		return fmt.Errorf("no first event: %w", context.Cause(ctx))
	}
}

// wait waits up to d for Generate to return; returned is false if it did
// not.
func (r *running) wait(d time.Duration) (returned bool, err error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-r.result:
		return true, err
	case <-t.C:
		return false, nil
	}
}

// poll calls cond until it returns true, an error, or d passes.
func poll(ctx context.Context, d time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := cond()
		if ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return context.DeadlineExceeded
		case <-t.C:
		}
	}
}

// lineTail keeps the last lines written to it.
type lineTail struct {
	mu    sync.Mutex
	max   int
	lines []string
	cur   []byte
}

func (l *lineTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range p {
		if b != '\n' {
			if len(l.cur) < 2048 {
				l.cur = append(l.cur, b)
			}
			continue
		}
		l.lines = append(l.lines, string(l.cur))
		if len(l.lines) > l.max {
			l.lines = l.lines[1:]
		}
		l.cur = l.cur[:0]
	}
	return len(p), nil
}

func (l *lineTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := strings.Join(l.lines, "\n")
	if len(l.cur) > 0 {
		out += "\n" + string(l.cur)
	}
	return strings.TrimSpace(out)
}
