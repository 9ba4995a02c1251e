package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// testModel is the model id the golden transcripts and fakes serve.
const testModel = "Qwen/Qwen2.5-0.5B-Instruct"

// recorded is one request an upstream received.
type recorded struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

// requestLog records the requests a test upstream receives.
type requestLog struct {
	mu   sync.Mutex
	reqs []recorded
}

func (l *requestLog) add(r *http.Request) []byte {
	body, _ := io.ReadAll(r.Body)
	l.mu.Lock()
	l.reqs = append(l.reqs, recorded{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
	l.mu.Unlock()
	return body
}

// posts returns the recorded POST requests.
func (l *requestLog) posts() []recorded {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []recorded
	for _, r := range l.reqs {
		if r.Method == http.MethodPost {
			out = append(out, r)
		}
	}
	return out
}

func (l *requestLog) all() []recorded {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]recorded(nil), l.reqs...)
}

// replay is an upstream that answers each "METHOD /path" with a golden HTTP
// response from testdata, streaming an event-stream body event by event.
// Routes may be changed while it runs.
type replay struct {
	*httptest.Server
	log    requestLog
	mu     sync.Mutex
	routes map[string]string
}

// defaultRoutes are a healthy vLLM upstream's probe answers.
func defaultRoutes() map[string]string {
	return map[string]string{
		"GET /health":               "health_ok.http",
		"GET /metrics":              "metrics.http",
		"GET /v1/models":            "models.http",
		"POST /v1/chat/completions": "chat_stream.http",
	}
}

func newReplay(t *testing.T, routes map[string]string) *replay {
	t.Helper()
	rp := &replay{routes: defaultRoutes()}
	for k, v := range routes {
		if v == "" {
			delete(rp.routes, k)
		} else {
			rp.routes[k] = v
		}
	}
	rp.Server = httptest.NewServer(http.HandlerFunc(rp.serve))
	t.Cleanup(rp.Close)
	return rp
}

func (rp *replay) route(key, file string) {
	rp.mu.Lock()
	rp.routes[key] = file
	rp.mu.Unlock()
}

func (rp *replay) serve(w http.ResponseWriter, r *http.Request) {
	rp.log.add(r)
	rp.mu.Lock()
	file, ok := rp.routes[r.Method+" "+r.URL.Path]
	rp.mu.Unlock()
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"detail":"Not Found"}`)
		return
	}
	writeGolden(w, file)
}

// writeGolden writes the golden response in testdata/file to w, flushing
// after every SSE event.
func writeGolden(w http.ResponseWriter, file string) {
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	for k, v := range resp.Header {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	for _, ev := range bytes.SplitAfter(body, []byte("\n\n")) {
		_, _ = w.Write(ev)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
}

// fakeOpenAI is a small deterministic OpenAI-compatible server shaped like
// vLLM: chat and completions stream the last user message (or the prompt)
// back word by word, one chunk per word after delay, honouring max_tokens
// and stop (never streaming a partial stop sequence), with the usage
// chunk and [DONE]; embeddings hash words into a fixed-size vector;
// embeddings refuse an input of more than max_model_len (4096) words as vLLM
// does, unless truncate_prompt_tokens cuts it; POST /v1/rerank scores each
// document by the share of the query's words it contains (see fakeRerank);
// POST /tokenize counts words; /health, /v1/models and /metrics (with the
// running gauge) answer too.
type fakeOpenAI struct {
	model string
	key   string // required bearer key, if set
	delay time.Duration
	dims  int
	// waiting is the vllm:num_requests_waiting gauge /metrics reports.
	waiting int

	running atomic.Int64
	log     requestLog
}

func (f *fakeOpenAI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body := f.log.add(r)
	switch r.URL.Path {
	case "/health":
		return
	case "/metrics":
		fmt.Fprintf(w, "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine=\"0\",model_name=%q} %d.0\n"+
			"# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{engine=\"0\",model_name=%q} %d.0\n",
			f.model, f.running.Load(), f.model, f.waiting)
		return
	}
	if f.key != "" && r.Header.Get("Authorization") != "Bearer "+f.key {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"Unauthorized"}`)
		return
	}
	switch r.URL.Path {
	case "/v1/models":
		fmt.Fprintf(w, `{"object":"list","data":[{"id":%q,"object":"model","owned_by":"vllm","max_model_len":%d}]}`, f.model, fakeMaxModelLen)
	case "/v1/chat/completions", "/v1/completions":
		f.generate(w, r, body, r.URL.Path == "/v1/chat/completions")
	case "/v1/embeddings":
		f.embed(w, body)
	case "/v1/rerank":
		f.rerank(w, body)
	case "/tokenize":
		var req struct {
			Model  string `json:"model"`
			Prompt string `json:"prompt"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			badRequest(w, err.Error())
			return
		}
		n := len(strings.Fields(req.Prompt))
		_ = json.NewEncoder(w).Encode(map[string]any{"count": n, "max_model_len": fakeMaxModelLen, "tokens": make([]int, n)})
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"detail":"Not Found"}`)
	}
}

