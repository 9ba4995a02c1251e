package main

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// Wire-format tests: a proxy against an upstream replaying vLLM's exact
// responses from testdata/*.http.

func TestGoldenStreams(t *testing.T) {
	chat := chatReq("Tell me about the sea.")
	prompt := sdk.GenerateRequest{Prompt: "Once upon a time"}
	withLogprobs := func(r sdk.GenerateRequest) sdk.GenerateRequest {
		r.Sampling.Logprobs, r.Sampling.TopLogprobs = true, 2
		return r
	}
	tests := []struct {
		name   string
		file   string
		path   string
		req    sdk.GenerateRequest
		text   string
		deltas []string // the delta events' text
		finish sdk.FinishReason
		usage  sdk.Usage
		lps    []sdk.TokenLogprob
	}{
		{
			name: "chat: role delta, content deltas, finish with the last text, usage chunk, [DONE]",
			file: "chat_stream.http", path: pathChat, req: chat,
			text: "The sea is calm.", deltas: []string{"The", " sea", " is", " calm", "."},
			finish: sdk.FinishStop, usage: sdk.Usage{PromptTokens: 21, CompletionTokens: 5, CachedTokens: 16},
		},
		{
			name: "chat: finish_reason length",
			file: "chat_length.http", path: pathChat, req: chat,
			text: "Once upon a", deltas: []string{"Once", " upon", " a"},
			finish: sdk.FinishLength, usage: sdk.Usage{PromptTokens: 12, CompletionTokens: 3},
		},
		{
			name: "chat: finish_reason abort is cancelled",
			file: "chat_abort.http", path: pathChat, req: chat,
			text: "Stopping", deltas: []string{"Stopping"},
			finish: sdk.FinishCancelled, usage: sdk.Usage{PromptTokens: 9, CompletionTokens: 1},
		},
		{
			name: "completion: text chunks",
			file: "completion_stream.http", path: pathCompletions, req: prompt,
			text: " upon a time,", deltas: []string{" upon", " a", " time", ","},
			finish: sdk.FinishLength, usage: sdk.Usage{PromptTokens: 4, CompletionTokens: 4},
		},
		{
			name: "chat: logprobs",
			file: "chat_logprobs.http", path: pathChat, req: withLogprobs(chat),
			text: "Hi!", deltas: []string{"Hi", "!"},
			finish: sdk.FinishStop, usage: sdk.Usage{PromptTokens: 10, CompletionTokens: 2},
			lps: []sdk.TokenLogprob{
				{Token: "Hi", Logprob: -0.3125, Top: []sdk.TopLogprob{{Token: "Hi", Logprob: -0.3125}, {Token: "Hello", Logprob: -1.5}}},
				{Token: "!", Logprob: -0.0625, Top: []sdk.TopLogprob{{Token: "!", Logprob: -0.0625}, {Token: ".", Logprob: -2.75}}},
			},
		},
		{
			name: "completion: legacy logprobs, alternatives most likely first",
			file: "completion_logprobs.http", path: pathCompletions, req: withLogprobs(prompt),
			text: " upon a", deltas: []string{" upon", " a"},
			finish: sdk.FinishLength, usage: sdk.Usage{PromptTokens: 4, CompletionTokens: 2},
			lps: []sdk.TokenLogprob{
				{Token: " upon", Logprob: -0.125, Top: []sdk.TopLogprob{{Token: " upon", Logprob: -0.125}, {Token: " a", Logprob: -2.5}}},
				{Token: " a", Logprob: -0.25, Top: []sdk.TopLogprob{{Token: " a", Logprob: -0.25}, {Token: " the", Logprob: -3}}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newReplay(t, map[string]string{"POST " + tc.path: tc.file})
			p, _ := load(t, map[string]any{"upstreams": ups(up.URL)})
			g := collect(context.Background(), p, tc.req)
			if g.err != nil {
				t.Fatal(g.err)
			}
			checkContract(t, g.events)
			var deltas []string
			var lps []sdk.TokenLogprob
			for _, e := range g.events {
				if !e.Final() {
					deltas = append(deltas, e.Text)
				}
				lps = append(lps, e.Logprobs...)
			}
			if g.text != tc.text || !reflect.DeepEqual(deltas, tc.deltas) {
				t.Errorf("text %q in deltas %q, want %q in %q", g.text, deltas, tc.text, tc.deltas)
			}
			if g.final.FinishReason != tc.finish || *g.final.Usage != tc.usage {
				t.Errorf("final %s %+v, want %s %+v", g.final.FinishReason, *g.final.Usage, tc.finish, tc.usage)
			}
			if !reflect.DeepEqual(lps, tc.lps) {
				t.Errorf("logprobs %+v, want %+v", lps, tc.lps)
			}
			posts := up.log.posts()
			if len(posts) != 1 || posts[0].Path != tc.path {
				t.Fatalf("upstream got %d POSTs, want one to %s", len(posts), tc.path)
			}
			var body map[string]any
			if err := json.Unmarshal(posts[0].Body, &body); err != nil {
				t.Fatal(err)
			}
			if body["stream"] != true || !reflect.DeepEqual(body["stream_options"], map[string]any{"include_usage": true}) || body["model"] != testModel {
				t.Errorf("request body %s: want stream, include_usage and model %q", posts[0].Body, testModel)
			}
		})
	}
}

// TestGoldenToolCalls: vLLM's streamed tool calls (the hermes parser's shape: a
// call's id, type and name with empty arguments, then argument fragments; the last
// chunk repeating the id and name with the finish reason, as vLLM's GLM parsers do)
// become tool-call deltas whose id and name come once per call, and the finish
// reason tool_calls; the request carries the tools, the choice and the history's
// calls and results as OpenAI's fields.
func TestGoldenToolCalls(t *testing.T) {
	up := newReplay(t, map[string]string{"POST " + pathChat: "chat_tool_calls.http"})
	p, _ := load(t, map[string]any{"upstreams": ups(up.URL)})
	req := chatReq("What is the weather and the time in Paris?")
	req.Tools = []sdk.Tool{{Name: "get_weather", Description: "Weather", Parameters: []byte(`{"type":"object"}`)}, {Name: "get_time"}}
	req.ToolChoice = &sdk.ToolChoice{Mode: sdk.ToolChoiceRequired}
	parallel := true
	req.ParallelToolCalls = &parallel
	req.Messages = append(req.Messages,
		sdk.Message{Role: "assistant", ToolCalls: []sdk.ToolCall{{ID: "call_1", Name: "get_time", Arguments: `{"timezone":"UTC"}`}}},
		sdk.Message{Role: "tool", ToolCallID: "call_1", Content: `{"time":"12:00"}`},
		sdk.Message{Role: "user", Content: "And in Paris?"})
	g := collect(context.Background(), p, req)
	if g.err != nil {
		t.Fatal(g.err)
	}
	checkContract(t, g.events)
	calls := map[int]*sdk.ToolCall{}
	for _, e := range g.events {
		for _, d := range e.ToolCalls {
			c := calls[d.Index]
			if c == nil {
				c = &sdk.ToolCall{}
				calls[d.Index] = c
			} else if d.ID != "" || d.Name != "" {
				t.Errorf("call %d: id and name again: %+v", d.Index, d)
			}
			c.ID += d.ID
			c.Name += d.Name
			c.Arguments += d.Arguments
		}
	}
	want := map[int]*sdk.ToolCall{
		0: {ID: "chatcmpl-tool-9c1e4b7a2f3d4e6b8a0c5d7e9f1a2b3c", Name: "get_weather", Arguments: `{"city": "Paris", "unit": "celsius"}`},
		1: {ID: "chatcmpl-tool-1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e", Name: "get_time", Arguments: `{"timezone": "Europe/Paris"}`},
	}
	if !reflect.DeepEqual(calls, want) || g.text != "" || g.final.FinishReason != sdk.FinishToolCalls || g.final.Usage.CompletionTokens != 39 {
		t.Fatalf("calls %+v text %q final %+v", calls, g.text, g.final)
	}
	var body map[string]any
	if err := json.Unmarshal(up.log.posts()[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	wantBody := map[string]any{
		"tools": []any{
			map[string]any{"type": "function", "function": map[string]any{"name": "get_weather", "description": "Weather", "parameters": map[string]any{"type": "object"}}},
			map[string]any{"type": "function", "function": map[string]any{"name": "get_time"}},
		},
		"tool_choice": "required", "parallel_tool_calls": true,
	}
	for k, v := range wantBody {
		if !reflect.DeepEqual(body[k], v) {
			t.Errorf("request %s: %v, want %v", k, body[k], v)
		}
	}
	msgs := body["messages"].([]any)
	call := msgs[len(msgs)-3].(map[string]any)
	result := msgs[len(msgs)-2].(map[string]any)
	if call["content"] != nil || !reflect.DeepEqual(call["tool_calls"], []any{map[string]any{"id": "call_1", "type": "function",
		"function": map[string]any{"name": "get_time", "arguments": `{"timezone":"UTC"}`}}}) || result["tool_call_id"] != "call_1" {
		t.Errorf("history's call and result: %v %v", call, result)
	}
}

func TestGoldenErrors(t *testing.T) {
	tests := []struct {
		name   string
		file   string
		is     func(error) bool // the sentinel the error must match, if any
		want   string           // in the message
		deltas string           // text emitted before the error
	}{
		{name: "HTTP 400, flat vLLM error object", file: "error_flat_400.http", is: sdk.IsInvalidRequest, want: "maximum context length is 2048 tokens"},
		{name: "HTTP 404, nested error object", file: "error_nested_404.http", is: sdk.IsInvalidRequest, want: "The model `gpt-4` does not exist."},
		{name: "HTTP 401, error as a string", file: "error_unauthorized_401.http", want: "unauthorised (HTTP 401: Unauthorized)"},
		{name: "HTTP 503", file: "error_overloaded_503.http", is: sdk.IsOverloaded, want: "overloaded or not ready"},
		{name: "error chunk before any token", file: "chat_error_before_tokens.http", is: sdk.IsInvalidRequest, want: "maximum context length is 2048"},
		{name: "error chunk after tokens", file: "chat_error_midstream.http", want: "Internal server error", deltas: "The answer"},
		{name: "flat error object in the stream", file: "chat_error_flat_stream.http", want: "Engine core died unexpectedly."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newReplay(t, map[string]string{"POST " + pathChat: tc.file})
			p, _ := load(t, map[string]any{"upstreams": ups(up.URL)})
			g := collect(context.Background(), p, chatReq("hello"))
			switch {
			case g.err == nil:
				t.Fatalf("no error; events %+v", g.events)
			case !strings.Contains(g.err.Error(), tc.want):
				t.Errorf("error %q does not say %q", g.err, tc.want)
			case tc.is != nil && !tc.is(g.err):
				t.Errorf("error %q does not match the expected sentinel", g.err)
			case tc.is == nil && (sdk.IsInvalidRequest(g.err) || sdk.IsOverloaded(g.err)):
				t.Errorf("error %q matches a sentinel it should not", g.err)
			}
			if g.text != tc.deltas || g.final.Final() {
				t.Errorf("emitted %q (final %v) before the error, want %q and no final event", g.text, g.final.Final(), tc.deltas)
			}
		})
	}
}

func TestGoldenHealthAndMetrics(t *testing.T) {
	up := newReplay(t, nil)
	p, logs := load(t, map[string]any{"upstreams": ups(up.URL), "health_interval": "20ms"})
	h, err := p.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// metrics.http: running 3+2 over two engines, waiting 4+0.
	if want := (sdk.Health{OK: true, Running: 5, Waiting: 4, Slots: slotsPerUpstream}); h != want {
		t.Fatalf("health %+v, want %+v", h, want)
	}

	up.route("GET /health", "health_dead_503.http")
	h = waitHealth(t, p, func(h sdk.Health) bool { return !h.OK })
	if h.Slots != 0 || !strings.Contains(h.Message, "HTTP 503") {
		t.Fatalf("with /health 503: %+v", h)
	}
	// The probe marks the upstream down, then logs it: the log may come a moment
	// after Health saw the state.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "upstream is down"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no log of the upstream going down:\n%s", logs)
		}
	}
	up.route("GET /health", "health_ok.http")
	waitHealth(t, p, func(h sdk.Health) bool { return h.OK })
}

