package main

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	sdk "github.com/ragway/ragway/plugin-sdk"
	"github.com/ragway/ragway/plugins/llamacpp/gguf"
)

// launchEmbedding starts the plugin with the demo model loaded for
// embeddings, options merged over a working setup.
func launchEmbedding(t *testing.T, extra map[string]any) (*sdk.Plugin, sdk.ModelInfo) {
	t.Helper()
	return launchModel(t, sdk.LoadRequest{Model: "e", Embedding: true}, map[string]any{"context_length": 256}, extra)
}

func tokenCounts(t *testing.T, p *sdk.Plugin, in ...string) []int {
	t.Helper()
	r, err := p.Tokenize(context.Background(), sdk.TokenizeRequest{Input: in})
	if err != nil {
		t.Fatalf("tokenize %q: %v", in, err)
	}
	return r.Counts
}

// The NUL rule: a NUL byte is the vocabulary's token for the byte 0x00 (the
// demo vocabulary has <0x00>), one token per NUL, in raw prompts, in chat
// messages and in embedding inputs; the text around it is tokenized as if
// the NUL were a special token between two texts.
func TestNULIsTheVocabularysByteToken(t *testing.T) {
	ctx := context.Background()
	e, _ := launchEmbedding(t, nil)
	c := tokenCounts(t, e, "x", "x\x00", "x\x00\x00", "\x00", "")
	if c[1] != c[0]+1 || c[2] != c[0]+2 || c[3] != c[4]+1 {
		t.Fatalf("token counts of x, x NUL, x NUL NUL, NUL, empty = %v: want one token per NUL", c)
	}
	r, err := e.Embed(ctx, sdk.EmbedRequest{Input: []string{"x", "x\x00", "\x00"}})
	if err != nil {
		t.Fatalf("embed with NUL: %v", err)
	}
	if slices.Equal(r.Embeddings[0], r.Embeddings[1]) {
		t.Error("the NUL token changed nothing in the embedding of x NUL")
	}
	if want := c[0] + c[1] + c[3]; r.PromptTokens != want {
		t.Errorf("embed PromptTokens = %d, Tokenize counts add up to %d", r.PromptTokens, want)
	}

	g := launch(t, nil)
	prompt := func(req sdk.GenerateRequest) int {
		t.Helper()
		req.Sampling = sdk.Sampling{Temperature: f64(0), MaxTokens: 2}
		return run(t, g, req).final.Usage.PromptTokens
	}
	if a, b := prompt(sdk.GenerateRequest{Prompt: "a\x00b"}), prompt(sdk.GenerateRequest{Prompt: "a\x00\x00b"}); b != a+1 {
		t.Errorf("raw prompts a NUL b and a NUL NUL b: %d and %d prompt tokens, want one more for the second NUL", a, b)
	}
	if n, want := prompt(sdk.GenerateRequest{Prompt: "a\x00b"}), tokenCounts(t, g, "a\x00b")[0]; n != want {
		t.Errorf("raw prompt a NUL b: %d prompt tokens, Tokenize counts %d", n, want)
	}
	msgs := func(content string) sdk.GenerateRequest {
		return sdk.GenerateRequest{Messages: []sdk.Message{{Role: "system", Content: "be\x00 brief"}, {Role: "user", Content: content}}}
	}
	if a, b := prompt(msgs("hi\x00there")), prompt(msgs("hi\x00\x00there")); b != a+1 {
		t.Errorf("chat with hi NUL there and hi NUL NUL there: %d and %d prompt tokens, want one more for the second NUL", a, b)
	}
}

// The limits of one input are exact and named: an embedding input may have
// MaxInputTokens = min(context per sequence, batch size) tokens; one more
// is ErrInvalidRequest naming the input and both sizes, unless Truncate
// cuts it to its first MaxInputTokens tokens.
func TestEmbeddingInputLimit(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name  string
		opts  map[string]any
		limit int
	}{
		{"context", map[string]any{"context_length": 256, "batch_size": 512}, 256},
		{"batch", map[string]any{"context_length": 512, "batch_size": 64}, 64},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, mi := launchEmbedding(t, tt.opts)
			if mi.MaxInputTokens != tt.limit {
				t.Fatalf("MaxInputTokens = %d with %v, want %d", mi.MaxInputTokens, tt.opts, tt.limit)
			}
			// "x" is one token after BOS in the demo vocabulary.
			fits, over := strings.Repeat("x", tt.limit-1), strings.Repeat("x", tt.limit)
			if c := tokenCounts(t, p, fits, over); c[0] != tt.limit || c[1] != tt.limit+1 {
				t.Fatalf("token counts %v, want %d and %d", c, tt.limit, tt.limit+1)
			}
			if _, err := p.Embed(ctx, sdk.EmbedRequest{Input: []string{fits}}); err != nil {
				t.Fatalf("embed of %d tokens: %v", tt.limit, err)
			}
			_, err := p.Embed(ctx, sdk.EmbedRequest{Input: []string{"ok", "fine", over}})
			if want := fmt.Sprintf("input[2] is %d tokens; at most %d fit", tt.limit+1, tt.limit); !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), want) {
				t.Fatalf("embed of %d tokens = %v, want ErrInvalidRequest %q", tt.limit+1, err, want)
			}
			// Truncation keeps the start: two long inputs that differ only
			// after the limit embed the same, and as the input cut to it.
			r, err := p.Embed(ctx, sdk.EmbedRequest{Input: []string{fits, over + " and then a different end", strings.Repeat("x", tt.limit-2) + "y but another end entirely"}, Truncate: true})
			if err != nil {
				t.Fatalf("embed with Truncate: %v", err)
			}
			same, other := cosine(r.Embeddings[0], r.Embeddings[1]), cosine(r.Embeddings[0], r.Embeddings[2])
			if same < 0.999999 || other >= same || slices.Equal(r.Embeddings[0], r.Embeddings[2]) {
				t.Errorf("truncated embeddings: cosine %v to the cut input (want 1), %v to one with another last token (want less)", same, other)
			}
			if r.PromptTokens != 3*tt.limit {
				t.Errorf("PromptTokens = %d for three inputs cut to %d, want %d", r.PromptTokens, tt.limit, 3*tt.limit)
			}
		})
	}
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / (math.Sqrt(na) * math.Sqrt(nb))
}

