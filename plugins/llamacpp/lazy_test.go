package main

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// TestLazyDecide: an answer that may call tools waits while it may still become
// calls, engages the calls' grammar once it begins with its syntax's trigger and is
// still the grammar's lead (a <think> block, spaces and a python tag aside), and is
// decoded freely otherwise.
func TestLazyDecide(t *testing.T) {
	tools := []sdk.Tool{{Name: "f"}}
	for _, tc := range []struct {
		syntax  toolSyntax
		answers map[string]int
	}{
		{hermesSyntax, map[string]int{"": lazyWait, " \n": lazyWait, "<tool": lazyWait, "<think>\nhm": lazyWait, "<tool_call>": lazyEngage,
			"<tool_call>\n{\"name\":\"": lazyEngage, "<think>x</think>\n<tool_call>": lazyEngage, "\n<tool_call>\n": lazyEngage,
			"<tool_call>\n{\"name\": \"": lazyDecline, "Hello": lazyDecline, "<tool_call>x": lazyDecline}},
		{mistralSyntax, map[string]int{"[TOOL": lazyWait, "[TOOL_CALLS]": lazyEngage, "[TOOL_CALLS][{": lazyEngage, "[{": lazyDecline}},
		{genericSyntax, map[string]int{`{"to`: lazyWait, `{"tool_calls":`: lazyEngage, `{"tool_calls":[{"name":"`: lazyEngage, `{"tool_calls": [`: lazyDecline}},
	} {
		if lazyTrigger(llama3Syntax) != "" {
			t.Fatal("Llama 3's calls have a lazy trigger: a JSON answer beginning {\"name\": would become a call")
		}
		g, err := newCallGrammar(tc.syntax, tools, &sdk.ToolChoice{Mode: sdk.ToolChoiceRequired}, true)
		if err != nil {
			t.Fatal(err)
		}
		l := &lazyCalls{trigger: lazyTrigger(tc.syntax), grammar: g}
		for answer, want := range tc.answers {
			got, grammar := l.decide(answer)
			if got != want || (got == lazyEngage) != (grammar != "") {
				t.Errorf("%s %q: %d (%q), want %d", tc.syntax.name, answer, got, grammar, want)
			}
		}
		// The grammar from the start is the required call's.
		full, err := toolGrammar(tc.syntax, tools, &sdk.ToolChoice{Mode: sdk.ToolChoiceRequired}, true)
		if err != nil || full != g.after("") {
			t.Errorf("%s: the lazy grammar from the start is not the required one: %v", tc.syntax.name, err)
		}
	}
}

// TestToolOutputEngaged: a held answer whose rest the engine put under the calls'
// grammar streams its calls as they come (a <think> block first, as text), and ends
// with finish reason tool_calls.
func TestToolOutputEngaged(t *testing.T) {
	engaged := false
	var events []sdk.Event
	o := &toolOutput{syntax: hermesSyntax, names: []string{"f"}, parallel: true, engaged: func() bool { return engaged },
		emit: func(e sdk.Event) error { events = append(events, e); return nil }}
	for _, s := range []string{"<think>x</think>\n", "<tool", "_call>"} {
		if err := o.event(sdk.Event{Text: s, Tokens: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if len(events) != 0 {
		t.Fatalf("events before the engine engaged: %+v", events)
	}
	engaged = true
	for _, s := range []string{"\n{\"name\":\"f\",\"arguments\":{\"a\":", "1}}\n</tool_call>"} {
		if err := o.event(sdk.Event{Text: s, Tokens: 1}); err != nil {
			t.Fatal(err)
		}
	}
	streamed := len(events)
	if err := o.event(sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{CompletionTokens: 5}}); err != nil {
		t.Fatal(err)
	}
	var text, args strings.Builder
	tokens := 0
	for _, e := range events {
		text.WriteString(e.Text)
		tokens += e.Tokens
		for _, d := range e.ToolCalls {
			args.WriteString(d.Arguments)
		}
	}
	last := events[len(events)-1]
	if text.String() != "<think>x</think>" || args.String() != `{"a":1}` || last.FinishReason != sdk.FinishToolCalls || tokens != 5 || streamed < 2 {
		t.Fatalf("events %+v", events)
	}
}

// TestLazyGrammarEngages: on the real engine, an answer is decoded freely until its
// text is the trigger, then under the grammar of the rest (the demo model,
// greedy: its own first words, then what the grammar allows and nothing after).
func TestLazyGrammarEngages(t *testing.T) {
	b := loadInProcess(t)
	run := func(lazy *lazyCalls, maxTokens int) (string, sdk.FinishReason, bool) {
		t.Helper()
		r := &genRequest{sampling: sdk.Sampling{Temperature: f64(0), MaxTokens: maxTokens}, lazy: lazy}
		text, finish := generateInProcess(t, b, "Once upon a time", r)
		return text, finish, r.engaged.Load()
	}
	// The model's first words, a token at a time, until they are more than spaces.
	var first string
	for n := 1; strings.TrimSpace(first) == "" || strings.Contains(first, "<think>"); n++ {
		if n > 8 {
			t.Fatalf("the demo model's greedy answer begins with no words: %q", first)
		}
		first, _, _ = run(nil, n)
	}
	trigger := strings.TrimLeft(first, " \t\r\n")
	lazy := &lazyCalls{trigger: trigger, grammar: callGrammar{lead: trigger + "[[", rest: "r1", rules: "r1 ::= [0-9] [0-9] [0-9] \"]]\"\n"}}
	text, finish, engaged := run(lazy, 40)
	t.Logf("free first words %q, then under the grammar: %q", first, text)
	if want := regexp.MustCompile(`^` + regexp.QuoteMeta(first) + `\[\[[0-9]{3}\]\]$`); !want.MatchString(text) || finish != sdk.FinishStop || !engaged {
		t.Fatalf("engaged %v: %q (%s), want %q then [[ddd]]", engaged, text, finish, first)
	}
	// A trigger the answer does not begin with: decoded freely, as without one.
	free, _, _ := run(nil, 12)
	lazy = &lazyCalls{trigger: "\x01never", grammar: lazy.grammar}
	if text, _, engaged := run(lazy, 12); text != free || engaged {
		t.Fatalf("declined: %q (engaged %v), want %q", text, engaged, free)
	}
}

// loadInProcess loads the demo model into this process (one sequence, a small
// context): for tests of the engine itself.
func loadInProcess(t *testing.T) *backend {
	t.Helper()
	lib, model := fixtures(t)
	b := newBackend(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, err := b.Load(context.Background(), sdk.LoadRequest{Model: "m", Options: map[string]any{
		"model_path": model, "lib_path": lib, "threads": float64(1), "parallel": float64(1), "context_length": float64(256)}}); err != nil {
		t.Fatal(err)
	}
	return b
}

// generateInProcess runs r (its sampling, grammar and lazy grammar set) on prompt
// and returns its text and finish reason.
func generateInProcess(t *testing.T, b *backend, prompt string, r *genRequest) (string, sdk.FinishReason) {
	t.Helper()
	tokens, err := b.tok.tokenize("the prompt", prompt, true)
	if err != nil {
		t.Fatal(err)
	}
	r.ctx, r.tokens, r.events = t.Context(), tokens, make(chan sdk.Event, 64)
	r.special = r.special || r.grammar != "" || r.lazy != nil
	if err := b.engine.generate(r); err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	var finish sdk.FinishReason
	for ev := range r.events {
		text.WriteString(ev.Text)
		finish = ev.FinishReason
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return text.String(), finish
}