// waitHealth polls Health until cond holds (the probe loop runs every 20ms).
func waitHealth(t *testing.T, p *proxy, cond func(sdk.Health) bool) sdk.Health {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h, err := p.Health(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if cond(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("health never reached the condition; last %+v", h)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestGoldenModels(t *testing.T) {
	up := newReplay(t, nil)
	p, _ := newTestProxy()
	mi, err := p.Load(context.Background(), sdk.LoadRequest{Model: testModel, Options: map[string]any{"upstreams": ups(up.URL)}})
	if err != nil {
		t.Fatal(err)
	}
	if mi.ContextLength != 32768 || !mi.HasChatTemplate {
		t.Errorf("model info %+v, want vLLM's max_model_len 32768 and a chat template", mi)
	}
	p.st.Load().stopProbe()

	_, err = newProxy(p.log).Load(context.Background(), sdk.LoadRequest{Model: "chat", Options: map[string]any{"upstreams": ups(up.URL)}})
	if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "upstream_model") || !strings.Contains(err.Error(), testModel) {
		t.Errorf("load of a model the upstream does not list = %v, want ErrInvalidRequest naming upstream_model and what it serves", err)
	}
}

func TestGoldenEmbeddings(t *testing.T) {
	up := newReplay(t, map[string]string{"POST " + pathEmbeddings: "embeddings.http"})
	p, _ := load(t, map[string]any{"upstreams": ups(up.URL)})
	r, err := p.Embed(context.Background(), sdk.EmbedRequest{Input: []string{"first", "second"}})
	if err != nil {
		t.Fatal(err)
	}
	want := sdk.EmbedResponse{Embeddings: [][]float32{{0.1, 0.2, 0.3, 0.4}, {0.5, -0.25, 0.125, 0}}, PromptTokens: 7}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("embed = %+v, want %+v (in input order)", r, want)
	}
	posts := up.log.posts()
	var body struct {
		Model string   `json:"model"`
		Input []string `json:"input"`
	}
	if err := json.Unmarshal(posts[len(posts)-1].Body, &body); err != nil || body.Model != testModel || !reflect.DeepEqual(body.Input, []string{"first", "second"}) {
		t.Errorf("embedding request %s", posts[len(posts)-1].Body)
	}
	// The golden answer has 2 embeddings: for 3 inputs it is a broken answer
	// (so is it for the probe input of an embedding model's Load).
	if _, err := p.Embed(context.Background(), sdk.EmbedRequest{Input: []string{"a", "b", "c"}}); err == nil || !strings.Contains(err.Error(), "2 embeddings for 3 inputs") {
		t.Errorf("embed with a short answer = %v", err)
	}
	_, err = newProxy(p.log).Load(context.Background(), sdk.LoadRequest{Model: testModel, Embedding: true, Options: map[string]any{"upstreams": ups(up.URL)}})
	if err == nil || !strings.Contains(err.Error(), "probe embedding failed") {
		t.Errorf("load of an embedding model whose upstream answers badly = %v", err)
	}
}
