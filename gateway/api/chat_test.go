package api_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/api"
	"github.com/ragway/ragway/gateway/api/apitest"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

type chatResponse struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		Logprobs     json.RawMessage `json:"logprobs"`
		FinishReason string          `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

func TestChatCompletion(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	s.fake.SetGenerate(apitest.Script([]string{"Hello", ", ", "wor\"ld\n"}, sdk.FinishLength, sdk.Usage{PromptTokens: 7, CompletionTokens: 3}))
	resp := s.post(t, "/v1/chat/completions", `{
		"model": "default",
		"messages": [
			{"role": "system", "content": "be brief"},
			{"role": "developer", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]},
			{"role": "user", "content": "hi", "name": "bob"},
			{"role": "assistant", "content": null},
			{"role": "tool", "content": "42", "tool_call_id": "t1"}
		],
		"temperature": 0.5, "top_p": 0.9, "max_tokens": 10, "max_completion_tokens": 20,
		"stop": ["\n\n", "", "END"], "seed": 9007199254740993,
		"presence_penalty": -1.5, "frequency_penalty": 2,
		"top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1,
		"stop_token_ids": [2, 7], "ignore_eos": true, "min_tokens": 3,
		"logprobs": false, "user": "u1", "some_future_field": {"x": [1, 2]}
	}`, "X-Request-Id", "client-req-1")
	if got := resp.Header.Get("X-Request-Id"); got != "client-req-1" {
		t.Errorf("X-Request-Id %q, want the client's", got)
	}
	var out chatResponse
	decodeJSON(t, resp, 200, &out)
	if !strings.HasPrefix(out.ID, "chatcmpl-") || out.Object != "chat.completion" || out.Model != "default" || out.Created < time.Now().Add(-time.Minute).Unix() {
		t.Errorf("envelope %+v", out)
	}
	if len(out.Choices) != 1 {
		t.Fatalf("choices %+v", out.Choices)
	}
	c := out.Choices[0]
	if c.Index != 0 || c.Message.Role != "assistant" || c.Message.Content != "Hello, wor\"ld\n" || c.FinishReason != "length" || string(c.Logprobs) != "null" {
		t.Errorf("choice %+v", c)
	}
	if out.Usage.PromptTokens != 7 || out.Usage.CompletionTokens != 3 || out.Usage.TotalTokens != 10 {
		t.Errorf("usage %+v", out.Usage)
	}

	calls := s.fake.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d calls", len(calls))
	}
	call := calls[0]
	if call.Model != "chat" {
		t.Errorf("backend got model %q, want the canonical name", call.Model)
	}
	if call.Req.RequestID != "client-req-1" {
		t.Errorf("RequestID %q", call.Req.RequestID)
	}
	wantMsgs := []sdk.Message{
		{Role: "system", Content: "be brief"},
		{Role: "developer", Content: "part one\npart two"},
		{Role: "user", Content: "hi", Name: "bob"},
		{Role: "assistant", Content: ""},
		{Role: "tool", Content: "42", ToolCallID: "t1"},
	}
	if !reflect.DeepEqual(call.Req.Messages, wantMsgs) {
		t.Errorf("messages %+v", call.Req.Messages)
	}
	temp, topP, seed := 0.5, 0.9, int64(9007199254740993)
	want := sdk.Sampling{
		Temperature: &temp, TopP: &topP, TopK: 40, MinP: 0.05, MaxTokens: 20,
		Stop: []string{"\n\n", "END"}, Seed: &seed, RepetitionPenalty: 1.1,
		PresencePenalty: -1.5, FrequencyPenalty: 2,
		StopTokenIDs: []int32{2, 7}, IgnoreEOS: true, MinTokens: 3,
	}
	if !reflect.DeepEqual(call.Req.Sampling, want) {
		t.Errorf("sampling\n got %+v\nwant %+v", fmtSampling(call.Req.Sampling), fmtSampling(want))
	}
}

func fmtSampling(s sdk.Sampling) map[string]any {
	m := map[string]any{"top_k": s.TopK, "min_p": s.MinP, "max_tokens": s.MaxTokens, "stop": s.Stop, "rep": s.RepetitionPenalty,
		"presence": s.PresencePenalty, "frequency": s.FrequencyPenalty, "logprobs": s.Logprobs, "top_logprobs": s.TopLogprobs,
		"stop_token_ids": s.StopTokenIDs, "ignore_eos": s.IgnoreEOS, "min_tokens": s.MinTokens}
	if s.Temperature != nil {
		m["temperature"] = *s.Temperature
	}
	if s.TopP != nil {
		m["top_p"] = *s.TopP
	}
	if s.Seed != nil {
		m["seed"] = *s.Seed
	}
	return m
}

func TestChatSingleStopAndDefaults(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	var out chatResponse
	decodeJSON(t, s.post(t, "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"a b"}],"stop":"###","temperature":0,"top_k":-1}`), 200, &out)
	req := s.fake.Calls()[0].Req
	if !reflect.DeepEqual(req.Sampling.Stop, []string{"###"}) || req.Sampling.Temperature == nil || *req.Sampling.Temperature != 0 || req.Sampling.TopK != 0 {
		t.Errorf("sampling %+v", fmtSampling(req.Sampling))
	}
	if req.Sampling.TopP != nil || req.Sampling.Seed != nil || req.Sampling.MaxTokens != 0 {
		t.Errorf("unset params were set: %+v", fmtSampling(req.Sampling))
	}
	if len(req.RequestID) < 16 || req.RequestID == "" {
		t.Errorf("generated RequestID %q", req.RequestID)
	}
}

