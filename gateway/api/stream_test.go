package api_test

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/api"
	"github.com/ragway/ragway/gateway/api/apitest"
	"github.com/ragway/ragway/gateway/workers"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

func TestChatStreamShape(t *testing.T) {
	for _, includeUsage := range []bool{true, false} {
		t.Run(map[bool]string{true: "include_usage", false: "no_usage"}[includeUsage], func(t *testing.T) {
			s := start(t, newFake(), api.Options{})
			s.fake.SetGenerate(apitest.Script([]string{"Hel", "lo \"", "wörld\n"}, sdk.FinishStop, sdk.Usage{PromptTokens: 4, CompletionTokens: 3}))
			body := `{"model":"chat","stream":true,"messages":[{"role":"user","content":"x"}]}`
			if includeUsage {
				body = `{"model":"chat","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`
			}
			data := dataEvents(readSSE(t, s.post(t, "/v1/chat/completions", body)))
			if len(data) < 2 || data[len(data)-1] != "[DONE]" {
				t.Fatalf("stream %q does not end with [DONE]", data)
			}
			data = data[:len(data)-1]
			var id string
			var text strings.Builder
			for i, d := range data {
				c, keys := parseChunk(t, d)
				if i == 0 {
					id = c.ID
				}
				if c.ID != id || !strings.HasPrefix(id, "chatcmpl-") || c.Object != "chat.completion.chunk" || c.Model != "chat" || c.Created == 0 {
					t.Errorf("chunk %d envelope: %s", i, d)
				}
				_, hasUsage := keys["usage"]
				last := i == len(data)-1
				switch {
				case includeUsage && last:
					var u map[string]int
					_ = json.Unmarshal(c.Usage, &u)
					if len(c.Choices) != 0 || string(keys["choices"]) != "[]" || u["prompt_tokens"] != 4 || u["completion_tokens"] != 3 || u["total_tokens"] != 7 {
						t.Errorf("usage chunk %s", d)
					}
					continue
				case includeUsage && string(c.Usage) != "null":
					t.Errorf("chunk %d: usage %s, want null", i, c.Usage)
				case !includeUsage && hasUsage:
					t.Errorf("chunk %d has usage without include_usage: %s", i, d)
				}
				if len(c.Choices) != 1 || c.Choices[0].Index != 0 || c.Choices[0].Delta == nil {
					t.Fatalf("chunk %d choices: %s", i, d)
				}
				ch := c.Choices[0]
				switch {
				case i == 0:
					if ch.Delta.Role == nil || *ch.Delta.Role != "assistant" || ch.Delta.Content == nil || *ch.Delta.Content != "" || ch.FinishReason != nil {
						t.Errorf("first chunk %s, want the role delta", d)
					}
				case ch.FinishReason != nil:
					if *ch.FinishReason != "stop" || ch.Delta.Content != nil || (includeUsage && i != len(data)-2) || (!includeUsage && !last) {
						t.Errorf("finish chunk %d %s", i, d)
					}
				default:
					if ch.Delta.Content == nil || ch.Delta.Role != nil {
						t.Errorf("content chunk %s", d)
					} else {
						text.WriteString(*ch.Delta.Content)
					}
				}
			}
			if text.String() != "Hello \"wörld\n" {
				t.Errorf("streamed text %q", text.String())
			}
		})
	}
}

func TestChatStreamN2(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	s.fake.SetGenerate(apitest.Script([]string{"a", "b"}, sdk.FinishLength, sdk.Usage{PromptTokens: 3, CompletionTokens: 2}))
	data := dataEvents(readSSE(t, s.post(t, "/v1/chat/completions", `{"model":"chat","n":2,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`)))
	texts := map[int]string{}
	finishes := map[int]string{}
	for _, d := range data[:len(data)-2] {
		c, _ := parseChunk(t, d)
		ch := c.Choices[0]
		if _, done := finishes[ch.Index]; done {
			t.Errorf("chunk after the finish of choice %d: %s", ch.Index, d)
		}
		if ch.Delta.Content != nil {
			texts[ch.Index] += *ch.Delta.Content
		}
		if ch.FinishReason != nil {
			finishes[ch.Index] = *ch.FinishReason
		}
	}
	if texts[0] != "ab" || texts[1] != "ab" || finishes[0] != "length" || finishes[1] != "length" {
		t.Errorf("texts %v finishes %v", texts, finishes)
	}
	c, _ := parseChunk(t, data[len(data)-2])
	if string(c.Usage) != `{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}` {
		t.Errorf("usage %s", c.Usage)
	}
}

