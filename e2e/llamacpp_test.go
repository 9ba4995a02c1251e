package e2e

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/ragway/ragway/internal/testbin"
)

// llamaFixtures returns the llama.cpp library directory and the generated
// demo model, failing with what to run when they are missing.
func llamaFixtures(t *testing.T) (lib, model string) {
	t.Helper()
	lib = os.Getenv("RAGWAY_LLAMA_LIB")
	if lib == "" {
		lib = filepath.Join(testbin.Root(), ".data", "lib")
	}
	if _, err := os.Stat(filepath.Join(lib, "libllama.so")); err != nil {
		t.Fatalf("llama.cpp libraries not found in %s: run `task setup`", lib)
	}
	model = filepath.Join(testbin.Root(), ".data", "models", "demo.gguf")
	if _, err := os.Stat(model); err != nil {
		t.Fatalf("demo model missing: run `task models:demo` (%v)", err)
	}
	return lib, model
}

func llamaModels(lib, model string) string {
	return fmt.Sprintf(`
  - {name: chat, backend: llamacpp, max_concurrency: 4, options: {model_path: %q, lib_path: %q, threads: 1, parallel: 4, context_length: 512}}
  - {name: embed, backend: llamacpp, embedding: true, options: {model_path: %q, lib_path: %q, threads: 1, parallel: 2, context_length: 256, pooling: mean}}
`, model, lib, model, lib)
}

func greedyChat(t *testing.T, client openai.Client, ctx context.Context, prompt string, stop string) (string, string) {
	t.Helper()
	p := openai.ChatCompletionNewParams{
		Model:       "chat",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		Temperature: openai.Float(0),
		MaxTokens:   openai.Int(24),
	}
	if stop != "" {
		p.Stop = openai.ChatCompletionNewParamsStopUnion{OfString: openai.String(stop)}
	}
	resp, err := client.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Choices[0].Message.Content, resp.Choices[0].FinishReason
}

