package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// Reranking: POST /v1/rerank against vLLM's golden answers, the fake
// upstream, and upstreams that fail or answer badly.

// rerankModel is the model id of the golden rerank transcripts and of the
// fake rerank upstreams.
const rerankModel = "BAAI/bge-reranker-v2-m3"

// loadRerank loads p to rerank rerankModel with opts, failing the test on
// an error; the probe loop stops at cleanup.
func loadRerank(t *testing.T, p *proxy, opts map[string]any) sdk.ModelInfo {
	t.Helper()
	mi, err := p.Load(context.Background(), sdk.LoadRequest{Model: rerankModel, Rerank: true, Options: opts})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() {
		if st := p.st.Load(); st != nil {
			st.stopProbe()
			st.pool.client.CloseIdleConnections()
		}
	})
	return mi
}

// lastRerank decodes the body of the last POST /v1/rerank in posts.
func lastRerank(t *testing.T, posts []recorded) map[string]any {
	t.Helper()
	for i := len(posts) - 1; i >= 0; i-- {
		if posts[i].Path == pathRerank {
			var m map[string]any
			if err := json.Unmarshal(posts[i].Body, &m); err != nil {
				t.Fatalf("rerank request %s: %v", posts[i].Body, err)
			}
			return m
		}
	}
	t.Fatal("no POST " + pathRerank)
	return nil
}

func TestGoldenRerank(t *testing.T) {
	up := newReplay(t, map[string]string{"GET /v1/models": "models_reranker.http", "POST " + pathRerank: "rerank_probe.http"})
	p, _ := newTestProxy()
	mi := loadRerank(t, p, map[string]any{"upstreams": ups(up.URL)})
	if mi.ContextLength != 8192 || mi.MaxInputTokens != 8192 || mi.EmbeddingSize != 0 {
		t.Errorf("model info %+v, want max_model_len 8192 as ContextLength and MaxInputTokens", mi)
	}
	probe := lastRerank(t, up.log.posts())
	if probe["model"] != rerankModel || probe["top_n"] != 1.0 || probe["truncate_prompt_tokens"] != nil {
		t.Errorf("Load's probe rerank %v", probe)
	}

	up.route("POST "+pathRerank, "rerank.http")
	ctx := context.Background()
	docs := []string{"Berlin is the capital of Germany.", "Paris is the capital and largest city of France.", "The Eiffel Tower is in Paris."}
	r, err := p.Rerank(ctx, sdk.RerankRequest{Query: "What is the capital of France?", Documents: docs})
	if err != nil {
		t.Fatal(err)
	}
	// rerank.http lists the results by score, most relevant first.
	want := sdk.RerankResponse{Scores: []float32{0.00016454880044329911, 0.9994900226593018, 0.07585817575454712}, PromptTokens: 52}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("rerank = %+v, want %+v (in the documents' order)", r, want)
	}
	b, err := os.ReadFile(filepath.Join("testdata", "rerank_request.json"))
	if err != nil {
		t.Fatal(err)
	}
	var golden map[string]any
	if err := json.Unmarshal(b, &golden); err != nil {
		t.Fatal(err)
	}
	if got := lastRerank(t, up.log.posts()); !reflect.DeepEqual(got, golden) {
		t.Errorf("rerank request %v, want %v", got, golden)
	}

	// Truncate sends the model's limit.
	if _, err := p.Rerank(ctx, sdk.RerankRequest{Query: "What is the capital of France?", Documents: docs, Truncate: true}); err != nil {
		t.Fatal(err)
	}
	golden["truncate_prompt_tokens"] = 8192.0
	if got := lastRerank(t, up.log.posts()); !reflect.DeepEqual(got, golden) {
		t.Errorf("rerank request with Truncate %v, want %v", got, golden)
	}

	// A pair over the limit: the upstream's message, as the client's error.
	up.route("POST "+pathRerank, "rerank_too_long_400.http")
	_, err = p.Rerank(ctx, sdk.RerankRequest{Query: "q", Documents: []string{"long"}})
	if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "maximum context length is 8192 tokens") || isRetryable(err) {
		t.Errorf("rerank of a pair over the limit = %v, want ErrInvalidRequest with the upstream's message", err)
	}
}