func TestCompletionsStreamAndNonStream(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	s.fake.SetGenerate(apitest.Script([]string{"one", " two"}, sdk.FinishStop, sdk.Usage{PromptTokens: 2, CompletionTokens: 2}))
	data := dataEvents(readSSE(t, s.post(t, "/v1/completions", `{"model":"chat","prompt":"count","stream":true,"stream_options":{"include_usage":true}}`)))
	want := []string{
		`{"index":0,"text":"one","logprobs":null,"finish_reason":null}`,
		`{"index":0,"text":" two","logprobs":null,"finish_reason":null}`,
		`{"index":0,"text":"","logprobs":null,"finish_reason":"stop"}`,
	}
	if len(data) != len(want)+2 || data[len(data)-1] != "[DONE]" {
		t.Fatalf("stream %q", data)
	}
	for i, w := range want {
		var m map[string]json.RawMessage
		_ = json.Unmarshal([]byte(data[i]), &m)
		if string(m["object"]) != `"text_completion"` || !strings.HasPrefix(string(m["id"]), `"cmpl-`) || string(m["choices"]) != "["+w+"]" || string(m["usage"]) != "null" {
			t.Errorf("chunk %d %s, want choices [%s]", i, data[i], w)
		}
	}
	if !strings.Contains(data[3], `"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4}`) {
		t.Errorf("usage chunk %s", data[3])
	}

	// Non-stream, two prompts × n=2: choices indexed prompt*n+k, prompt
	// tokens counted once per prompt; max_tokens defaults to 16.
	s.fake.SetGenerate(apitest.Echo)
	var out struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Model   string `json:"model"`
		Choices []struct {
			Index        int             `json:"index"`
			Text         string          `json:"text"`
			Logprobs     json.RawMessage `json:"logprobs"`
			FinishReason string          `json:"finish_reason"`
		} `json:"choices"`
		Usage map[string]int `json:"usage"`
	}
	decodeJSON(t, s.post(t, "/v1/completions", `{"model":"default","prompt":["a b","c d e"],"n":2}`), 200, &out)
	if out.Object != "text_completion" || out.Model != "default" || len(out.Choices) != 4 {
		t.Fatalf("%+v", out)
	}
	for i, c := range out.Choices {
		want := []string{"a b", "a b", "c d e", "c d e"}[i]
		if c.Index != i || c.Text != want || c.FinishReason != "stop" || string(c.Logprobs) != "null" {
			t.Errorf("choice %d %+v", i, c)
		}
	}
	if out.Usage["prompt_tokens"] != 5 || out.Usage["completion_tokens"] != 10 || out.Usage["total_tokens"] != 15 {
		t.Errorf("usage %v", out.Usage)
	}
	for _, c := range s.fake.Calls()[1:] {
		if c.Req.Sampling.MaxTokens != 16 || c.Req.Messages != nil {
			t.Errorf("completion request %+v", c.Req)
		}
	}
}

