package e2e

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
)

// TestVLLMProxyChain runs gateway → ragway-vllm-proxy → a second ragway
// gateway serving llama.cpp on the demo model: a real OpenAI-compatible
// upstream. Answers through the proxy must equal the upstream's own.
func TestVLLMProxyChain(t *testing.T) {
	lib, model := llamaFixtures(t)
	upstream := startGateway(t, llamaModels(lib, model))
	// The proxy authenticates to the upstream gateway with a key of its own.
	t.Setenv("RAGWAY_E2E_UPSTREAM_KEY", upstream.createKey("proxy", "chat"))
	front := startGateway(t, fmt.Sprintf(`
  - {name: proxied, backend: vllm-proxy, max_concurrency: 8, options: {upstreams: [%q], upstream_model: chat, timeout: 10s, health_interval: 200ms, api_key_env: RAGWAY_E2E_UPSTREAM_KEY}}
  - {name: proxied-embed, backend: vllm-proxy, embedding: true, options: {upstreams: [%q], upstream_model: embed, api_key_env: RAGWAY_E2E_UPSTREAM_KEY}}
`, upstream.URL, upstream.URL))
	direct, viaProxy := sdkClient(upstream), sdkClient(front)
	ctx := ctxTimeout(t, 120*time.Second)

	ask := func(c openai.Client, model, prompt string) openai.ChatCompletion {
		t.Helper()
		resp, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
			Temperature: openai.Float(0), MaxTokens: openai.Int(20),
		})
		if err != nil {
			t.Fatal(err)
		}
		return *resp
	}

	t.Run("greedy answers equal the upstream's, concurrently too", func(t *testing.T) {
		prompts := []string{"Tell me about the sea.", "What is a ship?", "Write about rain."}
		var wg sync.WaitGroup
		for _, p := range prompts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				want, got := ask(direct, "chat", p), ask(viaProxy, "proxied", p)
				if got.Choices[0].Message.Content != want.Choices[0].Message.Content || got.Choices[0].FinishReason != want.Choices[0].FinishReason {
					t.Errorf("%q: proxy %q (%s), upstream %q (%s)", p, got.Choices[0].Message.Content, got.Choices[0].FinishReason,
						want.Choices[0].Message.Content, want.Choices[0].FinishReason)
				}
				if got.Usage.PromptTokens != want.Usage.PromptTokens || got.Usage.CompletionTokens != want.Usage.CompletionTokens {
					t.Errorf("%q: usage via proxy %+v, upstream %+v", p, got.Usage, want.Usage)
				}
			}()
		}
		wg.Wait()
	})

	t.Run("streaming with usage", func(t *testing.T) {
		want := ask(direct, "chat", "Tell me about the sea.")
		text, usage := streamGreedy(t, ctx, viaProxy, "proxied", "Tell me about the sea.", 20)
		if text != want.Choices[0].Message.Content || usage.CompletionTokens != want.Usage.CompletionTokens {
			t.Fatalf("streamed %q usage %+v; upstream %q usage %+v", text, usage, want.Choices[0].Message.Content, want.Usage)
		}
	})

	t.Run("embeddings", func(t *testing.T) {
		in := openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"the sea", "a ship"}}
		want, err := direct.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "embed", Input: in})
		if err != nil {
			t.Fatal(err)
		}
		got, err := viaProxy.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "proxied-embed", Input: in})
		if err != nil {
			t.Fatal(err)
		}
		for i := range want.Data {
			a, b := want.Data[i].Embedding, got.Data[i].Embedding
			if len(a) != len(b) {
				t.Fatalf("embedding %d: %d dims via proxy, %d upstream", i, len(b), len(a))
			}
			for j := range a {
				if float32(a[j]) != float32(b[j]) {
					t.Fatalf("embedding %d differs at %d: %v vs %v", i, j, b[j], a[j])
				}
			}
		}
	})

	t.Run("structured output passes through both ways", func(t *testing.T) {
		schema := compileSchema(t, personSchema)
		params := openai.ChatCompletionNewParams{Model: "chat", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Describe a person.")},
			Temperature: openai.Float(0), MaxTokens: openai.Int(300), ResponseFormat: personFormat()}
		want, err := direct.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		params.Model = "proxied"
		got, err := viaProxy.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		validateJSON(t, schema, "the answer through the proxy", got.Choices[0].Message.Content)
		if got.Choices[0].Message.Content != want.Choices[0].Message.Content {
			t.Fatalf("through the proxy %q, upstream %q", got.Choices[0].Message.Content, want.Choices[0].Message.Content)
		}
	})

	t.Run("tool calls pass through both ways", func(t *testing.T) {
		msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the weather in Paris?")}
		params := openai.ChatCompletionNewParams{Model: "chat", Messages: msgs, Tools: weatherTools(),
			ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}, ParallelToolCalls: openai.Bool(false),
			Temperature: openai.Float(0), MaxTokens: openai.Int(300)}
		want, err := direct.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		params.Model = "proxied"
		got, err := viaProxy.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		w, g := want.Choices[0], got.Choices[0]
		if g.FinishReason != "tool_calls" || len(g.Message.ToolCalls) != 1 || len(w.Message.ToolCalls) != 1 ||
			g.Message.ToolCalls[0].Function.Name != w.Message.ToolCalls[0].Function.Name || g.Message.ToolCalls[0].Function.Arguments != w.Message.ToolCalls[0].Function.Arguments {
			t.Fatalf("through the proxy %+v, upstream %+v", g.Message, w.Message)
		}
		// Streamed, and the result fed back, through the proxy.
		stream := viaProxy.Chat.Completions.NewStreaming(ctx, params)
		var acc openai.ChatCompletionAccumulator
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if c := acc.Choices[0]; c.FinishReason != "tool_calls" || len(c.Message.ToolCalls) != 1 || c.Message.ToolCalls[0].Function.Arguments != w.Message.ToolCalls[0].Function.Arguments {
			t.Fatalf("streamed through the proxy: %+v", acc.Choices)
		}
		call := g.Message.ToolCalls[0]
		after, err := viaProxy.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "proxied", Tools: weatherTools(),
			Messages:    append(msgs, g.Message.ToParam(), openai.ToolMessage(`{"temperature": 18}`, call.ID)),
			Temperature: openai.Float(0), MaxTokens: openai.Int(5)})
		if err != nil || after.Usage.PromptTokens <= got.Usage.PromptTokens {
			t.Fatalf("the result through the proxy: %v %+v", err, after)
		}
	})

	t.Run("upstream down gives clean errors, the gateway stays up", func(t *testing.T) {
		_ = upstream.stop(syscall.SIGKILL)
		code, body := front.post("/v1/chat/completions", `{"model":"proxied","messages":[{"role":"user","content":"hi"}]}`)
		if code < 500 || !strings.Contains(string(body), `"error"`) {
			t.Fatalf("with the upstream gone: %d %s", code, body)
		}
		if code, _ := front.post("/v1/chat/completions", `{`); code != 400 {
			t.Fatalf("gateway unhealthy after its upstream died: %d", code)
		}
	})
}