// Load of a rerank model fails early, and clearly, on an upstream that
// cannot rerank it.
func TestGoldenRerankLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		route string // POST /v1/rerank's golden answer; "": none (404)
		is    func(error) bool
		want  string
	}{
		{name: "no POST /v1/rerank", route: "", is: sdk.IsUnsupported, want: "has no POST /v1/rerank (HTTP 404: Not Found)"},
		{name: "a model without the score API", route: "rerank_unsupported_400.http", is: sdk.IsInvalidRequest, want: "does not support Rerank (Score) API"},
		{name: "a broken answer", route: "rerank.http", want: "3 results for 1 documents"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newReplay(t, map[string]string{"GET /v1/models": "models_reranker.http", "POST " + pathRerank: tc.route})
			p, _ := newTestProxy()
			_, err := p.Load(context.Background(), sdk.LoadRequest{Model: rerankModel, Rerank: true, Options: map[string]any{"upstreams": ups(up.URL)}})
			switch {
			case err == nil:
				p.st.Load().stopProbe()
				t.Fatal("load succeeded")
			case !strings.Contains(err.Error(), "probe rerank failed") || !strings.Contains(err.Error(), tc.want):
				t.Errorf("load = %v, want a failed probe saying %q", err, tc.want)
			case tc.is != nil && !tc.is(err):
				t.Errorf("load = %v does not match its sentinel", err)
			}
			if p.st.Load() != nil {
				t.Error("a model is loaded after the failed Load")
			}
		})
	}
}

func TestRerank(t *testing.T) {
	f := &fakeOpenAI{model: rerankModel, dims: 8}
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	p, _ := newTestProxy()
	mi := loadRerank(t, p, map[string]any{"upstreams": ups(s.URL)})
	if mi.MaxInputTokens != fakeMaxModelLen {
		t.Fatalf("model info %+v, want MaxInputTokens = max_model_len %d", mi, fakeMaxModelLen)
	}
	ctx := context.Background()

	// The fake sorts its results by score; the scores come back in the
	// documents' order.
	r, err := p.Rerank(ctx, sdk.RerankRequest{Query: "the quick fox", Documents: []string{"a lazy dog", "The quick brown fox", "quick"}})
	want := sdk.RerankResponse{Scores: []float32{0, 1, float32(1.0 / 3)}, PromptTokens: (3 + 3) + (3 + 4) + (3 + 1)}
	if err != nil || !reflect.DeepEqual(r, want) {
		t.Fatalf("rerank = %+v, %v; want %+v", r, err, want)
	}
	body := lastRerank(t, f.log.posts())
	if body["model"] != rerankModel || body["query"] != "the quick fox" || body["top_n"] != 3.0 || body["truncate_prompt_tokens"] != nil {
		t.Errorf("rerank request %v", body)
	}

	// A pair over the limit is the client's error unless Truncate, which
	// sends the limit.
	long := strings.Repeat("word ", 5000)
	_, err = p.Rerank(ctx, sdk.RerankRequest{Query: "word", Documents: []string{"short", long}})
	if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "maximum context length is 4096 tokens") {
		t.Fatalf("rerank of a 5001-token pair = %v, want the upstream's ErrInvalidRequest", err)
	}
	r, err = p.Rerank(ctx, sdk.RerankRequest{Query: "word", Documents: []string{"short", long}, Truncate: true})
	if err != nil || !reflect.DeepEqual(r.Scores, []float32{0, 1}) || r.PromptTokens != 2+fakeMaxModelLen {
		t.Fatalf("rerank with Truncate = %+v, %v; want scores [0 1] over 2 + 4096 tokens", r, err)
	}
	if body := lastRerank(t, f.log.posts()); body["truncate_prompt_tokens"] != float64(fakeMaxModelLen) {
		t.Errorf("rerank request with Truncate: truncate_prompt_tokens = %v, want %d", body["truncate_prompt_tokens"], fakeMaxModelLen)
	}

	// No documents: no scores, and no upstream request.
	before := len(f.log.posts())
	for _, docs := range [][]string{nil, {}} {
		r, err = p.Rerank(ctx, sdk.RerankRequest{Query: "q", Documents: docs})
		if err != nil || r.Scores == nil || len(r.Scores) != 0 || r.PromptTokens != 0 {
			t.Errorf("rerank of %#v = %#v, %v; want empty scores", docs, r, err)
		}
	}
	if n := len(f.log.posts()) - before; n != 0 {
		t.Errorf("rerank of no documents sent %d upstream requests", n)
	}

	// A rerank model counts tokens, but neither generates nor embeds.
	if tr, err := p.Tokenize(ctx, sdk.TokenizeRequest{Input: []string{"a b"}}); err != nil || !reflect.DeepEqual(tr.Counts, []int{2}) {
		t.Errorf("tokenize on a rerank model = %+v, %v", tr, err)
	}
	if g := collect(ctx, p, chatReq("hi")); !sdk.IsInvalidRequest(g.err) || !strings.Contains(g.err.Error(), "loaded to rerank") || len(g.events) != 0 {
		t.Errorf("generate on a rerank model = %v (%d events), want ErrInvalidRequest", g.err, len(g.events))
	}
	if _, err := p.Embed(ctx, sdk.EmbedRequest{Input: []string{"x"}}); !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "loaded to rerank") {
		t.Errorf("embed on a rerank model = %v, want ErrInvalidRequest", err)
	}
	before = len(f.log.posts())
	_ = collect(ctx, p, sdk.GenerateRequest{Prompt: "hi"})
	if n := len(f.log.posts()) - before; n != 0 {
		t.Errorf("refused requests sent %d upstream requests", n)
	}
}

