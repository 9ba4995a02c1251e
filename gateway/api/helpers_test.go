package api_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/api"
	"github.com/ragway/ragway/gateway/api/apitest"
	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/metrics"
	"github.com/ragway/ragway/gateway/netguard"
	"github.com/ragway/ragway/gateway/ws"
)

// testServer is the real Fiber app on a real TCP listener.
type testServer struct {
	url  string
	fake *apitest.Fake
	met  *metrics.Metrics
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start serves api.New over fake on 127.0.0.1:0. Zero options take small
// test defaults.
func start(t testing.TB, fake *apitest.Fake, opts api.Options) *testServer {
	t.Helper()
	return startWith(t, fake, fake, opts)
}

// startWith serves backends (which wraps fake).
func startWith(t testing.TB, backends api.Backends, fake *apitest.Fake, opts api.Options) *testServer {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	if opts.Gate == nil {
		opts.Gate = apitest.Gate{}
	}
	opts.Chat = core(opts)
	opts.Chat.Backends = backends
	app := api.New(backends, opts)
	ws.Mount(app, backends, ws.Options{Gate: opts.Gate, Chat: opts.Chat, Logger: opts.Logger, Metrics: opts.Metrics,
		MaxFrameBytes: int64(opts.MaxBodyBytes), AllowedOrigins: opts.CORSOrigins})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		served <- app.Listener(netguard.Listen(ln, netguard.Options{HeaderTimeout: opts.HeaderTimeout}))
	}()
	t.Cleanup(func() {
		_ = app.ShutdownWithTimeout(5 * time.Second)
		<-served
	})
	return &testServer{url: "http://" + ln.Addr().String(), fake: fake, met: opts.Metrics}
}

// core returns opts.Chat (a new one when nil: stateless, no retrieval) with what
// cmd/ragway gives it that it lacks: the usage accountant, metrics, the request
// timeout and the logger.
func core(opts api.Options) *chat.Service {
	c := opts.Chat
	if c == nil {
		c = &chat.Service{}
	}
	if c.Usage == nil && opts.Usage != nil {
		c.Usage = opts.Usage
	}
	if c.Metrics == nil {
		c.Metrics = opts.Metrics
	}
	if c.Timeout == 0 {
		c.Timeout = opts.RequestTimeout
	}
	if c.Logger == nil {
		c.Logger = opts.Logger
	}
	return c
}

func newFake() *apitest.Fake {
	return apitest.New(apitest.ReadyModel("chat", "default"), apitest.EmbeddingModel("embed"))
}

func (s *testServer) do(t *testing.T, method, path, body string, header ...string) *http.Response {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.url+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	// The server reads no body of a request without a well-formed key (the fake
	// gate accepts any).
	req.Header.Set("Authorization", "Bearer "+apitest.Key)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

func (s *testServer) post(t *testing.T, path, body string, header ...string) *http.Response {
	t.Helper()
	return s.do(t, http.MethodPost, path, body, header...)
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeJSON reads resp as JSON into v, failing on any other status.
func decodeJSON(t *testing.T, resp *http.Response, status int, v any) {
	t.Helper()
	b := readAll(t, resp)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("invalid JSON %q: %v", b, err)
	}
}

// apiError is the OpenAI error shape, strictly.
type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// checkError asserts resp is an error in the OpenAI shape with that
// status, type, code and param ("" for null) and returns it.
func checkError(t *testing.T, resp *http.Response, status int, typ, code, param string) apiError {
	t.Helper()
	b := readAll(t, resp)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, b)
	}
	return checkErrorBody(t, b, resp.Header.Get("Content-Type"), typ, code, param)
}

func checkErrorBody(t *testing.T, b []byte, contentType, typ, code, param string) apiError {
	t.Helper()
	if !strings.HasPrefix(contentType, "application/json") {
		t.Errorf("Content-Type %q, want application/json", contentType)
	}
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(b, &outer); err != nil || len(outer) != 1 || outer["error"] == nil {
		t.Fatalf("body %s is not {\"error\":{...}}", b)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(outer["error"], &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("error object %s lacks %q", outer["error"], k)
		}
	}
	if len(keys) != 4 {
		t.Errorf("error object %s has keys beyond message, type, param, code", outer["error"])
	}
	var e apiError
	if err := json.Unmarshal(outer["error"], &e); err != nil {
		t.Fatal(err)
	}
	if e.Message == "" {
		t.Errorf("empty error message in %s", b)
	}
	if e.Type != typ {
		t.Errorf("type %q, want %q (%s)", e.Type, typ, b)
	}
	if got := deref(e.Code); got != code {
		t.Errorf("code %q, want %q (%s)", got, code, b)
	}
	if got := deref(e.Param); got != param {
		t.Errorf("param %q, want %q (%s)", got, param, b)
	}
	return e
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// sseEvent is one SSE event: a comment (": ping") or a data payload.
type sseEvent struct {
	comment string
	data    string
}

// sseReader reads SSE events one by one.
type sseReader struct {
	r *bufio.Reader
}

func newSSEReader(r io.Reader) *sseReader { return &sseReader{r: bufio.NewReader(r)} }

// next returns the next event; io.EOF at the end of the body.
func (s *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	var data []string
	seen := false
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			if err == io.EOF && line == "" && !seen {
				return ev, io.EOF
			}
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if !seen {
				continue
			}
			ev.data = strings.Join(data, "\n")
			return ev, nil
		}
		seen = true
		switch {
		case strings.HasPrefix(line, ":"):
			ev.comment = strings.TrimSpace(line[1:])
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[len("data: "):])
		default:
			return ev, &unexpectedLine{line}
		}
	}
}

type unexpectedLine struct{ line string }

func (e *unexpectedLine) Error() string { return "unexpected SSE line " + e.line }

// readSSE reads every event of a stream, checking the SSE headers.
func readSSE(t *testing.T, resp *http.Response) []sseEvent {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	checkSSEHeaders(t, resp)
	r := newSSEReader(resp.Body)
	var evs []sseEvent
	for {
		ev, err := r.next()
		if err == io.EOF {
			return evs
		}
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
}

func checkSSEHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
}

// dataEvents returns the data payloads (comments dropped).
func dataEvents(evs []sseEvent) []string {
	var out []string
	for _, e := range evs {
		if e.comment == "" {
			out = append(out, e.data)
		}
	}
	return out
}

// chunk is the part of a streamed chunk the tests look at.
type chunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta *struct {
			Role    *string `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		Text         *string         `json:"text"`
		Logprobs     json.RawMessage `json:"logprobs"`
		FinishReason *string         `json:"finish_reason"`
	} `json:"choices"`
	Usage json.RawMessage `json:"usage"`
}

func parseChunk(t *testing.T, data string) (chunk, map[string]json.RawMessage) {
	t.Helper()
	var c chunk
	dec := json.NewDecoder(bytes.NewReader([]byte(data)))
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("chunk %s: %v", data, err)
	}
	var keys map[string]json.RawMessage
	_ = json.Unmarshal([]byte(data), &keys)
	return c, keys
}