// A model whose vocabulary has no token for the byte 0x00 refuses text
// holding NUL, naming it, and keeps serving.
func TestNULWithoutAByteTokenIsRefused(t *testing.T) {
	cfg := gguf.Presets["demo"]
	f, err := gguf.Llama(cfg)
	if err != nil {
		t.Fatal(err)
	}
	renamed := false
	for i, kv := range f.Metadata {
		switch kv.Key {
		case "tokenizer.ggml.tokens":
			toks := slices.Clone(kv.Value.([]string))
			j := slices.Index(toks, "<0x00>")
			toks[j] = "<unused-nul>"
			f.Metadata[i].Value = toks
			renamed = true
		case "tokenizer.ggml.token_type":
			types := slices.Clone(kv.Value.([]int32))
			types[slices.Index(gguf.ChatVocab().Tokens, "<0x00>")] = int32(gguf.TokenNormal)
			f.Metadata[i].Value = types
		}
	}
	if !renamed {
		t.Fatal("no tokenizer.ggml.tokens in the generated model")
	}
	path := filepath.Join(t.TempDir(), "no-nul.gguf")
	if err := f.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, _ := launchEmbedding(t, map[string]any{"model_path": path})
	if _, err := p.Embed(ctx, sdk.EmbedRequest{Input: []string{"fine", "x\x00y"}}); !sdk.IsInvalidRequest(err) ||
		!strings.Contains(err.Error(), "input[1] contains a NUL byte (at byte 1)") {
		t.Errorf("embed with NUL = %v, want ErrInvalidRequest naming input[1]", err)
	}
	if _, err := p.Tokenize(ctx, sdk.TokenizeRequest{Input: []string{"\x00"}}); !sdk.IsInvalidRequest(err) {
		t.Errorf("tokenize of NUL = %v, want ErrInvalidRequest", err)
	}
	if r, err := p.Embed(ctx, sdk.EmbedRequest{Input: []string{"fine"}}); err != nil || len(r.Embeddings) != 1 {
		t.Errorf("embed after the refusals = %v", err)
	}
	g := launch(t, map[string]any{"model_path": path})
	err = g.Generate(ctx, sdk.GenerateRequest{Messages: []sdk.Message{{Role: "system", Content: "hi"}, {Role: "user", Content: "a\x00"}}}, func(sdk.Event) error { return nil })
	if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "messages[1].content contains a NUL byte (at byte 1)") {
		t.Errorf("chat with NUL = %v, want ErrInvalidRequest naming the message", err)
	}
	err = g.Generate(ctx, sdk.GenerateRequest{Prompt: "\x00"}, func(sdk.Event) error { return nil })
	if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "the prompt contains a NUL byte (at byte 0)") {
		t.Errorf("prompt with NUL = %v, want ErrInvalidRequest naming the prompt", err)
	}
	if g.Exited() || p.Exited() {
		t.Error("a plugin process exited")
	}
}

// A prompt longer than the batch but within the context is evaluated in
// several decode steps; one beyond the context is refused with both sizes.
func TestPromptLongerThanTheBatch(t *testing.T) {
	p, mi := launchInfo(t, map[string]any{"batch_size": 32, "context_length": 512})
	prompt := strings.Repeat("x", 200)
	want := tokenCounts(t, p, prompt)[0]
	if want <= 32 || want >= mi.ContextLength {
		t.Fatalf("the prompt is %d tokens; want more than the batch (32), less than the context (%d)", want, mi.ContextLength)
	}
	r := run(t, p, sdk.GenerateRequest{Prompt: prompt, Sampling: sdk.Sampling{Temperature: f64(0), MaxTokens: 4}})
	if r.final.Usage.PromptTokens != want {
		t.Errorf("PromptTokens = %d, Tokenize counts %d", r.final.Usage.PromptTokens, want)
	}
	msgs := []sdk.Message{{Role: "user", Content: strings.Repeat("x", mi.ContextLength+10)}}
	err := p.Generate(context.Background(), sdk.GenerateRequest{Messages: msgs}, func(sdk.Event) error { return nil })
	if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), fmt.Sprintf("the context holds %d", mi.ContextLength)) {
		t.Errorf("chat beyond the context = %v, want ErrInvalidRequest with the sizes", err)
	}
}