// Rerank needs a model loaded with LoadRequest.Rerank; a model is not
// loaded both to embed and to rerank.
func TestRerankNeedsARerankModel(t *testing.T) {
	f := &fakeOpenAI{model: testModel, dims: 8}
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	ctx := context.Background()
	fresh, _ := newTestProxy()
	if _, err := fresh.Rerank(ctx, sdk.RerankRequest{Query: "q", Documents: []string{"d"}}); !sdk.IsModelNotLoaded(err) {
		t.Errorf("rerank before Load = %v, want ErrModelNotLoaded", err)
	}

	chat, _ := load(t, map[string]any{"upstreams": ups(s.URL)})
	emb, _ := newTestProxy()
	if _, err := emb.Load(ctx, sdk.LoadRequest{Model: testModel, Embedding: true, Options: map[string]any{"upstreams": ups(s.URL)}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.st.Load().stopProbe() })
	for name, p := range map[string]*proxy{"chat": chat, "embedding": emb} {
		for _, docs := range [][]string{{"d"}, nil} {
			_, err := p.Rerank(ctx, sdk.RerankRequest{Query: "q", Documents: docs})
			if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "rerank: true") {
				t.Errorf("rerank of %d documents on a %s model = %v, want ErrInvalidRequest naming rerank: true", len(docs), name, err)
			}
		}
	}
	for _, rec := range f.log.posts() {
		if rec.Path == pathRerank {
			t.Errorf("a refused rerank reached the upstream: %s", rec.Body)
		}
	}

	_, err := fresh.Load(ctx, sdk.LoadRequest{Model: testModel, Embedding: true, Rerank: true, Options: map[string]any{"upstreams": ups(s.URL)}})
	if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "both embedding and rerank") {
		t.Errorf("load for embedding and rerank = %v, want ErrInvalidRequest", err)
	}
}

// flakyReranker is a fake vLLM upstream (fakeOpenAI) whose POST /v1/rerank
// answers with the handler given to failWith, once set (after Load's probe
// rerank), instead of the fake's.
type flakyReranker struct {
	*httptest.Server
	fake *fakeOpenAI
	fail atomic.Pointer[http.HandlerFunc]
}

// newFlakyReranker starts a flakyReranker whose /metrics report waiting
// requests, which orders the upstreams: the least loaded goes first.
func newFlakyReranker(t *testing.T, waiting int) *flakyReranker {
	t.Helper()
	f := &flakyReranker{fake: &fakeOpenAI{model: rerankModel, dims: 8, waiting: waiting}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := f.fail.Load(); h != nil && r.URL.Path == pathRerank {
			f.fake.log.add(r)
			(*h)(w, r)
			return
		}
		f.fake.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *flakyReranker) failWith(h http.HandlerFunc) { f.fail.Store(&h) }

// reranks counts the POSTs to /v1/rerank it received.
func (f *flakyReranker) reranks() int {
	n := 0
	for _, r := range f.fake.log.posts() {
		if r.Path == pathRerank {
			n++
		}
	}
	return n
}

// answer writes a 200 JSON answer.
func answer(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}
}

