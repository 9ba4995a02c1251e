package chat

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/oai"
	"github.com/ragway/ragway/gateway/workers"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// words is a backend that admits each request and answers two words, the first with
// the prompt's usage (plugin API 1.3).
type words struct{}

func (words) Generate(ctx context.Context, _ string, req sdk.GenerateRequest, adm *workers.Admission, emit func(sdk.Event) error) error {
	if adm != nil && adm.Admit != nil {
		if err := adm.Admit(&req); err != nil {
			return err
		}
	}
	early := &sdk.Usage{PromptTokens: 5, CachedTokens: 2}
	for _, w := range []string{"a ", "b"} {
		if err := emit(sdk.Event{Text: w, Tokens: 1, Usage: early}); err != nil {
			return err
		}
		early = nil
	}
	return emit(sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{PromptTokens: 5, CachedTokens: 2, CompletionTokens: 2}})
}

// record runs t and returns its events, failing the test unless exactly one terminal
// event came, last.
func record(t *testing.T, turn *Turn) []Event {
	t.Helper()
	var (
		mu  sync.Mutex
		evs []Event
	)
	turn.Run(context.Background(), func(e Event) error {
		mu.Lock()
		defer mu.Unlock()
		evs = append(evs, e)
		return nil
	})
	terminal := 0
	for i, e := range evs {
		if e.Kind == EventDone || e.Kind == EventError {
			terminal++
			if i != len(evs)-1 {
				t.Fatalf("terminal event %d of %d: %+v", i, len(evs), evs)
			}
		}
	}
	if terminal != 1 {
		t.Fatalf("%d terminal events: %+v", terminal, evs)
	}
	return evs
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestTurnEvents: a turn of n prompts × choices tells start, every choice's deltas and
// finish, then done with the usage: prompt tokens once per prompt.
func TestTurnEvents(t *testing.T) {
	s := &Service{Backends: words{}, Logger: quiet()}
	evs := record(t, s.Turn(Request{Model: workers.ModelStatus{Name: "m"}, Prompts: []string{"x", "y"}, N: 2}))
	if evs[0].Kind != EventStart {
		t.Fatalf("first event %+v, want start", evs[0])
	}
	text, finished := map[int]string{}, map[int]bool{}
	for _, e := range evs[1 : len(evs)-1] {
		switch e.Kind {
		case EventDelta:
			if finished[e.Choice] {
				t.Fatalf("a delta of choice %d after its finish", e.Choice)
			}
			text[e.Choice] += e.Text
		case EventFinish:
			finished[e.Choice] = true
		default:
			t.Fatalf("unexpected %+v", e)
		}
	}
	done := evs[len(evs)-1]
	want := sdk.Usage{PromptTokens: 10, CachedTokens: 4, CompletionTokens: 8}
	if len(finished) != 4 || text[3] != "a b" || done.Kind != EventDone || done.Usage != want {
		t.Fatalf("texts %v, finished %v, end %+v; want 4 choices of \"a b\" and usage %+v", text, finished, done, want)
	}
}

// panicking is an accountant with a bug.
type panicking struct{}

func (panicking) Account(auth.Principal, string, string, int, int) { panic("a bug in accounting") }

// TestTurnPanicIsAnError: a panic in the turn's own code (not the backend's) ends the
// turn with a 500, told once, and the gateway goes on.
func TestTurnPanicIsAnError(t *testing.T) {
	s := &Service{Backends: words{}, Usage: panicking{}, Logger: quiet()}
	evs := record(t, s.Turn(Request{Model: workers.ModelStatus{Name: "m"}, Messages: []sdk.Message{{Role: "user", Content: "hi"}}}))
	if e := evs[len(evs)-1]; e.Kind != EventError || e.Err.Status != 500 || e.Err.Code != oai.CodeInternal {
		t.Fatalf("end %+v, want a 500 internal_error", e)
	}
}

// TestCutShortTurnReportsItsPrompt: a turn that failed after its first text reports
// the prompt (and cached) tokens the backend told with it, and what it generated.
func TestCutShortTurnReportsItsPrompt(t *testing.T) {
	s := &Service{Backends: failAfterFirst{}, Logger: quiet()}
	turn := s.Turn(Request{Model: workers.ModelStatus{Name: "m"}, Prompts: []string{"x"}})
	evs := record(t, turn)
	if e := evs[len(evs)-1]; e.Kind != EventError {
		t.Fatalf("end %+v, want an error", e)
	}
	if u := turn.Usage(); u != (sdk.Usage{PromptTokens: 5, CachedTokens: 2, CompletionTokens: 1}) {
		t.Fatalf("usage %+v", u)
	}
}

type failAfterFirst struct{}

func (failAfterFirst) Generate(ctx context.Context, _ string, req sdk.GenerateRequest, adm *workers.Admission, emit func(sdk.Event) error) error {
	if err := adm.Admit(&req); err != nil {
		return err
	}
	if err := emit(sdk.Event{Text: "a", Tokens: 1, Usage: &sdk.Usage{PromptTokens: 5, CachedTokens: 2}}); err != nil {
		return err
	}
	return fmt.Errorf("%w: the plugin died", sdk.ErrPluginShutdown)
}
