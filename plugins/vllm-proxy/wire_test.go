package main

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

func TestSamplingParams(t *testing.T) {
	tests := []struct {
		name string
		s    sdk.Sampling
		chat bool
		want map[string]any
	}{
		{name: "unset sampling sends nothing", s: sdk.Sampling{}, chat: true, want: map[string]any{}},
		{name: "zero temperature is sent: greedy", s: sdk.Sampling{Temperature: f64(0)}, chat: true, want: map[string]any{"temperature": 0.0}},
		{
			name: "OpenAI params",
			s: sdk.Sampling{Temperature: f64(0.7), TopP: f64(0.9), MaxTokens: 32, Stop: []string{"\n\n", "", "END"},
				Seed: i64(42), PresencePenalty: 0.5, FrequencyPenalty: -0.5},
			chat: true,
			want: map[string]any{"temperature": 0.7, "top_p": 0.9, "max_tokens": 32, "stop": []string{"\n\n", "END"},
				"seed": int64(42), "presence_penalty": 0.5, "frequency_penalty": -0.5},
		},
		{
			name: "vLLM extras only when set",
			s:    sdk.Sampling{TopK: 40, MinP: 0.05, RepetitionPenalty: 1.1, StopTokenIDs: []int32{2, 9}, IgnoreEOS: true, MinTokens: 5},
			want: map[string]any{"top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1, "stop_token_ids": []int32{2, 9}, "ignore_eos": true, "min_tokens": 5},
		},
		{name: "top_k zero and negative are omitted", s: sdk.Sampling{TopK: -1}, want: map[string]any{}},
		{name: "chat logprobs", s: sdk.Sampling{Logprobs: true, TopLogprobs: 3}, chat: true, want: map[string]any{"logprobs": true, "top_logprobs": 3}},
		{name: "chat logprobs without alternatives", s: sdk.Sampling{Logprobs: true}, chat: true, want: map[string]any{"logprobs": true}},
		{name: "completion logprobs are a count", s: sdk.Sampling{Logprobs: true, TopLogprobs: 3}, want: map[string]any{"logprobs": 3}},
		{name: "completion logprobs of the sampled token only", s: sdk.Sampling{Logprobs: true}, want: map[string]any{"logprobs": 0}},
		{name: "chat top_logprobs without logprobs asks for none", s: sdk.Sampling{TopLogprobs: 3}, chat: true, want: map[string]any{}},
		{name: "completion top_logprobs without logprobs asks for none", s: sdk.Sampling{TopLogprobs: 3}, want: map[string]any{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := samplingParams(tc.s, tc.chat); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestGenerateBody(t *testing.T) {
	extra := map[string]any{"ignore_eos": true, "min_tokens": 2.0, "temperature": 1.5}
	req := sdk.GenerateRequest{
		Messages: []sdk.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi", Name: "ann"}},
		Sampling: sdk.Sampling{Temperature: f64(0)},
	}
	path, body, err := generateBody("m", req, extra)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"model": "m", "stream": true, "stream_options": map[string]any{"include_usage": true},
		"messages": []any{
			map[string]any{"role": "system", "content": "Be brief."},
			map[string]any{"role": "user", "content": "Hi", "name": "ann"},
		},
		// extra_body fields pass through; the request's temperature wins.
		"ignore_eos": true, "min_tokens": 2.0, "temperature": 0.0,
	}
	if path != pathChat || !reflect.DeepEqual(got, want) {
		t.Errorf("chat: %s %s\nwant %v", path, body, want)
	}
	if extra["temperature"] != 1.5 {
		t.Error("generateBody changed the extra_body map")
	}

	// A response format goes as OpenAI's response_format, a schema under a name.
	_, body, err = generateBody("m", sdk.GenerateRequest{Prompt: "Once",
		ResponseFormat: &sdk.ResponseFormat{Type: sdk.ResponseJSONSchema, Schema: []byte(`{"type":"string"}`)}}, nil)
	if err != nil || !strings.Contains(string(body), `"response_format":{"json_schema":{"name":"response","schema":{"type":"string"},"strict":true},"type":"json_schema"}`) {
		t.Errorf("json_schema: %s %v", body, err)
	}
	_, body, _ = generateBody("m", sdk.GenerateRequest{Prompt: "Once", ResponseFormat: &sdk.ResponseFormat{Type: sdk.ResponseJSONObject}}, nil)
	if !strings.Contains(string(body), `"response_format":{"type":"json_object"}`) {
		t.Errorf("json_object: %s", body)
	}

	path, body, err = generateBody("m", sdk.GenerateRequest{Prompt: "Once"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	_ = json.Unmarshal(body, &got)
	if path != pathCompletions || got["prompt"] != "Once" || got["messages"] != nil {
		t.Errorf("completion: %s %s", path, body)
	}
}

func TestFinishReason(t *testing.T) {
	tests := []struct {
		in   string
		want sdk.FinishReason
	}{
		{"stop", sdk.FinishStop},
		{"length", sdk.FinishLength},
		{"abort", sdk.FinishCancelled},
		{"error", sdk.FinishError},
		{"tool_calls", sdk.FinishToolCalls},
		{"content_filter", sdk.FinishStop},
		{"something_new", sdk.FinishStop},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := finishReason(tc.in); got != tc.want {
				t.Errorf("finishReason(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseErrorBody(t *testing.T) {
	tests := []struct {
		name, body string
		want       wireError
		invalid    bool
	}{
		{
			name: "OpenAI and vLLM >= 0.10 nested",
			body: `{"error":{"message":"bad top_p","type":"BadRequestError","param":"top_p","code":400}}`,
			want: wireError{Message: "bad top_p", Type: "BadRequestError", Code: "400"}, invalid: true,
		},
		{
			name: "older vLLM flat",
			body: `{"object":"error","message":"too long","type":"BadRequestError","param":null,"code":400}`,
			want: wireError{Message: "too long", Type: "BadRequestError", Code: "400"}, invalid: true,
		},
		{
			name: "OpenAI string code",
			body: `{"error":{"message":"no such model","type":"invalid_request_error","param":"model","code":"model_not_found"}}`,
			want: wireError{Message: "no such model", Type: "invalid_request_error", Code: "model_not_found"}, invalid: true,
		},
		{name: "error as a string", body: `{"error":"Unauthorized"}`, want: wireError{Message: "Unauthorized"}},
		{name: "FastAPI detail", body: `{"detail":"Not Found"}`, want: wireError{Message: "Not Found"}},
		{name: "FastAPI validation detail", body: `{"detail":[{"loc":["body","model"]}]}`, want: wireError{Message: `[{"loc":["body","model"]}]`}},
		{name: "server error", body: `{"error":{"message":"boom","type":"InternalServerError","code":500}}`, want: wireError{Message: "boom", Type: "InternalServerError", Code: "500"}},
		{name: "not JSON", body: "<html>Bad Gateway</html>\n", want: wireError{Message: "<html>Bad Gateway</html>"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := parseErrorBody([]byte(tc.body))
			if got != tc.want || got.invalid() != tc.invalid {
				t.Errorf("got %+v (invalid %v), want %+v (invalid %v)", got, got.invalid(), tc.want, tc.invalid)
			}
		})
	}
}

func TestHTTPStatusError(t *testing.T) {
	body := []byte(`{"error":{"message":"upstream says no","type":"X","code":1}}`)
	tests := []struct {
		status    int
		invalid   bool
		overload  bool
		retryable bool
		want      string
	}{
		{status: 400, invalid: true, want: "invalid request: upstream says no (upstream HTTP 400)"},
		{status: 404, invalid: true, want: "upstream says no"},
		{status: 413, invalid: true, want: "upstream says no"},
		{status: 422, invalid: true, want: "upstream says no"},
		{status: 401, want: "refused the request as unauthorised (HTTP 401: upstream says no); HINT"},
		{status: 403, want: "(HTTP 403: upstream says no); HINT"},
		{status: 429, overload: true, retryable: true, want: "backend overloaded: upstream http://u: HTTP 429: upstream says no"},
		{status: 503, overload: true, retryable: true, want: "HTTP 503"},
		{status: 500, retryable: true, want: "upstream http://u: HTTP 500: upstream says no"},
		{status: 502, retryable: true, want: "HTTP 502"},
		{status: 418, want: "upstream http://u: HTTP 418: upstream says no"},
	}
	for _, tc := range tests {
		t.Run(statusName(tc.status), func(t *testing.T) {
			err := httpStatusError("http://u", tc.status, body, "HINT")
			switch {
			case sdk.IsInvalidRequest(err) != tc.invalid, sdk.IsOverloaded(err) != tc.overload:
				t.Errorf("%v: invalid %v overloaded %v", err, sdk.IsInvalidRequest(err), sdk.IsOverloaded(err))
			case isRetryable(err) != tc.retryable:
				t.Errorf("%v: retryable %v", err, isRetryable(err))
			case !strings.Contains(err.Error(), tc.want):
				t.Errorf("%q does not contain %q", err, tc.want)
			}
		})
	}
}

func statusName(status int) string { return "HTTP " + strconv.Itoa(status) }

func isRetryable(err error) bool { return errors.Is(err, errRetryable) }

func TestTruncate(t *testing.T) {
	if got := truncate("héllo", 2); got != "h…" {
		t.Errorf("truncate inside a rune: %q", got)
	}
	if got := truncate("hello", 5); got != "hello" {
		t.Errorf("truncate at length: %q", got)
	}
}

func TestRerankBody(t *testing.T) {
	for _, tc := range []struct {
		truncate int
		want     string
	}{
		{0, `{"documents":["a","b"],"model":"m","query":"q","top_n":2}`},
		{512, `{"documents":["a","b"],"model":"m","query":"q","top_n":2,"truncate_prompt_tokens":512}`},
		{-1, `{"documents":["a","b"],"model":"m","query":"q","top_n":2,"truncate_prompt_tokens":-1}`},
	} {
		b, err := rerankBody("m", "q", []string{"a", "b"}, tc.truncate)
		if err != nil || string(b) != tc.want {
			t.Errorf("rerankBody with truncate %d = %s, %v; want %s", tc.truncate, b, err, tc.want)
		}
	}
}

func TestRerankPromptTokens(t *testing.T) {
	for body, want := range map[string]int{
		`{}`:                            0,
		`{"usage":{"total_tokens":52}}`: 52,
		`{"usage":{"prompt_tokens":52,"total_tokens":52}}`:  52,
		`{"usage":{"prompt_tokens":40}}`:                    40, // no total_tokens: prompt_tokens
		`{"usage":{"total_tokens":-3}}`:                     0,
		`{"usage":{"prompt_tokens":-3,"total_tokens":0}}`:   0,
		`{"usage":null,"results":[]}`:                       0,
		`{"usage":{"prompt_tokens":7,"total_tokens":null}}`: 7,
	} {
		var r rerankResponse
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatal(err)
		}
		if got := r.promptTokens(); got != want {
			t.Errorf("promptTokens of %s = %d, want %d", body, got, want)
		}
	}
}