// status writes an error answer.
func status(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

// A rerank that fails on one upstream before it answered moves to the
// next, as an embedding does, and so does one the upstream has no endpoint
// for (another upstream of the pool may have it); one the upstream blames on
// the request does not.
func TestRerankFailover(t *testing.T) {
	req := sdk.RerankRequest{Query: "the quick fox", Documents: []string{"a lazy dog", "the quick brown fox"}}
	good := sdk.RerankResponse{Scores: []float32{0, 1}, PromptTokens: 6 + 7}
	tests := []struct {
		name string
		fail http.HandlerFunc
		next bool             // b answers
		is   func(error) bool // without next: the sentinel the error matches
		want string           // in the log (next) or the error
	}{
		{name: "HTTP 500", fail: status(500, `{"error":{"message":"boom","type":"InternalServerError","code":500}}`), next: true, want: "HTTP 500: boom"},
		{name: "HTTP 503", fail: func(w http.ResponseWriter, r *http.Request) { writeGolden(w, "error_overloaded_503.http") }, next: true, want: "HTTP 503"},
		{name: "connection reset", fail: func(w http.ResponseWriter, r *http.Request) {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		}, next: true, want: "EOF"},
		{name: "a broken answer", fail: answer(`{"results":[{"index":0,"relevance_score":0.5}]}`), next: true, want: "1 results for 2 documents"},
		{name: "HTTP 400", fail: func(w http.ResponseWriter, r *http.Request) { writeGolden(w, "rerank_too_long_400.http") },
			is: sdk.IsInvalidRequest, want: "maximum context length is 8192 tokens"},
		{name: "HTTP 422", fail: status(422, `{"detail":[{"type":"missing","loc":["body","query"],"msg":"Field required","input":{}}]}`),
			is: sdk.IsInvalidRequest, want: "Field required"},
		{name: "HTTP 404", fail: status(404, `{"detail":"Not Found"}`), next: true, want: "has no POST /v1/rerank"},
		{name: "HTTP 401", fail: status(401, `{"error":"Unauthorized"}`), want: "unauthorised (HTTP 401: Unauthorized)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newFlakyReranker(t, 0), newFlakyReranker(t, 50)
			p, logs := newTestProxy()
			loadRerank(t, p, map[string]any{"upstreams": ups(a.URL, b.URL), "timeout": "5s"})
			a.failWith(tc.fail)
			a0, b0 := a.reranks(), b.reranks()
			r, err := p.Rerank(context.Background(), req)
			if da, db := a.reranks()-a0, b.reranks()-b0; da != 1 || db != map[bool]int{true: 1, false: 0}[tc.next] {
				t.Errorf("a got %d reranks, b %d", da, db)
			}
			if tc.next {
				if err != nil || !reflect.DeepEqual(r, good) {
					t.Fatalf("rerank = %+v, %v; want b's %+v", r, err, good)
				}
				if l := logs.String(); !strings.Contains(l, "trying the next") || !strings.Contains(l, tc.want) {
					t.Errorf("log does not report a's failure (%q):\n%s", tc.want, l)
				}
				return
			}
			switch {
			case err == nil:
				t.Fatalf("no error; %+v", r)
			case !strings.Contains(err.Error(), tc.want):
				t.Errorf("error %q does not say %q", err, tc.want)
			case tc.is != nil && !tc.is(err):
				t.Errorf("error %q does not match its sentinel", err)
			case tc.is == nil && (sdk.IsInvalidRequest(err) || sdk.IsUnsupported(err)):
				t.Errorf("error %q matches a sentinel it should not", err)
			}
		})
	}
}