type fakeRequest struct {
	Model    string        `json:"model"`
	Messages []wireMessage `json:"messages"`
	Prompt   string        `json:"prompt"`
	Stream   bool          `json:"stream"`
	Stop     []string      `json:"stop"`
	Max      int           `json:"max_tokens"`
}

func badRequest(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": "BadRequestError", "param": nil, "code": 400}})
}

// words splits s into tokens that concatenate back to s: each word keeps
// the whitespace before it.
func words(s string) []string {
	var out []string
	start := 0
	for i := 1; i < len(s); i++ {
		if (s[i] == ' ' || s[i] == '\n') && s[i-1] != ' ' && s[i-1] != '\n' {
			out = append(out, s[start:i])
			start = i
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

func (f *fakeOpenAI) generate(w http.ResponseWriter, r *http.Request, body []byte, chat bool) {
	var req fakeRequest
	if err := json.Unmarshal(body, &req); err != nil {
		badRequest(w, err.Error())
		return
	}
	if req.Model != f.model {
		badRequest(w, fmt.Sprintf("The model `%s` does not exist.", req.Model))
		return
	}
	text, prompt := req.Prompt, len(words(req.Prompt))
	if chat {
		text = ""
		for _, m := range req.Messages {
			var content string
			if m.Content != nil {
				content = *m.Content
			}
			prompt += len(words(content)) + 1
			if m.Role == "user" {
				text = strings.TrimSpace(content)
			}
		}
	}
	f.running.Add(1)
	defer f.running.Add(-1)
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	flusher := w.(http.Flusher)
	send := func(v any) bool {
		b, _ := json.Marshal(v)
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
		flusher.Flush()
		return true
	}
	object := "text_completion"
	if chat {
		object = "chat.completion.chunk"
	}
	chunk := func(text string, finish any) map[string]any {
		c := map[string]any{"index": 0, "logprobs": nil, "finish_reason": finish}
		if chat {
			c["delta"] = map[string]any{"content": text}
		} else {
			c["text"] = text
		}
		return map[string]any{"id": "fake-1", "object": object, "created": 1718000000, "model": f.model, "choices": []any{c}}
	}
	if chat {
		role := chunk("", nil)
		role["choices"].([]any)[0].(map[string]any)["delta"] = map[string]any{"role": "assistant", "content": ""}
		if !send(role) {
			return
		}
	}
	stop := sdk.NewStopBuffer(req.Stop)
	timer := time.NewTimer(f.delay)
	defer timer.Stop()
	completion, finish := 0, "stop"
	toks := words(text)
	for _, tok := range toks {
		if req.Max > 0 && completion >= req.Max {
			finish = "length"
			break
		}
		timer.Reset(f.delay)
		select {
		case <-timer.C:
		case <-r.Context().Done():
			return
		}
		completion++
		out, stopped := stop.Push(tok)
		if stopped {
			if !send(chunk(out, "stop")) {
				return
			}
			finish = ""
			break
		}
		if out != "" && !send(chunk(out, nil)) {
			return
		}
	}
	if finish != "" && !send(chunk(stop.Flush(), finish)) {
		return
	}
	if !send(map[string]any{"id": "fake-1", "object": object, "created": 1718000000, "model": f.model, "choices": []any{},
		"usage": map[string]any{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}) {
		return
	}
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
}

// fakeMaxModelLen is the fake's context length (max_model_len), in words.
const fakeMaxModelLen = 4096

func (f *fakeOpenAI) embed(w http.ResponseWriter, body []byte) {
	var req struct {
		Model    string   `json:"model"`
		Input    []string `json:"input"`
		Truncate *int     `json:"truncate_prompt_tokens"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		badRequest(w, err.Error())
		return
	}
	data := make([]map[string]any, len(req.Input))
	tokens := 0
	for i, in := range req.Input {
		v := make([]float64, f.dims)
		words := strings.Fields(strings.ToLower(in))
		switch {
		case req.Truncate != nil && *req.Truncate == -1:
			words = words[:min(len(words), fakeMaxModelLen)]
		case req.Truncate != nil && *req.Truncate > 0:
			words = words[:min(len(words), *req.Truncate, fakeMaxModelLen)]
		}
		if len(words) > fakeMaxModelLen {
			badRequest(w, fmt.Sprintf("This model's maximum context length is %d tokens. However, you requested %d tokens in the input for "+
				"embedding generation. Please reduce the length of the input.", fakeMaxModelLen, len(words)))
			return
		}
		for _, wd := range words {
			h := fnv.New32a()
			_, _ = h.Write([]byte(wd))
			x := h.Sum32()
			sign := 1.0
			if x&(1<<31) != 0 {
				sign = -1
			}
			v[int(x%uint32(f.dims))] += sign
			tokens++
		}
		n := 0.0
		for _, x := range v {
			n += x * x
		}
		if n > 0 {
			for j := range v {
				v[j] /= math.Sqrt(n)
			}
		}
		data[i] = map[string]any{"index": i, "object": "embedding", "embedding": v}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"object": "list", "model": f.model, "data": data,
		"usage": map[string]any{"prompt_tokens": tokens, "total_tokens": tokens}})
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newTestProxy returns a proxy whose log records go to the returned
// buffer, at every level.
func newTestProxy() (*proxy, *syncBuffer) {
	buf := &syncBuffer{}
	return newProxy(slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))), buf
}

// load loads a proxy with opts (upstreams given as URLs) for testModel.
func load(t *testing.T, opts map[string]any) (*proxy, *syncBuffer) {
	t.Helper()
	p, logs := newTestProxy()
	loadInto(t, p, opts)
	return p, logs
}

// loadInto loads p with opts, failing the test on an error; the probe loop
// stops at cleanup.
func loadInto(t *testing.T, p *proxy, opts map[string]any) {
	t.Helper()
	if _, err := p.Load(context.Background(), sdk.LoadRequest{Model: testModel, Options: opts}); err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() {
		if st := p.st.Load(); st != nil {
			st.stopProbe()
			st.pool.client.CloseIdleConnections()
		}
	})
}

// ups is an upstreams option value.
func ups(urls ...string) []any {
	out := make([]any, len(urls))
	for i, u := range urls {
		out[i] = u
	}
	return out
}

// generation is the outcome of one Generate call.
type generation struct {
	events []sdk.Event
	text   string
	final  sdk.Event
	err    error
}

func collect(ctx context.Context, p *proxy, req sdk.GenerateRequest) generation {
	var g generation
	g.err = p.Generate(ctx, req, func(e sdk.Event) error {
		g.events = append(g.events, e)
		g.text += e.Text
		if e.Final() {
			g.final = e
		}
		return nil
	})
	return g
}

// checkContract checks the SDK event contract on a finished generation:
// deltas, then one final event last, tokens adding up to the usage.
func checkContract(t *testing.T, evs []sdk.Event) {
	t.Helper()
	if len(evs) == 0 {
		t.Fatal("no events")
	}
	tokens := 0
	for i, e := range evs {
		tokens += e.Tokens
		if last := i == len(evs)-1; e.Final() != last {
			t.Fatalf("event %d of %d: final %v", i, len(evs), e.Final())
		}
		if e.Tokens < 0 {
			t.Fatalf("event %d: negative tokens", i)
		}
	}
	final := evs[len(evs)-1]
	if final.Usage == nil || final.Usage.CompletionTokens != tokens {
		t.Fatalf("final usage %+v, events' tokens add up to %d", final.Usage, tokens)
	}
}

func chatReq(content string) sdk.GenerateRequest {
	return sdk.GenerateRequest{Messages: []sdk.Message{{Role: "user", Content: content}}}
}

func f64(v float64) *float64 { return &v }
func i64(v int64) *int64     { return &v }

// rerank answers POST /v1/rerank as vLLM does for a cross-encoder: each
// pair is the query's words then the document's, refused over
// max_model_len (4096) words unless truncate_prompt_tokens cuts the
// document; a document's score is the share of the query's distinct words
// it contains; results are sorted by score (ties by index), cut to top_n,
// and echo the documents.
func (f *fakeOpenAI) rerank(w http.ResponseWriter, body []byte) {
	var req struct {
		Model     string   `json:"model"`
		Query     string   `json:"query"`
		Documents []string `json:"documents"`
		TopN      int      `json:"top_n"`
		Truncate  *int     `json:"truncate_prompt_tokens"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		badRequest(w, err.Error())
		return
	}
	if req.Model != f.model {
		badRequest(w, fmt.Sprintf("The model `%s` does not exist.", req.Model))
		return
	}
	limit := fakeMaxModelLen
	if req.Truncate != nil && *req.Truncate > 0 {
		limit = min(limit, *req.Truncate)
	}
	query := strings.Fields(strings.ToLower(req.Query))
	type result struct {
		Index int            `json:"index"`
		Doc   map[string]any `json:"document"`
		Score float64        `json:"relevance_score"`
	}
	results := make([]result, len(req.Documents))
	tokens := 0
	for i, d := range req.Documents {
		doc := strings.Fields(strings.ToLower(d))
		n := len(query) + len(doc)
		if n > fakeMaxModelLen && req.Truncate == nil {
			badRequest(w, fmt.Sprintf("This model's maximum context length is %d tokens. However, you requested %d tokens in the input for "+
				"score. Please reduce the length of the input.", fakeMaxModelLen, n))
			return
		}
		if n > limit {
			doc = doc[:max(0, limit-len(query))]
			n = len(query) + len(doc)
		}
		tokens += n
		in := map[string]bool{}
		for _, wd := range doc {
			in[wd] = true
		}
		distinct, hit := map[string]bool{}, 0
		for _, q := range query {
			if !distinct[q] {
				distinct[q] = true
				if in[q] {
					hit++
				}
			}
		}
		score := 0.0
		if len(distinct) > 0 {
			score = float64(hit) / float64(len(distinct))
		}
		results[i] = result{Index: i, Doc: map[string]any{"text": d, "multi_modal": nil}, Score: score}
	}
	sort.SliceStable(results, func(a, b int) bool { return results[a].Score > results[b].Score })
	if req.TopN > 0 && req.TopN < len(results) {
		results = results[:req.TopN]
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"id": "rerank-fake-1", "model": f.model,
		"usage": map[string]any{"prompt_tokens": tokens, "total_tokens": tokens}, "results": results})
}