func TestStreamErrorAfterTokens(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	s.fake.SetGenerate(apitest.Fail(sdk.ErrPluginShutdown, "par", "tial"))
	data := dataEvents(readSSE(t, s.post(t, "/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"x"}]}`)))
	if len(data) != 5 {
		t.Fatalf("stream %q", data)
	}
	if data[4] != "[DONE]" {
		t.Errorf("last event %q", data[4])
	}
	checkErrorBody(t, []byte(data[3]), "application/json", "server_error", "backend_error", "")
}

func TestStreamHeartbeatWhileWaiting(t *testing.T) {
	s := start(t, newFake(), api.Options{HeartbeatInterval: 10 * time.Millisecond})
	release := make(chan struct{})
	s.fake.SetGenerate(func(ctx context.Context, _ string, _ sdk.GenerateRequest, emit func(sdk.Event) error) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return apitest.Script([]string{"late"}, sdk.FinishStop, sdk.Usage{})(ctx, "", sdk.GenerateRequest{}, emit)
	})
	resp := s.post(t, "/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"x"}]}`)
	defer resp.Body.Close()
	// The response was committed by the first heartbeat: 200 and SSE headers
	// arrive before any token.
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	checkSSEHeaders(t, resp)
	r := newSSEReader(resp.Body)
	for i := range 3 {
		ev, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.comment != "ping" {
			t.Fatalf("event %d: %+v, want a ping comment", i, ev)
		}
	}
	close(release)
	var data []string
	for {
		ev, err := r.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.comment == "" {
			data = append(data, ev.data)
		}
	}
	if len(data) != 4 || !strings.Contains(data[0], `"role":"assistant"`) || !strings.Contains(data[1], `"content":"late"`) || data[3] != "[DONE]" {
		t.Errorf("after heartbeats: %q", data)
	}
}

func TestStreamEarlyErrorIsPlainHTTP(t *testing.T) {
	// An error before the first event, even after a while, is a normal
	// HTTP error as long as no heartbeat was due.
	s := start(t, newFake(), api.Options{HeartbeatInterval: time.Minute})
	release := make(chan struct{})
	s.fake.SetGenerate(func(ctx context.Context, _ string, _ sdk.GenerateRequest, emit func(sdk.Event) error) error {
		<-release
		return &workers.QueueFullError{Model: "chat"}
	})
	go func() { close(release) }()
	checkError(t, s.post(t, "/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"x"}]}`), 429, "rate_limit_error", "queue_full", "")
}

// cancelProbe is a backend behaviour that records when its context was
// cancelled.
type cancelProbe struct {
	cancelled chan struct{}
	emitted   atomic.Int64
}

func newCancelProbe() *cancelProbe { return &cancelProbe{cancelled: make(chan struct{})} }

// endless emits tokens as fast as the gateway takes them.
func (p *cancelProbe) endless(ctx context.Context, _ string, _ sdk.GenerateRequest, emit func(sdk.Event) error) error {
	defer p.noticed(ctx)
	for ctx.Err() == nil {
		if err := emit(sdk.Event{Text: "tok ", Tokens: 1}); err != nil {
			return err
		}
		p.emitted.Add(1)
	}
	return ctx.Err()
}

// one emits a token, then waits for cancellation.
func (p *cancelProbe) one(ctx context.Context, _ string, _ sdk.GenerateRequest, emit func(sdk.Event) error) error {
	defer p.noticed(ctx)
	if err := emit(sdk.Event{Text: "only", Tokens: 1}); err != nil {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

func (p *cancelProbe) noticed(ctx context.Context) {
	<-ctx.Done() // the backend's ctx must be cancelled, not just emit failing
	close(p.cancelled)
}

func (p *cancelProbe) wait(t *testing.T) {
	t.Helper()
	select {
	case <-p.cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend's context was not cancelled after the client went away")
	}
}

func TestStreamClientDisconnectCancelsBackend(t *testing.T) {
	t.Run("busy stream", func(t *testing.T) {
		s := start(t, newFake(), api.Options{})
		p := newCancelProbe()
		s.fake.SetGenerate(p.endless)
		resp := s.post(t, "/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"x"}]}`)
		r := newSSEReader(resp.Body)
		for range 10 {
			if _, err := r.next(); err != nil {
				t.Fatal(err)
			}
		}
		resp.Body.Close()
		p.wait(t)
	})
	t.Run("idle stream", func(t *testing.T) {
		// The backend is silent after one token: heartbeats make the dead
		// client visible.
		s := start(t, newFake(), api.Options{HeartbeatInterval: 10 * time.Millisecond})
		p := newCancelProbe()
		s.fake.SetGenerate(p.one)
		resp := s.post(t, "/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"x"}]}`)
		r := newSSEReader(resp.Body)
		for {
			ev, err := r.next()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(ev.data, `"content":"only"`) {
				break
			}
		}
		resp.Body.Close()
		p.wait(t)
	})
	t.Run("n=2", func(t *testing.T) {
		s := start(t, newFake(), api.Options{})
		var probes [2]*cancelProbe
		var next atomic.Int32
		probes[0], probes[1] = newCancelProbe(), newCancelProbe()
		s.fake.SetGenerate(func(ctx context.Context, m string, req sdk.GenerateRequest, emit func(sdk.Event) error) error {
			return probes[next.Add(1)-1].endless(ctx, m, req, emit)
		})
		resp := s.post(t, "/v1/chat/completions", `{"model":"chat","n":2,"stream":true,"messages":[{"role":"user","content":"x"}]}`)
		r := newSSEReader(resp.Body)
		for range 10 {
			if _, err := r.next(); err != nil {
				t.Fatal(err)
			}
		}
		resp.Body.Close()
		probes[0].wait(t)
		probes[1].wait(t)
	})
}

func TestStreamBackpressureIsBounded(t *testing.T) {
	// A client that does not read stalls the backend instead of making the
	// gateway buffer: emit blocks once the queue and the socket buffers are
	// full.
	s := start(t, newFake(), api.Options{})
	blocked := make(chan int64, 1)
	big := strings.Repeat("x", 16<<10)
	const total = 2048 // 32 MiB if nothing pushed back
	var emitted atomic.Int64
	s.fake.SetGenerate(func(ctx context.Context, _ string, _ sdk.GenerateRequest, emit func(sdk.Event) error) error {
		for range total {
			timer := time.AfterFunc(200*time.Millisecond, func() {
				select {
				case blocked <- emitted.Load():
				default:
				}
			})
			err := emit(sdk.Event{Text: big, Tokens: 1})
			timer.Stop()
			if err != nil {
				return err
			}
			emitted.Add(1)
		}
		return emit(sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{}})
	})
	resp := s.post(t, "/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"x"}]}`)
	defer resp.Body.Close()
	var n int64
	select {
	case n = <-blocked:
	case <-time.After(20 * time.Second):
		t.Fatal("emit never blocked on a client that does not read")
	}
	t.Logf("emit blocked after %d events of 16 KiB", n)
	if n >= total/2 {
		t.Fatalf("%d events of 16 KiB were taken before emit blocked", n)
	}
	// Reading the rest lets the generation finish.
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(got), "data: [DONE]\n\n") || emitted.Load() != total {
		t.Errorf("stream did not complete: %d events emitted", emitted.Load())
	}
}