// Answers that are not a score for every document exactly once are the
// upstream's error, never a panic or a wrong order.
func TestRerankBadAnswers(t *testing.T) {
	a := newFlakyReranker(t, 0)
	p, _ := newTestProxy()
	loadRerank(t, p, map[string]any{"upstreams": ups(a.URL), "timeout": "5s"})
	docs := []string{"doc zero", "doc one"}
	res := func(results string) http.HandlerFunc {
		return answer(`{"id":"rerank-1","model":"` + rerankModel + `","usage":{"total_tokens":9},"results":[` + results + `]}`)
	}
	tests := []struct {
		name string
		fail http.HandlerFunc
		want string
	}{
		{name: "missing index", fail: res(`{"index":0,"relevance_score":0.5},{"relevance_score":0.25}`), want: "result 1 has no index"},
		{name: "duplicate index", fail: res(`{"index":1,"relevance_score":0.5},{"index":1,"relevance_score":0.25}`), want: "index 1 comes twice"},
		{name: "index out of range", fail: res(`{"index":0,"relevance_score":0.5},{"index":2,"relevance_score":0.25}`), want: "index 2, out of range"},
		{name: "negative index", fail: res(`{"index":-1,"relevance_score":0.5},{"index":0,"relevance_score":0.25}`), want: "index -1, out of range"},
		{name: "fractional index", fail: res(`{"index":0.5,"relevance_score":0.5},{"index":0,"relevance_score":0.25}`), want: "reading the rerank answer"},
		{name: "NaN score", fail: res(`{"index":0,"relevance_score":NaN},{"index":1,"relevance_score":0.25}`), want: "reading the rerank answer"},
		{name: "Infinity score", fail: res(`{"index":0,"relevance_score":Infinity},{"index":1,"relevance_score":0.25}`), want: "reading the rerank answer"},
		{name: "score beyond float32", fail: res(`{"index":0,"relevance_score":1e39},{"index":1,"relevance_score":0.25}`), want: "not a finite float32"},
		{name: "null score", fail: res(`{"index":0,"relevance_score":null},{"index":1,"relevance_score":0.25}`), want: "document 0 has no relevance_score"},
		{name: "score as a string", fail: res(`{"index":0,"relevance_score":"0.5"},{"index":1,"relevance_score":0.25}`), want: "reading the rerank answer"},
		{name: "too few results", fail: res(`{"index":0,"relevance_score":0.5}`), want: "1 results for 2 documents"},
		{name: "too many results", fail: res(`{"index":0,"relevance_score":0.5},{"index":1,"relevance_score":0.25},{"index":1,"relevance_score":0.25}`),
			want: "3 results for 2 documents"},
		{name: "no results", fail: answer(`{"id":"rerank-1","usage":{"total_tokens":9}}`), want: "0 results for 2 documents"},
		{name: "results not a list", fail: answer(`{"results":{"0":0.5}}`), want: "reading the rerank answer"},
		{name: "not JSON", fail: answer(`<html>bad gateway</html>`), want: "reading the rerank answer"},
		{name: "cut short", fail: answer(`{"results":[{"index":0,"relev`), want: "reading the rerank answer"},
		{name: "huge body", fail: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"results":[],"padding":"`)
			chunk := strings.Repeat("x", 64<<10)
			for range 48 { // 3 MiB, over the bound for two short documents
				if _, err := io.WriteString(w, chunk); err != nil {
					return
				}
			}
			_, _ = io.WriteString(w, `"}`)
		}, want: fmt.Sprintf("rerank answer is over %d bytes for 2 documents", rerankAnswerLimit(docs))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a.failWith(tc.fail)
			r, err := p.Rerank(context.Background(), sdk.RerankRequest{Query: "doc", Documents: docs})
			switch {
			case err == nil:
				t.Fatalf("no error; %+v", r)
			case !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "upstream "+a.URL):
				t.Errorf("error %q does not say %q of upstream %s", err, tc.want, a.URL)
			case sdk.IsInvalidRequest(err) || sdk.IsUnsupported(err):
				t.Errorf("error %q blames the request", err)
			case r.Scores != nil:
				t.Errorf("scores %v with the error", r.Scores)
			}
		})
	}
	// The upstream was not taken out for its bad answers.
	a.failWith(res(`{"index":1,"relevance_score":0.75},{"index":0,"relevance_score":-2.5}`))
	r, err := p.Rerank(context.Background(), sdk.RerankRequest{Query: "doc", Documents: docs})
	if want := (sdk.RerankResponse{Scores: []float32{-2.5, 0.75}, PromptTokens: 9}); err != nil || !reflect.DeepEqual(r, want) {
		t.Errorf("rerank = %+v, %v; want %+v", r, err, want)
	}
}
