package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"
	"unicode/utf8"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// The OpenAI wire format as vLLM speaks it: request bodies built from SDK
// requests, and the response shapes the plugin reads. Unknown response
// fields are ignored.

// Upstream paths, relative to an upstream's base URL.
const (
	pathChat        = "/v1/chat/completions"
	pathCompletions = "/v1/completions"
	pathEmbeddings  = "/v1/embeddings"
	pathModels      = "/v1/models"
	// pathTokenize is vLLM's own endpoint (not OpenAI's): one prompt per
	// request.
	pathTokenize = "/tokenize"
	// pathRerank is vLLM's (and llama-server's) Jina/Cohere-style rerank
	// endpoint.
	pathRerank  = "/v1/rerank"
	pathHealth  = "/health"
	pathMetrics = "/metrics"
)

// wireMessage is one chat message of a request.
type wireMessage struct {
	Role       string         `json:"role"`
	Content    *string        `json:"content"`
	Name       string         `json:"name,omitempty"`
	ToolCalls  []wireToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

type wireToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// generateBody returns the upstream path and JSON body for req: a chat
// completion for messages, a completion for a prompt; always streamed with
// the usage chunk requested. extra holds operator-configured fields; the
// request's own fields take precedence.
func generateBody(model string, req sdk.GenerateRequest, extra map[string]any) (path string, body []byte, err error) {
	m := make(map[string]any, len(extra)+16)
	maps.Copy(m, extra)
	m["model"] = model
	m["stream"] = true
	m["stream_options"] = map[string]any{"include_usage": true}
	chat := len(req.Messages) > 0
	if chat {
		path = pathChat
		msgs := make([]wireMessage, len(req.Messages))
		for i, msg := range req.Messages {
			content := msg.Content
			msgs[i] = wireMessage{Role: msg.Role, Content: &content, Name: msg.Name, ToolCallID: msg.ToolCallID}
			for _, c := range msg.ToolCalls {
				w := wireToolCall{ID: c.ID, Type: "function"}
				w.Function.Name, w.Function.Arguments = c.Name, c.Arguments
				msgs[i].ToolCalls = append(msgs[i].ToolCalls, w)
			}
			if len(msg.ToolCalls) > 0 && content == "" {
				msgs[i].Content = nil // OpenAI's shape: null beside tool calls
			}
		}
		m["messages"] = msgs
		if err := addTools(m, req); err != nil {
			return "", nil, err
		}
	} else {
		path = pathCompletions
		m["prompt"] = req.Prompt
	}
	maps.Copy(m, samplingParams(req.Sampling, chat))
	if f := req.ResponseFormat; f != nil && f.Type != sdk.ResponseText {
		rf, err := responseFormat(f)
		if err != nil {
			return "", nil, err
		}
		m["response_format"] = rf
	}
	body, err = json.Marshal(m)
	if err != nil {
		return "", nil, sdk.InvalidRequestf("encode the upstream request: %v", err)
	}
	return path, body, nil
}

// addTools puts a chat request's tools, tool_choice and parallel_tool_calls in the
// upstream body m, in OpenAI's shape.
func addTools(m map[string]any, req sdk.GenerateRequest) error {
	if len(req.Tools) > 0 {
		tools := make([]map[string]any, len(req.Tools))
		for i, t := range req.Tools {
			fn := map[string]any{"name": t.Name}
			if t.Description != "" {
				fn["description"] = t.Description
			}
			if len(t.Parameters) > 0 {
				if !json.Valid(t.Parameters) {
					return sdk.InvalidRequestf("tools[%d]: the parameters are not JSON", i)
				}
				fn["parameters"] = json.RawMessage(t.Parameters)
			}
			tools[i] = map[string]any{"type": "function", "function": fn}
		}
		m["tools"] = tools
	}
	if c := req.ToolChoice; c != nil {
		switch c.Mode {
		case sdk.ToolChoiceFunction:
			m["tool_choice"] = map[string]any{"type": "function", "function": map[string]any{"name": c.Name}}
		case sdk.ToolChoiceAuto, sdk.ToolChoiceNone, sdk.ToolChoiceRequired:
			m["tool_choice"] = c.Mode
		default:
			return sdk.InvalidRequestf("tool_choice %q is not supported", c.Mode)
		}
	}
	if req.ParallelToolCalls != nil {
		m["parallel_tool_calls"] = *req.ParallelToolCalls
	}
	return nil
}

// responseFormat is OpenAI's response_format for f (vLLM takes it on both chat and
// completions): a schema goes as given, under the name "response" (vLLM decodes under
// it whatever the name).
func responseFormat(f *sdk.ResponseFormat) (map[string]any, error) {
	switch f.Type {
	case sdk.ResponseJSONObject:
		return map[string]any{"type": "json_object"}, nil
	case sdk.ResponseJSONSchema:
		if !json.Valid(f.Schema) {
			return nil, sdk.InvalidRequestf("response_format: the schema is not JSON")
		}
		return map[string]any{"type": "json_schema", "json_schema": map[string]any{
			"name": "response", "schema": json.RawMessage(f.Schema), "strict": true}}, nil
	}
	return nil, sdk.InvalidRequestf("response_format: type %q is not supported", f.Type)
}

// samplingParams maps SDK sampling to OpenAI request fields plus vLLM's
// extras (top_k, min_p, repetition_penalty, stop_token_ids, ignore_eos,
// min_tokens). Unset and zero values are
// omitted, so a server that does not know a field never sees it, except the
// pointer fields, where zero is a real value (temperature 0 is greedy).
// Logprobs differ by endpoint: chat takes logprobs: true and top_logprobs N,
// completions take logprobs N. Logprobs are asked for only when
// s.Logprobs is true; TopLogprobs alone means nothing.
func samplingParams(s sdk.Sampling, chat bool) map[string]any {
	m := map[string]any{}
	if s.Temperature != nil {
		m["temperature"] = *s.Temperature
	}
	if s.TopP != nil {
		m["top_p"] = *s.TopP
	}
	if s.MaxTokens > 0 {
		m["max_tokens"] = s.MaxTokens
	}
	var stops []string
	for _, st := range s.Stop {
		if st != "" {
			stops = append(stops, st)
		}
	}
	if len(stops) > 0 {
		m["stop"] = stops
	}
	if s.Seed != nil {
		m["seed"] = *s.Seed
	}
	if s.PresencePenalty != 0 {
		m["presence_penalty"] = s.PresencePenalty
	}
	if s.FrequencyPenalty != 0 {
		m["frequency_penalty"] = s.FrequencyPenalty
	}
	if s.Logprobs {
		if chat {
			m["logprobs"] = true
			if s.TopLogprobs > 0 {
				m["top_logprobs"] = s.TopLogprobs
			}
		} else {
			m["logprobs"] = max(0, s.TopLogprobs)
		}
	}
	if s.TopK > 0 {
		m["top_k"] = s.TopK
	}
	if s.MinP > 0 {
		m["min_p"] = s.MinP
	}
	if s.RepetitionPenalty > 0 {
		m["repetition_penalty"] = s.RepetitionPenalty
	}
	if len(s.StopTokenIDs) > 0 {
		m["stop_token_ids"] = s.StopTokenIDs
	}
	if s.IgnoreEOS {
		m["ignore_eos"] = true
	}
	if s.MinTokens > 0 {
		m["min_tokens"] = s.MinTokens
	}
	return m
}

// streamChunk is one `data:` payload of a streamed chat completion or
// completion, or an error object sent in its place.
type streamChunk struct {
	Choices []struct {
		Index int `json:"index"`
		Delta *struct {
			Content   *string `json:"content"`
			ToolCalls []struct {
				Index    int    `json:"index"`
				ID       string `json:"id"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		Text         *string         `json:"text"`
		Logprobs     json.RawMessage `json:"logprobs"`
		FinishReason *string         `json:"finish_reason"`
	} `json:"choices"`
	Usage *wireUsage `json:"usage"`
	// Error is vLLM's (and OpenAI's) mid-stream error: {"error": {...}}.
	Error json.RawMessage `json:"error"`
	// Object and Message are the flat error shape of older vLLM releases:
	// {"object": "error", "message": ..., "type": ..., "code": ...}.
	Object  string          `json:"object"`
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Code    json.RawMessage `json:"code"`
}

type wireUsage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

// chatLogprobs is a chat chunk's choices[].logprobs.
type chatLogprobs struct {
	Content []struct {
		Token       string  `json:"token"`
		Logprob     float64 `json:"logprob"`
		TopLogprobs []struct {
			Token   string  `json:"token"`
			Logprob float64 `json:"logprob"`
		} `json:"top_logprobs"`
	} `json:"content"`
}

// completionLogprobs is a completion chunk's choices[].logprobs (the legacy
// OpenAI shape).
type completionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []*float64           `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
}

// parseLogprobs turns a chunk's logprobs into SDK logprobs; null or absent
// logprobs are none.
func parseLogprobs(raw json.RawMessage, chat bool) ([]sdk.TokenLogprob, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if chat {
		var lp chatLogprobs
		if err := json.Unmarshal(raw, &lp); err != nil {
			return nil, fmt.Errorf("logprobs: %w", err)
		}
		out := make([]sdk.TokenLogprob, len(lp.Content))
		for i, c := range lp.Content {
			out[i] = sdk.TokenLogprob{Token: c.Token, Logprob: c.Logprob}
			for _, t := range c.TopLogprobs {
				out[i].Top = append(out[i].Top, sdk.TopLogprob{Token: t.Token, Logprob: t.Logprob})
			}
		}
		return out, nil
	}
	var lp completionLogprobs
	if err := json.Unmarshal(raw, &lp); err != nil {
		return nil, fmt.Errorf("logprobs: %w", err)
	}
	out := make([]sdk.TokenLogprob, len(lp.Tokens))
	for i, tok := range lp.Tokens {
		out[i].Token = tok
		if i < len(lp.TokenLogprobs) && lp.TokenLogprobs[i] != nil {
			out[i].Logprob = *lp.TokenLogprobs[i]
		}
		if i < len(lp.TopLogprobs) {
			for t, l := range lp.TopLogprobs[i] {
				out[i].Top = append(out[i].Top, sdk.TopLogprob{Token: t, Logprob: l})
			}
			// A JSON object has no order: most likely first, then by token.
			sortTop(out[i].Top)
		}
	}
	return out, nil
}

func sortTop(top []sdk.TopLogprob) {
	for i := 1; i < len(top); i++ {
		for j := i; j > 0 && lessTop(top[j], top[j-1]); j-- {
			top[j], top[j-1] = top[j-1], top[j]
		}
	}
}

func lessTop(a, b sdk.TopLogprob) bool {
	if a.Logprob != b.Logprob {
		return a.Logprob > b.Logprob
	}
	return a.Token < b.Token
}

// wireError is an upstream error: the message, type and code of either
// error shape.
type wireError struct {
	Message string
	Type    string
	Code    string
}

// errorOf returns the error a chunk carries, if any.
func (c *streamChunk) errorOf() (wireError, bool) {
	if len(c.Error) > 0 && string(c.Error) != "null" {
		return parseErrorValue(c.Error), true
	}
	if c.Object == "error" {
		return wireError{Message: c.Message, Type: c.Type, Code: codeString(c.Code)}, true
	}
	return wireError{}, false
}

// parseErrorBody reads an error response body in any of the shapes
// OpenAI-compatible servers use: {"error": {"message", "type", "code"}}
// (OpenAI, vLLM >= 0.10), the flat {"object": "error", "message", "type",
// "code"} (older vLLM), {"error": "text"}, {"message": ...}, FastAPI's
// {"detail": ...}; anything else is quoted as text.
func parseErrorBody(body []byte) wireError {
	var top struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
		Type    string          `json:"type"`
		Code    json.RawMessage `json:"code"`
		Detail  json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &top) == nil {
		switch {
		case len(top.Error) > 0 && string(top.Error) != "null":
			return parseErrorValue(top.Error)
		case top.Message != "":
			return wireError{Message: top.Message, Type: top.Type, Code: codeString(top.Code)}
		case len(top.Detail) > 0:
			var s string
			if json.Unmarshal(top.Detail, &s) == nil {
				return wireError{Message: s}
			}
			return wireError{Message: string(top.Detail)}
		}
	}
	return wireError{Message: strings.TrimSpace(string(body))}
}

// parseErrorValue reads the value of an "error" field: an object (nested
// or itself flat) or a string.
func parseErrorValue(raw json.RawMessage) wireError {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return wireError{Message: s}
	}
	var e struct {
		Message string          `json:"message"`
		Type    string          `json:"type"`
		Code    json.RawMessage `json:"code"`
	}
	if json.Unmarshal(raw, &e) == nil && (e.Message != "" || e.Type != "") {
		return wireError{Message: e.Message, Type: e.Type, Code: codeString(e.Code)}
	}
	return wireError{Message: string(raw)}
}

// codeString renders a JSON code (a number, a string or null).
func codeString(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// invalid reports whether the upstream blamed the request (it would fail
// the same way on any upstream).
func (e wireError) invalid() bool {
	switch e.Code {
	case "400", "404", "413", "422":
		return true
	}
	switch strings.ToLower(e.Type) {
	case "badrequesterror", "invalid_request_error", "notfounderror":
		return true
	}
	return false
}

// text is the error's message for humans, bounded.
func (e wireError) text() string {
	msg := strings.TrimSpace(e.Message)
	if msg == "" {
		msg = "no message"
		if e.Type != "" {
			msg = e.Type
		}
	}
	return truncate(msg, 500)
}

// truncate shortens s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// statusKind says how the plugin treats an upstream HTTP status.
type statusKind int

const (
	// kindInvalid: the request is at fault (400, 404, 413, 422).
	kindInvalid statusKind = iota
	// kindAuth: the upstream refused the key (401, 403).
	kindAuth
	// kindOverloaded: the upstream is busy or its engine unavailable
	// (429, 503); another upstream may serve the request.
	kindOverloaded
	// kindServer: the upstream failed (other 5xx); another upstream may
	// serve the request.
	kindServer
	// kindOther: any other status.
	kindOther
)

func classifyStatus(code int) statusKind {
	switch {
	case code == 400 || code == 404 || code == 413 || code == 422:
		return kindInvalid
	case code == 401 || code == 403:
		return kindAuth
	case code == 429 || code == 503:
		return kindOverloaded
	case code >= 500:
		return kindServer
	}
	return kindOther
}

// errRetryable marks an error that happened before the upstream produced
// anything, on which another upstream may succeed.
var errRetryable = errors.New("retryable upstream failure")

// retryable wraps err so errors.Is(err, errRetryable) holds; the message
// is unchanged.
type retryable struct{ error }

func (r retryable) Unwrap() []error { return []error{r.error, errRetryable} }

// httpStatusError turns an upstream's non-200 answer into the error the
// plugin returns. keyHint names where the key comes from, for auth errors.
func httpStatusError(base string, status int, body []byte, keyHint string) error {
	we := parseErrorBody(body)
	msg := we.text()
	switch classifyStatus(status) {
	case kindInvalid:
		return sdk.InvalidRequestf("%s (upstream HTTP %d)", msg, status)
	case kindAuth:
		return fmt.Errorf("upstream %s refused the request as unauthorised (HTTP %d: %s); %s", base, status, msg, keyHint)
	case kindOverloaded:
		return retryable{fmt.Errorf("%w: upstream %s: HTTP %d: %s", sdk.ErrOverloaded, base, status, msg)}
	case kindServer:
		return retryable{fmt.Errorf("upstream %s: HTTP %d: %s", base, status, msg)}
	}
	return fmt.Errorf("upstream %s: HTTP %d: %s", base, status, msg)
}

// finishReason maps an upstream finish_reason to the SDK's. vLLM reports
// stop (EOS or a stop sequence), length (max_tokens or the context), abort
// (the engine aborted the request) and, from v0.10, error. Anything else
// (tool_calls, content_filter, ...) ended the text normally: stop.
func finishReason(s string) sdk.FinishReason {
	switch s {
	case "length":
		return sdk.FinishLength
	case "abort":
		return sdk.FinishCancelled
	case "error":
		return sdk.FinishError
	case "tool_calls":
		return sdk.FinishToolCalls
	}
	return sdk.FinishStop
}

// modelList is GET /v1/models.
type modelList struct {
	Data []struct {
		ID string `json:"id"`
		// MaxModelLen is vLLM's context length of the model.
		MaxModelLen int `json:"max_model_len"`
	} `json:"data"`
}

// embeddingResponse is POST /v1/embeddings.
type embeddingResponse struct {
	Data []struct {
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	} `json:"data"`
	Usage *wireUsage `json:"usage"`
}

// embeddingBody is the request body of an embedding. truncate > 0 asks vLLM
// to cut each input to its first truncate tokens (truncate_prompt_tokens),
// -1 to the model's max_model_len; 0 leaves inputs whole.
func embeddingBody(model string, input []string, truncate int) ([]byte, error) {
	m := map[string]any{"model": model, "input": input, "encoding_format": "float"}
	if truncate != 0 {
		m["truncate_prompt_tokens"] = truncate
	}
	return json.Marshal(m)
}

// tokenizeBody is the request body of vLLM's POST /tokenize for one input,
// counted with the special tokens the model adds (as an embedding or a raw
// prompt is).
func tokenizeBody(model, input string) ([]byte, error) {
	return json.Marshal(map[string]any{"model": model, "prompt": input, "add_special_tokens": true})
}

// tokenizeResponse is POST /tokenize.
type tokenizeResponse struct {
	Count  *int  `json:"count"`
	Tokens []int `json:"tokens"`
}

// rerankBody is the request body of vLLM's POST /v1/rerank: every document
// scored (top_n is the number of documents, so none is left out).
// truncate is embeddingBody's: truncate_prompt_tokens cuts each
// query-document pair.
func rerankBody(model, query string, documents []string, truncate int) ([]byte, error) {
	m := map[string]any{"model": model, "query": query, "documents": documents, "top_n": len(documents)}
	if truncate != 0 {
		m["truncate_prompt_tokens"] = truncate
	}
	return json.Marshal(m)
}

// rerankResponse is POST /v1/rerank: vLLM's RerankResponse{id, model,
// usage{total_tokens} (newer releases add prompt_tokens), results[{index,
// document{text}, relevance_score}]}, results sorted by score, most
// relevant first. The echoed documents are not kept. Index and
// score are pointers so that a missing one is told from zero.
type rerankResponse struct {
	Results []struct {
		Index          *int     `json:"index"`
		RelevanceScore *float64 `json:"relevance_score"`
	} `json:"results"`
	Usage *struct {
		TotalTokens  int `json:"total_tokens"`
		PromptTokens int `json:"prompt_tokens"`
	} `json:"usage"`
}

// scores returns the relevance score of each of n documents in the
// request's order. Every index in [0, n) must come exactly once with a
// score that is a finite float32; anything else is an error describing
// the upstream's mistake.
func (r *rerankResponse) scores(n int) ([]float32, error) {
	if len(r.Results) != n {
		return nil, fmt.Errorf("%d results for %d documents", len(r.Results), n)
	}
	out := make([]float32, n)
	seen := make([]bool, n)
	for i, res := range r.Results {
		switch {
		case res.Index == nil:
			return nil, fmt.Errorf("result %d has no index", i)
		case *res.Index < 0 || *res.Index >= n:
			return nil, fmt.Errorf("result %d has index %d, out of range for %d documents", i, *res.Index, n)
		case seen[*res.Index]:
			return nil, fmt.Errorf("index %d comes twice", *res.Index)
		case res.RelevanceScore == nil:
			return nil, fmt.Errorf("result for document %d has no relevance_score", *res.Index)
		}
		s := float32(*res.RelevanceScore)
		if math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
			return nil, fmt.Errorf("result for document %d has relevance_score %v, not a finite float32", *res.Index, *res.RelevanceScore)
		}
		seen[*res.Index] = true
		out[*res.Index] = s
	}
	return out, nil
}

// promptTokens is the usage's total_tokens (vLLM counts the tokens of
// every query-document pair; a rerank generates none), else its
// prompt_tokens (which newer vLLM releases and llama-server also send);
// 0 when absent or negative.
func (r *rerankResponse) promptTokens() int {
	switch {
	case r.Usage == nil:
		return 0
	case r.Usage.TotalTokens > 0:
		return r.Usage.TotalTokens
	}
	return max(0, r.Usage.PromptTokens)
}