func TestLlamaCppThroughGateway(t *testing.T) {
	lib, model := llamaFixtures(t)
	g := startGateway(t, llamaModels(lib, model))
	client := sdkClient(g)
	ctx := ctxTimeout(t, 120*time.Second)

	solo, finish := greedyChat(t, client, ctx, "Tell me about the sea.", "")
	if solo == "" || (finish != "stop" && finish != "length") {
		t.Fatalf("greedy chat = %q (%s)", solo, finish)
	}

	t.Run("stream equals non-stream, with usage", func(t *testing.T) {
		text, usage := streamGreedy(t, ctx, client, "chat", "Tell me about the sea.", 24)
		if text != solo {
			t.Fatalf("streamed %q, non-stream %q", text, solo)
		}
		if usage.PromptTokens <= 0 || usage.CompletionTokens <= 0 || usage.CompletionTokens > 24 {
			t.Fatalf("usage %+v", usage)
		}
	})

	t.Run("concurrent greedy requests equal solo ones", func(t *testing.T) {
		prompts := []string{"Tell me about the sea.", "What is a ship?", "Write about rain.", "Name a colour."}
		want := make([]string, len(prompts))
		for i, p := range prompts {
			want[i], _ = greedyChat(t, client, ctx, p, "")
		}
		got := make([]string, len(prompts))
		var wg sync.WaitGroup
		for round := 0; round < 2; round++ {
			for i, p := range prompts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got[i], _ = greedyChat(t, client, ctx, p, "")
				}()
			}
			wg.Wait()
			for i := range prompts {
				if got[i] != want[i] {
					t.Fatalf("prompt %d batched = %q, solo = %q", i, got[i], want[i])
				}
			}
		}
	})

	t.Run("stop sequence", func(t *testing.T) {
		words := strings.Fields(solo)
		if len(words) < 3 {
			t.Skipf("greedy answer %q too short to cut", solo)
		}
		stop := words[len(words)/2]
		cut := solo[:strings.Index(solo, stop)]
		got, finish := greedyChat(t, client, ctx, "Tell me about the sea.", stop)
		if got != cut || finish != "stop" {
			t.Fatalf("with stop %q: %q (%s), want %q (stop)", stop, got, finish, cut)
		}
	})

	t.Run("the next turn of a chat reuses the cached prompt", func(t *testing.T) {
		turn := []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("You are brief."), openai.UserMessage("Tell me about ships and harbours.")}
		first, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "chat", Messages: turn, Temperature: openai.Float(0), MaxTokens: openai.Int(8)})
		if err != nil {
			t.Fatal(err)
		}
		turn = append(turn, openai.AssistantMessage(first.Choices[0].Message.Content), openai.UserMessage("And rivers?"))
		second, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "chat", Messages: turn, Temperature: openai.Float(0), MaxTokens: openai.Int(8)})
		if err != nil {
			t.Fatal(err)
		}
		if c := second.Usage.PromptTokensDetails.CachedTokens; c < first.Usage.PromptTokens/2 {
			t.Fatalf("second turn: %d cached of %d prompt tokens (first turn had %d)", c, second.Usage.PromptTokens, first.Usage.PromptTokens)
		}
	})

	t.Run("completions", func(t *testing.T) {
		resp, err := client.Completions.New(ctx, openai.CompletionNewParams{
			Model: "chat", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
			Temperature: openai.Float(0), MaxTokens: openai.Int(8),
		})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Choices[0].Text == "" || resp.Usage.CompletionTokens == 0 || resp.Usage.CompletionTokens > 8 {
			t.Fatalf("completion %+v", resp)
		}
	})

	t.Run("embeddings", func(t *testing.T) {
		in := []string{"the sea is wide", "ships sail on it"}
		get := func() [][]float64 {
			resp, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
				Model: "embed", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: in},
			})
			if err != nil {
				t.Fatal(err)
			}
			var out [][]float64
			for _, d := range resp.Data {
				out = append(out, d.Embedding)
			}
			return out
		}
		a, b := get(), get()
		if len(a) != 2 || len(a[0]) != 64 {
			t.Fatalf("got %d vectors of %d dims, want 2 of 64", len(a), len(a[0]))
		}
		for i := range a {
			var norm float64
			for j := range a[i] {
				norm += a[i][j] * a[i][j]
				if a[i][j] != b[i][j] {
					t.Fatalf("embedding %d not deterministic", i)
				}
			}
			if math.Abs(math.Sqrt(norm)-1) > 1e-4 {
				t.Fatalf("embedding %d has norm %v, want 1", i, math.Sqrt(norm))
			}
		}
	})

	t.Run("cancel mid-stream frees the slot", func(t *testing.T) {
		req, _ := http.NewRequest("POST", g.URL+"/v1/chat/completions", strings.NewReader(
			`{"model":"chat","stream":true,"max_tokens":400,"messages":[{"role":"user","content":"Tell me a long story."}]}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+g.Key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1024)
		if _, err := resp.Body.Read(buf); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		g.waitFor("the chat replica to be idle again", 10*time.Second, func(_ int, r readiness) bool {
			for _, m := range r.Models {
				if m.Name == "chat" {
					return m.Replicas[0].State == "ready"
				}
			}
			return false
		})
		if got, _ := greedyChat(t, client, ctx, "Tell me about the sea.", ""); got != solo {
			t.Fatalf("after a cancelled stream: %q, want %q", got, solo)
		}
	})
}

func TestLlamaCppLoadErrorsKeepTheGatewayUp(t *testing.T) {
	lib, model := llamaFixtures(t)
	corrupt := writeFile(t, "corrupt.gguf", "GGUF this is not a model at all")
	g := launchGateway(t, llamaModels(lib, model)+fmt.Sprintf(`
  - {name: corrupt, backend: llamacpp, options: {model_path: %q, lib_path: %q, threads: 1}}
  - {name: nolib, backend: llamacpp, options: {model_path: %q, lib_path: %q, threads: 1}}
`, corrupt, lib, model, t.TempDir()))
	r := g.waitFor("the broken models to fail", 60*time.Second, func(_ int, r readiness) bool {
		failed := 0
		for _, m := range r.Models {
			if (m.Name == "corrupt" || m.Name == "nolib") && m.Replicas[0].State == "failed" {
				failed++
			}
		}
		return failed == 2
	})
	for _, m := range r.Models {
		switch m.Name {
		case "corrupt":
			if e := m.Replicas[0].LastError; !strings.Contains(e, "could not load") || !strings.Contains(e, "corrupt.gguf") {
				t.Errorf("corrupt model's error %q does not say what failed", e)
			}
		case "nolib":
			if e := m.Replicas[0].LastError; !strings.Contains(e, "task setup") {
				t.Errorf("missing library error %q does not say what to run", e)
			}
		}
	}
	g.waitFor("the good model to serve", 30*time.Second, func(_ int, r readiness) bool {
		for _, m := range r.Models {
			if m.Name == "chat" {
				return m.Replicas[0].State == "ready"
			}
		}
		return false
	})
	if code, body := g.post("/v1/chat/completions", `{"model":"chat","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`); code != 200 {
		t.Fatalf("good model with broken neighbours: %d %s", code, body)
	}
}
