package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// An embedding model's limit is the upstream's max_model_len; Tokenize asks
// the upstream's POST /tokenize for each input; an input over the limit is
// refused as the upstream refuses it, and with Truncate goes up with
// truncate_prompt_tokens set to the limit.
func TestTokenizeAndTruncate(t *testing.T) {
	f := &fakeOpenAI{model: testModel, dims: 8}
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	p, _ := newTestProxy()
	mi, err := p.Load(context.Background(), sdk.LoadRequest{Model: testModel, Embedding: true, Options: map[string]any{"upstreams": ups(s.URL)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.st.Load().stopProbe() })
	if mi.MaxInputTokens != 4096 || mi.ContextLength != 4096 {
		t.Fatalf("model info %+v, want MaxInputTokens = max_model_len 4096", mi)
	}
	ctx := context.Background()
	r, err := p.Tokenize(ctx, sdk.TokenizeRequest{Input: []string{"hello world", "a b c", ""}})
	if err != nil || !reflect.DeepEqual(r.Counts, []int{2, 3, 0}) {
		t.Fatalf("tokenize = %+v, %v; want counts [2 3 0]", r, err)
	}
	var tok struct {
		Model            string `json:"model"`
		Prompt           string `json:"prompt"`
		AddSpecialTokens bool   `json:"add_special_tokens"`
	}
	var prompts []string
	for _, rec := range f.log.posts() {
		if rec.Path == "/tokenize" {
			if err := json.Unmarshal(rec.Body, &tok); err != nil || tok.Model != testModel || !tok.AddSpecialTokens {
				t.Errorf("tokenize request %s", rec.Body)
			}
			prompts = append(prompts, tok.Prompt)
		}
	}
	if !reflect.DeepEqual(prompts, []string{"hello world", "a b c", ""}) {
		t.Errorf("tokenize prompts %q", prompts)
	}

	long := strings.Repeat("word ", 5000)
	_, err = p.Embed(ctx, sdk.EmbedRequest{Input: []string{"short", long}})
	if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "maximum context length is 4096 tokens") {
		t.Fatalf("embed of 5000 tokens = %v, want the upstream's ErrInvalidRequest", err)
	}
	e, err := p.Embed(ctx, sdk.EmbedRequest{Input: []string{"short", long}, Truncate: true})
	if err != nil || len(e.Embeddings) != 2 || e.PromptTokens != 1+4096 {
		t.Fatalf("embed with Truncate = %+v, %v; want 2 vectors of 1 + 4096 tokens", e.PromptTokens, err)
	}
	posts := f.log.posts()
	var body map[string]any
	if err := json.Unmarshal(posts[len(posts)-1].Body, &body); err != nil || body["truncate_prompt_tokens"] != 4096.0 {
		t.Errorf("embedding request with Truncate: truncate_prompt_tokens = %v, want 4096", body["truncate_prompt_tokens"])
	}
	var whole map[string]any
	if err := json.Unmarshal(posts[len(posts)-2].Body, &whole); err != nil || whole["truncate_prompt_tokens"] != nil {
		t.Errorf("embedding request without Truncate has truncate_prompt_tokens %v", whole["truncate_prompt_tokens"])
	}
}

// An upstream without POST /tokenize (an OpenAI-compatible server that is
// not vLLM) makes Tokenize ErrUnsupported, not an invalid request.
func TestTokenizeWithoutTheEndpoint(t *testing.T) {
	up := newReplay(t, nil)
	p, _ := load(t, map[string]any{"upstreams": ups(up.URL)})
	if _, err := p.Tokenize(context.Background(), sdk.TokenizeRequest{Input: []string{"hello"}}); !sdk.IsUnsupported(err) || !strings.Contains(err.Error(), "/tokenize") {
		t.Errorf("tokenize = %v, want ErrUnsupported naming /tokenize", err)
	}
}
