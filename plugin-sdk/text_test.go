package sdk

import (
	"context"
	"strings"
	"testing"
)

// The wire carries proto3 strings, which must be UTF-8: a request holding
// anything else is refused on the host as ErrInvalidRequest naming the field
// (never an internal marshalling error), and the plugin never sees it.
func TestInvalidUTF8IsRefusedNamingTheField(t *testing.T) {
	called := 0
	fb := &fakeBackend{generate: func(_ context.Context, _ GenerateRequest, emit func(Event) error) error {
		called++
		return emit(Event{FinishReason: FinishStop, Usage: &Usage{}})
	}}
	p, _ := inProcess(t, fakeEmbedder{fakeBackend: fb, embed: func(_ context.Context, r EmbedRequest) (EmbedResponse, error) {
		called++
		return EmbedResponse{Embeddings: make([][]float32, len(r.Input))}, nil
	}})
	ctx := context.Background()
	gen := func(r GenerateRequest) error { _, err := collect(ctx, p, r); return err }
	tests := []struct {
		name, field string
		call        func() error
	}{
		{"prompt", "prompt", func() error { return gen(GenerateRequest{Prompt: "ok \xff\xfe"}) }},
		{"truncated sequence", "prompt", func() error { return gen(GenerateRequest{Prompt: "caf\xc3"}) }},
		{"surrogate", "messages[1].content", func() error {
			return gen(GenerateRequest{Messages: []Message{{Role: "system", Content: "fine"}, {Role: "user", Content: "\xed\xa0\x80"}}})
		}},
		{"role", "messages[0].role", func() error { return gen(GenerateRequest{Messages: []Message{{Role: "us\x80er", Content: "x"}}}) }},
		{"name", "messages[0].name", func() error {
			return gen(GenerateRequest{Messages: []Message{{Role: "user", Content: "x", Name: "\xc0\xaf"}}})
		}},
		{"stop", "sampling.stop[1]", func() error {
			return gen(GenerateRequest{Prompt: "p", Sampling: Sampling{Stop: []string{"ok", "\xff"}}})
		}},
		{"request id", "request_id", func() error { return gen(GenerateRequest{Prompt: "p", RequestID: "\xfe"}) }},
		{"embed input", "input[2]", func() error {
			_, err := p.Embed(ctx, EmbedRequest{Input: []string{"a", "b", "c\xff"}})
			return err
		}},
		{"load model", "model", func() error {
			_, err := p.Load(ctx, LoadRequest{Model: "m\xff"})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !IsInvalidRequest(err) || !strings.Contains(err.Error(), tt.field+" is not valid UTF-8") {
				t.Errorf("got %v, want ErrInvalidRequest saying %q is not valid UTF-8", err, tt.field)
			}
		})
	}
	if called != 0 {
		t.Errorf("the plugin was called %d times with invalid UTF-8", called)
	}
	// NUL is valid UTF-8 and crosses the wire unchanged.
	var got GenerateRequest
	fb.generate = func(_ context.Context, r GenerateRequest, emit func(Event) error) error {
		got = r
		return emit(Event{FinishReason: FinishStop, Usage: &Usage{}})
	}
	if err := gen(GenerateRequest{Prompt: "a\x00b"}); err != nil || got.Prompt != "a\x00b" {
		t.Errorf("prompt with NUL: %v, plugin got %q", err, got.Prompt)
	}
}

// Text a plugin sends back that is not UTF-8 (a model's partial byte
// tokens) cannot fail the generation: each invalid byte sequence arrives as
// U+FFFD, the rest unchanged.
func TestInvalidUTF8FromThePluginBecomesReplacementCharacters(t *testing.T) {
	p, _ := inProcess(t, &fakeBackend{generate: func(_ context.Context, _ GenerateRequest, emit func(Event) error) error {
		if err := emit(Event{Text: "caf\xc3", Tokens: 1, Logprobs: []TokenLogprob{{Token: "\xc3", Top: []TopLogprob{{Token: "\xa9x"}}}}}); err != nil {
			return err
		}
		return emit(Event{Text: "a\x00b", Tokens: 1, FinishReason: FinishError, Error: "bad \xff", Usage: &Usage{}})
	}})
	evs, err := collect(context.Background(), p, GenerateRequest{Prompt: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Text != "caf\uFFFD" || evs[0].Logprobs[0].Token != "\uFFFD" || evs[0].Logprobs[0].Top[0].Token != "\uFFFDx" ||
		evs[1].Text != "a\x00b" || evs[1].Error != "bad \uFFFD" {
		t.Errorf("events %+v", evs)
	}
}