// barrier makes n generations wait for each other: it proves they run
// concurrently.
func barrier(n int) (arrive func(ctx context.Context) error) {
	var mu sync.Mutex
	count := 0
	all := make(chan struct{})
	return func(ctx context.Context) error {
		mu.Lock()
		count++
		if count == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Second):
			return context.DeadlineExceeded
		}
	}
}

func TestChatN2RunsConcurrently(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	arrive := barrier(2)
	s.fake.SetGenerate(func(ctx context.Context, model string, req sdk.GenerateRequest, emit func(sdk.Event) error) error {
		if err := arrive(ctx); err != nil {
			return err
		}
		text := "seed-" + jsonNum(*req.Sampling.Seed)
		if err := emit(sdk.Event{Text: text, Tokens: 2}); err != nil {
			return err
		}
		return emit(sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{PromptTokens: 5, CompletionTokens: int(*req.Sampling.Seed - 99)}})
	})
	var out chatResponse
	decodeJSON(t, s.post(t, "/v1/chat/completions", `{"model":"chat","n":2,"seed":100,"messages":[{"role":"user","content":"x"}]}`), 200, &out)
	if len(out.Choices) != 2 {
		t.Fatalf("choices %+v", out.Choices)
	}
	for i, c := range out.Choices {
		if c.Index != i || c.Message.Content != "seed-"+jsonNum(int64(100+i)) || c.FinishReason != "stop" {
			t.Errorf("choice %d: %+v", i, c)
		}
	}
	// Prompt tokens once, completion tokens summed (1 + 2).
	if out.Usage.PromptTokens != 5 || out.Usage.CompletionTokens != 3 || out.Usage.TotalTokens != 8 {
		t.Errorf("usage %+v", out.Usage)
	}
	ids := map[string]bool{}
	for _, c := range s.fake.Calls() {
		ids[c.Req.RequestID] = true
	}
	if len(ids) != 2 {
		t.Errorf("request ids %v are not distinct", ids)
	}
}

func jsonNum(v int64) string { b, _ := json.Marshal(v); return string(b) }

func TestChatLogprobs(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	s.fake.SetGenerate(func(ctx context.Context, _ string, req sdk.GenerateRequest, emit func(sdk.Event) error) error {
		if !req.Sampling.Logprobs || req.Sampling.TopLogprobs != 2 {
			return sdk.InvalidRequestf("logprobs not passed: %+v", req.Sampling)
		}
		lp := []sdk.TokenLogprob{{Token: "é", Logprob: -0.25, Top: []sdk.TopLogprob{{Token: "é", Logprob: -0.25}, {Token: "e", Logprob: -1.5}}}}
		if err := emit(sdk.Event{Text: "é", Tokens: 1, Logprobs: lp}); err != nil {
			return err
		}
		return emit(sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{PromptTokens: 1, CompletionTokens: 1}})
	})
	var out chatResponse
	decodeJSON(t, s.post(t, "/v1/chat/completions", `{"model":"chat","logprobs":true,"top_logprobs":2,"messages":[{"role":"user","content":"x"}]}`), 200, &out)
	var lp struct {
		Content []struct {
			Token       string  `json:"token"`
			Logprob     float64 `json:"logprob"`
			Bytes       []int   `json:"bytes"`
			TopLogprobs []struct {
				Token   string  `json:"token"`
				Logprob float64 `json:"logprob"`
			} `json:"top_logprobs"`
		} `json:"content"`
	}
	if err := json.Unmarshal(out.Choices[0].Logprobs, &lp); err != nil {
		t.Fatalf("logprobs %s: %v", out.Choices[0].Logprobs, err)
	}
	if len(lp.Content) != 1 || lp.Content[0].Token != "é" || lp.Content[0].Logprob != -0.25 || !reflect.DeepEqual(lp.Content[0].Bytes, []int{0xc3, 0xa9}) || len(lp.Content[0].TopLogprobs) != 2 {
		t.Errorf("logprobs %s", out.Choices[0].Logprobs)
	}
}

func TestModelsEndpoints(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			Created int64  `json:"created"`
			OwnedBy string `json:"owned_by"`
		} `json:"data"`
	}
	decodeJSON(t, s.do(t, "GET", "/v1/models", ""), 200, &list)
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
		if m.Object != "model" || m.OwnedBy != "ragway" || m.Created != 1700000000 {
			t.Errorf("model object %+v", m)
		}
	}
	if list.Object != "list" || !reflect.DeepEqual(ids, []string{"chat", "default", "embed"}) {
		t.Errorf("list %+v", list)
	}
	var one map[string]any
	decodeJSON(t, s.do(t, "GET", "/v1/models/default", ""), 200, &one)
	if one["id"] != "default" || one["object"] != "model" || one["owned_by"] != "ragway" {
		t.Errorf("model %v", one)
	}
	// Ids with slashes (Hugging Face style).
	s.fake.SetModels(apitest.ReadyModel("Qwen/Qwen2.5-7B"))
	decodeJSON(t, s.do(t, "GET", "/v1/models/Qwen/Qwen2.5-7B", ""), 200, &one)
	if one["id"] != "Qwen/Qwen2.5-7B" {
		t.Errorf("model %v", one)
	}
}
