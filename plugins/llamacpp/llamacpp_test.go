package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	sdk "github.com/ragway/ragway/plugin-sdk"
	"github.com/ragway/ragway/plugin-sdk/sdktest"
	"github.com/ragway/ragway/plugins/llamacpp/gguf"
)

// repoRoot is the repository root (two levels up from this package).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// fixtures returns the llama.cpp library directory and the demo model,
// failing with what to run when `task setup` / `task models:demo` have not.
func fixtures(t *testing.T) (lib, model string) {
	t.Helper()
	lib = os.Getenv("RAGWAY_LLAMA_LIB")
	if lib == "" {
		lib = filepath.Join(repoRoot(), ".data", "lib")
	}
	if _, err := os.Stat(filepath.Join(lib, "libllama.so")); err != nil {
		t.Fatalf("llama.cpp libraries not found in %s: run `task setup` (or set RAGWAY_LLAMA_LIB)", lib)
	}
	model = filepath.Join(repoRoot(), ".data", "models", "demo.gguf")
	if _, err := os.Stat(model); err != nil {
		t.Fatalf("demo model not found: run `task models:demo` (%v)", err)
	}
	return lib, model
}

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// pluginBinary returns $RAGWAY_BIN_DIR/ragway-llamacpp, or builds it once
// per test run.
func pluginBinary(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("RAGWAY_BIN_DIR"); d != "" {
		if p := filepath.Join(d, "ragway-llamacpp"); fileExists(p) {
			return p
		}
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ragway-llamacpp-test-")
		if err != nil {
			buildErr = err
			return
		}
		built = filepath.Join(dir, "ragway-llamacpp")
		if b, err := exec.Command("go", "build", "-o", built, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, b)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func TestConformance(t *testing.T) {
	lib, model := fixtures(t)
	sdktest.Run(t, sdktest.Config{
		Path:    pluginBinary(t),
		Options: map[string]any{"model_path": model, "lib_path": lib, "threads": 1, "parallel": 4, "context_length": 512},
		Messages: []sdk.Message{
			{Role: "system", Content: "You are a test."},
			{Role: "user", Content: "Write a long story about the sea and the ships that sail on it."},
		},
	})
}

func TestConformanceEmbedding(t *testing.T) {
	lib, model := fixtures(t)
	sdktest.Run(t, sdktest.Config{
		Path:      pluginBinary(t),
		Embedding: true,
		// No pooling option: the demo GGUF names none, so the plugin pools by mean.
		Options: map[string]any{"model_path": model, "lib_path": lib, "threads": 1, "parallel": 2, "context_length": 256},
	})
}

// launch starts the plugin with options merged over a working demo setup.
func launch(t *testing.T, extra map[string]any) *sdk.Plugin {
	p, _ := launchInfo(t, extra)
	return p
}

func launchInfo(t *testing.T, extra map[string]any) (*sdk.Plugin, sdk.ModelInfo) {
	t.Helper()
	return launchModel(t, sdk.LoadRequest{Model: "m"}, map[string]any{"context_length": 512}, extra)
}

// launchModel starts the plugin and loads req's model with the demo setup, base and
// extra merged in that order.
func launchModel(t *testing.T, req sdk.LoadRequest, base, extra map[string]any) (*sdk.Plugin, sdk.ModelInfo) {
	t.Helper()
	lib, model := fixtures(t)
	ctx := context.Background()
	p, err := sdk.Launch(ctx, sdk.LaunchConfig{Path: pluginBinary(t), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	req.Options = map[string]any{"model_path": model, "lib_path": lib, "threads": 1, "parallel": 2}
	for _, m := range []map[string]any{base, extra} {
		for k, v := range m {
			req.Options[k] = v
		}
	}
	mi, err := p.Load(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return p, mi
}

type result struct {
	text   string
	final  sdk.Event
	events []sdk.Event
}

func run(t *testing.T, p *sdk.Plugin, req sdk.GenerateRequest) result {
	t.Helper()
	var r result
	err := p.Generate(context.Background(), req, func(e sdk.Event) error {
		r.text += e.Text
		r.events = append(r.events, e)
		if e.Final() {
			r.final = e
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func f64(v float64) *float64 { return &v }
func i64(v int64) *int64     { return &v }

func TestPromptPrefixIsReused(t *testing.T) {
	p := launch(t, nil)
	greedy := sdk.Sampling{Temperature: f64(0), MaxTokens: 8}
	turn1 := []sdk.Message{{Role: "system", Content: "You are brief."}, {Role: "user", Content: "Tell me about the sea and the ships."}}
	first := run(t, p, sdk.GenerateRequest{Messages: turn1, Sampling: greedy})
	if first.final.Usage.CachedTokens != 0 {
		t.Fatalf("first request reused %d cached tokens from nowhere", first.final.Usage.CachedTokens)
	}
	turn2 := append(turn1, sdk.Message{Role: "assistant", Content: first.text}, sdk.Message{Role: "user", Content: "And the rain?"})
	second := run(t, p, sdk.GenerateRequest{Messages: turn2, Sampling: greedy})
	if c := second.final.Usage.CachedTokens; c < first.final.Usage.PromptTokens/2 {
		t.Fatalf("second turn reused %d of the first turn's %d prompt tokens", c, first.final.Usage.PromptTokens)
	}
	// Reuse must not change the answer: a fresh process gives the same.
	fresh := launch(t, nil)
	if again := run(t, fresh, sdk.GenerateRequest{Messages: turn2, Sampling: greedy}); again.text != second.text {
		t.Fatalf("with cached prefix %q, fresh %q", second.text, again.text)
	}
}

func TestSeededSamplingIsReproducible(t *testing.T) {
	p := launch(t, nil)
	req := func(seed int64) sdk.GenerateRequest {
		return sdk.GenerateRequest{Prompt: "Once upon a time", Sampling: sdk.Sampling{Temperature: f64(1.2), TopK: 40, TopP: f64(0.95), MinP: 0.01, Seed: i64(seed), MaxTokens: 24, RepetitionPenalty: 1.1}}
	}
	a, b, c := run(t, p, req(42)), run(t, p, req(42)), run(t, p, req(7))
	if a.text != b.text {
		t.Fatalf("same seed, different text:\n%q\n%q", a.text, b.text)
	}
	if a.text == c.text {
		t.Fatalf("seeds 42 and 7 gave the same %d-token text %q", a.final.Usage.CompletionTokens, a.text)
	}
}

func TestContextEndFinishesWithLength(t *testing.T) {
	// llama.cpp rounds the context up (to 256 cells per sequence here);
	// Load reports what it really is.
	p, mi := launchInfo(t, map[string]any{"context_length": 32})
	n := mi.ContextLength
	if n < 32 || n > 512 {
		t.Fatalf("ModelInfo.ContextLength = %d for context_length 32", n)
	}
	r := run(t, p, sdk.GenerateRequest{Prompt: "Once upon a time", Sampling: sdk.Sampling{Temperature: f64(0)}})
	u := r.final.Usage
	if r.final.FinishReason != sdk.FinishLength || u.PromptTokens+u.CompletionTokens > n {
		t.Fatalf("finish %s with %d prompt + %d completion tokens in a %d-token context", r.final.FinishReason, u.PromptTokens, u.CompletionTokens, n)
	}
	err := p.Generate(context.Background(), sdk.GenerateRequest{Prompt: strings.Repeat("word ", n+10)}, func(sdk.Event) error { return nil })
	if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), fmt.Sprintf("context holds %d", n)) {
		t.Fatalf("overlong prompt: %v, want ErrInvalidRequest with the sizes", err)
	}
}

func TestLogprobs(t *testing.T) {
	p := launch(t, nil)
	r := run(t, p, sdk.GenerateRequest{Prompt: "Once upon a time", Sampling: sdk.Sampling{Temperature: f64(0), MaxTokens: 5, Logprobs: true, TopLogprobs: 3}})
	var lps []sdk.TokenLogprob
	for _, e := range r.events {
		lps = append(lps, e.Logprobs...)
	}
	if len(lps) != r.final.Usage.CompletionTokens {
		t.Fatalf("%d logprobs for %d tokens", len(lps), r.final.Usage.CompletionTokens)
	}
	for _, lp := range lps {
		if lp.Logprob > 0 || len(lp.Top) != 3 || lp.Top[0].Logprob < lp.Top[1].Logprob || lp.Top[1].Logprob < lp.Top[2].Logprob {
			t.Fatalf("logprob %+v: want <= 0 and 3 alternatives, best first", lp)
		}
		// Greedy: the chosen token is the most likely one.
		if lp.Token != lp.Top[0].Token || lp.Logprob != lp.Top[0].Logprob {
			t.Fatalf("greedy chose %q (%v) but the best was %q (%v)", lp.Token, lp.Logprob, lp.Top[0].Token, lp.Top[0].Logprob)
		}
	}
}

func TestChatTemplateOverride(t *testing.T) {
	msgs := []sdk.Message{{Role: "user", Content: "Hello there"}}
	greedy := sdk.Sampling{Temperature: f64(0), MaxTokens: 1}
	own := run(t, launch(t, nil), sdk.GenerateRequest{Messages: msgs, Sampling: greedy})
	llama2 := run(t, launch(t, map[string]any{"chat_template": "llama2"}), sdk.GenerateRequest{Messages: msgs, Sampling: greedy})
	if own.final.Usage.PromptTokens == llama2.final.Usage.PromptTokens {
		t.Fatalf("the llama2 template gave the same %d prompt tokens as the model's ChatML", own.final.Usage.PromptTokens)
	}
	lib, model := fixtures(t)
	bad, err := sdk.Launch(context.Background(), sdk.LaunchConfig{Path: pluginBinary(t), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Kill()
	_, err = bad.Load(context.Background(), sdk.LoadRequest{Model: "m", Options: map[string]any{"model_path": model, "lib_path": lib, "threads": 1, "chat_template": "no-such-template"}})
	if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "chat_template") {
		t.Fatalf("unknown template: %v, want ErrInvalidRequest naming chat_template", err)
	}
}

func TestStopTokenIDs(t *testing.T) {
	p := launch(t, nil)
	req := sdk.GenerateRequest{Messages: []sdk.Message{{Role: "user", Content: "Tell me about the sea."}}, Sampling: sdk.Sampling{Temperature: f64(0), MaxTokens: 24}}
	full := run(t, p, req)
	words := strings.Fields(full.text)
	if len(words) < 4 {
		t.Fatalf("greedy answer %q too short", full.text)
	}
	// The demo vocabulary has a "▁word" piece for each whole word it emits.
	id, ok := gguf.ChatVocab().Id("\u2581" + words[2])
	if !ok {
		t.Fatalf("no token for %q", words[2])
	}
	req.Sampling.StopTokenIDs = []int32{int32(id)}
	cut := run(t, p, req)
	want := full.text[:strings.Index(full.text, " "+words[2])]
	if cut.text != want || cut.final.FinishReason != sdk.FinishStop {
		t.Fatalf("stop_token_ids [%d] (%q): %q (%s), want %q", id, words[2], cut.text, cut.final.FinishReason, want)
	}
}

// TestJinjaChatTemplate: a chat_template option holding a Jinja template's text is
// rendered (not only names llama.cpp knows): ChatML written as Jinja gives what the
// model's own ChatML gives; a FastChat-style template gives exactly its text (the
// BOS it writes not doubled); raise_exception refuses messages; a broken template
// fails the load naming the option.
func TestJinjaChatTemplate(t *testing.T) {
	msgs := []sdk.Message{{Role: "user", Content: "Hello there"}}
	greedy := sdk.Sampling{Temperature: f64(0), MaxTokens: 4}
	own := run(t, launch(t, nil), sdk.GenerateRequest{Messages: msgs, Sampling: greedy})
	chatml := "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
		"{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
	jinja := run(t, launch(t, map[string]any{"chat_template": chatml}), sdk.GenerateRequest{Messages: msgs, Sampling: greedy})
	if jinja.text != own.text || jinja.final.Usage.PromptTokens != own.final.Usage.PromptTokens {
		t.Fatalf("ChatML as Jinja: %q (%d prompt tokens), the model's own: %q (%d)", jinja.text, jinja.final.Usage.PromptTokens,
			own.text, own.final.Usage.PromptTokens)
	}

	vicuna := "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system messages, please') }}" +
		"{% elif m.role == 'user' %}USER: {{ m.content }} {% else %}ASSISTANT: {{ m.content }}{{ eos_token }}{% endif %}{% endfor %}ASSISTANT:"
	p := launch(t, map[string]any{"chat_template": vicuna})
	got := run(t, p, sdk.GenerateRequest{Messages: msgs, Sampling: greedy})
	want, err := p.Tokenize(context.Background(), sdk.TokenizeRequest{Input: []string{"USER: Hello there ASSISTANT:"}})
	if err != nil {
		t.Fatal(err)
	}
	if got.final.Usage.PromptTokens != want.Counts[0] {
		t.Fatalf("the Jinja template's prompt: %d tokens, its text alone %d", got.final.Usage.PromptTokens, want.Counts[0])
	}
	err = p.Generate(context.Background(), sdk.GenerateRequest{Messages: []sdk.Message{{Role: "system", Content: "s"}, {Role: "user", Content: "x"}},
		Sampling: greedy}, func(sdk.Event) error { return nil })
	if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "no system messages, please") {
		t.Fatalf("raise_exception: %v, want ErrInvalidRequest with the template's words", err)
	}

	// messages[-1] of a one-message chat is that message (gonja alone gives None).
	last := launch(t, map[string]any{"chat_template": "{{ messages[-1].role }}: {{ messages[-1]['content'] }} / {{ messages[0].content }}\nA:"})
	got = run(t, last, sdk.GenerateRequest{Messages: msgs, Sampling: greedy})
	want, err = last.Tokenize(context.Background(), sdk.TokenizeRequest{Input: []string{"user: Hello there / Hello there\nA:"}})
	if err != nil || got.final.Usage.PromptTokens != want.Counts[0] {
		t.Fatalf("messages[-1]: %d prompt tokens, want %v (%v)", got.final.Usage.PromptTokens, want.Counts, err)
	}

	// gonja panics on some operations (a string times a negative number): the
	// request fails, the process lives on.
	panicky := launch(t, map[string]any{"chat_template": "{{ '-' * (3 - messages|length) }}{% for m in messages %}{{ m.content }} {% endfor %}"})
	four := []sdk.Message{{Role: "user", Content: "a"}, {Role: "assistant", Content: "b"}, {Role: "user", Content: "c"}, {Role: "assistant", Content: "d"}, {Role: "user", Content: "e"}}
	err = panicky.Generate(context.Background(), sdk.GenerateRequest{Messages: four, Sampling: greedy}, func(sdk.Event) error { return nil })
	if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "the chat template failed") {
		t.Fatalf("a template that panics: %v, want ErrInvalidRequest", err)
	}
	if r := run(t, panicky, sdk.GenerateRequest{Messages: msgs, Sampling: greedy}); r.final.Usage.CompletionTokens == 0 {
		t.Fatal("the plugin does not serve after a template panicked")
	}

	lib, model := fixtures(t)
	for _, bad := range []string{"{% for m in messages %}{{ m.content }}", "{% include 'other' %}{{ messages }}",
		"{% macro loop(n) %}{{ loop(n) }}{% endmacro %}{{ loop(1) }}"} {
		pl, err := sdk.Launch(context.Background(), sdk.LaunchConfig{Path: pluginBinary(t), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		_, err = pl.Load(context.Background(), sdk.LoadRequest{Model: "m", Options: map[string]any{"model_path": model, "lib_path": lib, "threads": 1, "chat_template": bad}})
		pl.Kill()
		if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "chat_template") {
			t.Fatalf("template %q: %v, want ErrInvalidRequest naming chat_template", bad, err)
		}
	}
}
