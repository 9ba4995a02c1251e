package api_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/api"
	"github.com/ragway/ragway/gateway/api/apitest"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/workers"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

func TestBadRequestsGetOpenAIErrors(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	chat := func(extra string) string { return `{"model":"chat",` + msgs + extra + `}` }
	cases := []struct {
		name, method, path, body string
		status                   int
		typ, code, param         string
	}{
		{"invalid JSON", "POST", "/v1/chat/completions", `{"model":`, 400, "invalid_request_error", "invalid_json", ""},
		{"empty body", "POST", "/v1/chat/completions", ``, 400, "invalid_request_error", "invalid_json", ""},
		{"not an object", "POST", "/v1/chat/completions", `[1,2]`, 400, "invalid_request_error", "invalid_json", ""},
		{"model wrong type", "POST", "/v1/chat/completions", `{"model":3,` + msgs + `}`, 400, "invalid_request_error", "invalid_type", "model"},
		{"temperature wrong type", "POST", "/v1/chat/completions", chat(`,"temperature":"hot"`), 400, "invalid_request_error", "invalid_type", "temperature"},
		{"include_usage wrong type", "POST", "/v1/chat/completions", chat(`,"stream":true,"stream_options":{"include_usage":"yes"}`), 400, "invalid_request_error", "invalid_type", "stream_options.include_usage"},
		{"seed not an integer", "POST", "/v1/chat/completions", chat(`,"seed":1.5`), 400, "invalid_request_error", "invalid_type", "seed"},
		{"seed too large", "POST", "/v1/chat/completions", chat(`,"seed":1e30`), 400, "invalid_request_error", "invalid_type", "seed"},
		{"missing model", "POST", "/v1/chat/completions", `{` + msgs + `}`, 400, "invalid_request_error", "missing_required_parameter", "model"},
		{"unknown model", "POST", "/v1/chat/completions", `{"model":"nope",` + msgs + `}`, 404, "invalid_request_error", "model_not_found", "model"},
		{"embedding model for chat", "POST", "/v1/chat/completions", `{"model":"embed",` + msgs + `}`, 400, "invalid_request_error", "invalid_value", "model"},
		{"missing messages", "POST", "/v1/chat/completions", `{"model":"chat"}`, 400, "invalid_request_error", "missing_required_parameter", "messages"},
		{"empty messages", "POST", "/v1/chat/completions", `{"model":"chat","messages":[]}`, 400, "invalid_request_error", "invalid_value", "messages"},
		{"messages not an array", "POST", "/v1/chat/completions", `{"model":"chat","messages":"hi"}`, 400, "invalid_request_error", "invalid_type", "messages"},
		{"bad role", "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"a"},{"role":"wizard","content":"b"}]}`, 400, "invalid_request_error", "invalid_value", "messages[1].role"},
		{"role wrong type", "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":1,"content":"b"}]}`, 400, "invalid_request_error", "invalid_type", "messages[0].role"},
		{"missing content", "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user"}]}`, 400, "invalid_request_error", "missing_required_parameter", "messages[0].content"},
		{"image part", "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}}]}]}`, 400, "invalid_request_error", "unsupported", "messages[0].content[1].type"},
		{"content number", "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":5}]}`, 400, "invalid_request_error", "invalid_type", "messages[0].content"},
		{"temperature too high", "POST", "/v1/chat/completions", chat(`,"temperature":2.5`), 400, "invalid_request_error", "invalid_value", "temperature"},
		{"top_p zero", "POST", "/v1/chat/completions", chat(`,"top_p":0`), 400, "invalid_request_error", "invalid_value", "top_p"},
		{"n too large", "POST", "/v1/chat/completions", chat(`,"n":9`), 400, "invalid_request_error", "invalid_value", "n"},
		{"n zero", "POST", "/v1/chat/completions", chat(`,"n":0`), 400, "invalid_request_error", "invalid_value", "n"},
		{"max_tokens zero", "POST", "/v1/chat/completions", chat(`,"max_tokens":0`), 400, "invalid_request_error", "invalid_value", "max_tokens"},
		{"max_completion_tokens negative", "POST", "/v1/chat/completions", chat(`,"max_completion_tokens":-1`), 400, "invalid_request_error", "invalid_value", "max_completion_tokens"},
		{"five stops", "POST", "/v1/chat/completions", chat(`,"stop":["a","b","c","d","e"]`), 400, "invalid_request_error", "invalid_value", "stop"},
		{"stop element not a string", "POST", "/v1/chat/completions", chat(`,"stop":["a",1]`), 400, "invalid_request_error", "invalid_type", "stop[1]"},
		{"stop number", "POST", "/v1/chat/completions", chat(`,"stop":1`), 400, "invalid_request_error", "invalid_type", "stop"},
		{"presence_penalty", "POST", "/v1/chat/completions", chat(`,"presence_penalty":-2.1`), 400, "invalid_request_error", "invalid_value", "presence_penalty"},
		{"frequency_penalty", "POST", "/v1/chat/completions", chat(`,"frequency_penalty":3`), 400, "invalid_request_error", "invalid_value", "frequency_penalty"},
		{"top_logprobs range", "POST", "/v1/chat/completions", chat(`,"logprobs":true,"top_logprobs":21`), 400, "invalid_request_error", "invalid_value", "top_logprobs"},
		{"top_logprobs without logprobs", "POST", "/v1/chat/completions", chat(`,"top_logprobs":2`), 400, "invalid_request_error", "invalid_value", "top_logprobs"},
		{"min_p range", "POST", "/v1/chat/completions", chat(`,"min_p":1.5`), 400, "invalid_request_error", "invalid_value", "min_p"},
		{"top_k range", "POST", "/v1/chat/completions", chat(`,"top_k":-2`), 400, "invalid_request_error", "invalid_value", "top_k"},
		{"repetition_penalty range", "POST", "/v1/chat/completions", chat(`,"repetition_penalty":0`), 400, "invalid_request_error", "invalid_value", "repetition_penalty"},
		{"min_tokens negative", "POST", "/v1/chat/completions", chat(`,"min_tokens":-1`), 400, "invalid_request_error", "invalid_value", "min_tokens"},
		{"stop_token_ids negative", "POST", "/v1/chat/completions", chat(`,"stop_token_ids":[-3]`), 400, "invalid_request_error", "invalid_value", "stop_token_ids"},
		{"completions token prompt", "POST", "/v1/completions", `{"model":"chat","prompt":[1,2,3]}`, 400, "invalid_request_error", "unsupported", "prompt"},
		{"completions nested token prompt", "POST", "/v1/completions", `{"model":"chat","prompt":[[1,2]]}`, 400, "invalid_request_error", "unsupported", "prompt"},
		{"completions missing prompt", "POST", "/v1/completions", `{"model":"chat"}`, 400, "invalid_request_error", "missing_required_parameter", "prompt"},
		{"completions echo", "POST", "/v1/completions", `{"model":"chat","prompt":"a","echo":true}`, 400, "invalid_request_error", "unsupported", "echo"},
		{"completions suffix", "POST", "/v1/completions", `{"model":"chat","prompt":"a","suffix":"z"}`, 400, "invalid_request_error", "unsupported", "suffix"},
		{"completions best_of", "POST", "/v1/completions", `{"model":"chat","prompt":"a","best_of":3}`, 400, "invalid_request_error", "unsupported", "best_of"},
		{"completions logprobs range", "POST", "/v1/completions", `{"model":"chat","prompt":"a","logprobs":6}`, 400, "invalid_request_error", "invalid_value", "logprobs"},
		{"completions temperature", "POST", "/v1/completions", `{"model":"chat","prompt":"a","temperature":-1}`, 400, "invalid_request_error", "invalid_value", "temperature"},
		{"embeddings chat model", "POST", "/v1/embeddings", `{"model":"chat","input":"a"}`, 400, "invalid_request_error", "invalid_value", "model"},
		{"embeddings unknown model", "POST", "/v1/embeddings", `{"model":"nope","input":"a"}`, 404, "invalid_request_error", "model_not_found", "model"},
		{"embeddings empty list", "POST", "/v1/embeddings", `{"model":"embed","input":[]}`, 400, "invalid_request_error", "invalid_value", "input"},
		{"embeddings empty string", "POST", "/v1/embeddings", `{"model":"embed","input":""}`, 400, "invalid_request_error", "invalid_value", "input"},
		{"embeddings tokens", "POST", "/v1/embeddings", `{"model":"embed","input":[[1,2]]}`, 400, "invalid_request_error", "unsupported", "input"},
		{"embeddings missing input", "POST", "/v1/embeddings", `{"model":"embed"}`, 400, "invalid_request_error", "missing_required_parameter", "input"},
		{"embeddings format", "POST", "/v1/embeddings", `{"model":"embed","input":"a","encoding_format":"hex"}`, 400, "invalid_request_error", "invalid_value", "encoding_format"},
		{"embeddings dimensions", "POST", "/v1/embeddings", `{"model":"embed","input":"a","dimensions":2}`, 400, "invalid_request_error", "unsupported", "dimensions"},
		{"unknown model object", "GET", "/v1/models/nope", ``, 404, "invalid_request_error", "model_not_found", "model"},
		{"unknown route", "GET", "/v1/nope", ``, 404, "invalid_request_error", "unknown_url", ""},
		{"unknown route POST", "POST", "/v2/chat/completions", `{}`, 404, "invalid_request_error", "unknown_url", ""},
		{"wrong method", "GET", "/v1/chat/completions", ``, 405, "invalid_request_error", "method_not_allowed", ""},
		{"wrong method models", "DELETE", "/v1/models", ``, 405, "invalid_request_error", "method_not_allowed", ""},
		{"websocket without upgrade", "GET", "/v1/ws", ``, 426, "invalid_request_error", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.do(t, tc.method, tc.path, tc.body)
			if resp.Header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id header")
			}
			checkError(t, resp, tc.status, tc.typ, tc.code, tc.param)
		})
	}
	if n := len(s.fake.Calls()); n != 0 {
		t.Errorf("bad requests reached the backend %d times", n)
	}
	assertHealthy(t, s)
}

// assertHealthy checks the app still serves: healthz and a chat completion.
func assertHealthy(t *testing.T, s *testServer) {
	t.Helper()
	var h map[string]string
	decodeJSON(t, s.do(t, "GET", "/healthz", ""), 200, &h)
	if h["status"] != "ok" {
		t.Errorf("healthz %v", h)
	}
	var out struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	s.fake.SetGenerate(apitest.Echo)
	decodeJSON(t, s.post(t, "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"still alive"}]}`), 200, &out)
	if len(out.Choices) != 1 || out.Choices[0].Message.Content != "still alive" {
		t.Errorf("after errors: %+v", out)
	}
}

func TestBodyTooLargeIs413(t *testing.T) {
	s := start(t, newFake(), api.Options{MaxBodyBytes: 1 << 10})
	addr := strings.TrimPrefix(s.url, "http://")
	// A client announcing a too-large body gets 413 as soon as the headers
	// are read: fasthttp rejects it before any handler, through the app's
	// ErrorHandler.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+apitest.Key+"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"model\":", 1<<20)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkError(t, resp, 413, "invalid_request_error", "request_too_large", "")

	// The same through net/http with Expect: 100-continue (as curl sends for
	// large bodies), and a chunked body that grows past the limit.
	req, _ := http.NewRequest("POST", s.url+"/v1/chat/completions", strings.NewReader(strings.Repeat("x", 4<<10)))
	req.Header.Set("Expect", "100-continue")
	req.Header.Set("Authorization", "Bearer "+apitest.Key)
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	checkError(t, resp, 413, "invalid_request_error", "request_too_large", "")

	// A plain client that sends the whole body gets the 413 too (thanks to
	// netguard's lingering close; without it the connection is usually reset).
	for range 5 {
		resp, err = postWithKey(s.url+"/v1/embeddings", strings.NewReader(strings.Repeat("x", 3<<20)))
		if err != nil {
			t.Fatal(err)
		}
		checkError(t, resp, 413, "invalid_request_error", "request_too_large", "")
	}

	// A body just under the limit is fine.
	pad := strings.Repeat(" ", 900)
	resp = s.post(t, "/v1/chat/completions", `{"model":"chat",`+pad+`"messages":[{"role":"user","content":"ok"}]}`)
	if resp.StatusCode != 200 {
		t.Errorf("status %d for a body under the limit: %s", resp.StatusCode, readAll(t, resp))
	}
	resp.Body.Close()
	assertHealthy(t, s)
}

func TestBackendErrorsMapToStatuses(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	cases := []struct {
		name       string
		err        error
		status     int
		typ, code  string
		retryAfter string
		param      string
	}{
		{"unknown model", fmt.Errorf("%w: %q", workers.ErrUnknownModel, "chat"), 404, "invalid_request_error", "model_not_found", "", "model"},
		{"queue full", &workers.QueueFullError{Model: "chat", RetryAfter: 1500 * time.Millisecond}, 429, "rate_limit_error", "queue_full", "2", ""},
		{"queue full no hint", &workers.QueueFullError{Model: "chat"}, 429, "rate_limit_error", "queue_full", "1", ""},
		{"unavailable", workers.ErrUnavailable, 503, "server_error", "model_unavailable", "1", ""},
		{"queue timeout", workers.ErrQueueTimeout, 429, "rate_limit_error", "queue_timeout", "1", ""},
		{"stopping", workers.ErrStopping, 503, "server_error", "model_unavailable", "1", ""},
		{"model not loaded", sdk.ErrModelNotLoaded, 503, "server_error", "model_unavailable", "1", ""},
		{"invalid request", sdk.InvalidRequestf("prompt too long"), 400, "invalid_request_error", "invalid_value", "", ""},
		{"unsupported", fmt.Errorf("logprobs: %w", sdk.ErrUnsupported), 400, "invalid_request_error", "unsupported", "", ""},
		{"overloaded", sdk.ErrOverloaded, 429, "rate_limit_error", "overloaded", "1", ""},
		{"deadline", fmt.Errorf("generate: %w", context.DeadlineExceeded), 504, "server_error", "timeout", "", ""},
		{"plugin shutdown", fmt.Errorf("%w: exit status 2", sdk.ErrPluginShutdown), 502, "server_error", "backend_error", "", ""},
		{"anything else", errors.New("boom"), 502, "server_error", "backend_error", "", ""},
	}
	for _, tc := range cases {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stream=%v", tc.name, stream), func(t *testing.T) {
				s.fake.SetGenerate(apitest.Fail(tc.err))
				resp := s.post(t, "/v1/chat/completions", fmt.Sprintf(`{"model":"chat","stream":%v,"messages":[{"role":"user","content":"x"}]}`, stream))
				if got := resp.Header.Get("Retry-After"); got != tc.retryAfter {
					t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
				}
				checkError(t, resp, tc.status, tc.typ, tc.code, tc.param)
			})
		}
	}
	t.Run("plugin crash details stay out of the response", func(t *testing.T) {
		s.fake.SetGenerate(apitest.Fail(fmt.Errorf("%w: pid 7 exited; stderr: token=s3cret", sdk.ErrPluginShutdown)))
		e := checkError(t, s.post(t, "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"x"}]}`), 502, "server_error", "backend_error", "")
		if strings.Contains(e.Message, "s3cret") || strings.Contains(e.Message, "pid") {
			t.Errorf("message %q leaks the plugin's stderr", e.Message)
		}
	})
	t.Run("database error details are logged, not sent", func(t *testing.T) {
		var log apitest.SyncBuffer
		s := start(t, newFake(), api.Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
		s.fake.SetGenerate(apitest.Fail(fmt.Errorf("%w: pq: relation \"secret_table\" does not exist", store.ErrDatabase)))
		e := checkError(t, s.post(t, "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"x"}]}`), 500, "server_error", "database_error", "")
		if strings.Contains(e.Message, "secret_table") {
			t.Errorf("message %q carries the database's error", e.Message)
		}
		if !strings.Contains(log.String(), "secret_table") {
			t.Errorf("the gateway's log does not name the database's error:\n%s", log.String())
		}
	})
	t.Run("final event with error", func(t *testing.T) {
		// The backend's words are the operator's (logged), the client reads a fixed message.
		var log apitest.SyncBuffer
		s := start(t, newFake(), api.Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
		s.fake.SetGenerate(func(_ context.Context, _ string, _ sdk.GenerateRequest, emit func(sdk.Event) error) error {
			return emit(sdk.Event{FinishReason: sdk.FinishError, Error: "CUDA exploded at ggml.c:1234", Usage: &sdk.Usage{}})
		})
		e := checkError(t, s.post(t, "/v1/completions", `{"model":"chat","prompt":"x"}`), 502, "server_error", "backend_error", "")
		if strings.Contains(e.Message, "CUDA") {
			t.Errorf("message %q carries the backend's own words", e.Message)
		}
		if !strings.Contains(log.String(), "CUDA exploded") {
			t.Errorf("the gateway's log does not name the backend's error:\n%s", log.String())
		}
	})
	t.Run("embed error", func(t *testing.T) {
		s.fake.SetEmbed(func(context.Context, string, sdk.EmbedRequest) (sdk.EmbedResponse, error) {
			return sdk.EmbedResponse{}, &workers.QueueFullError{Model: "embed", RetryAfter: 3 * time.Second}
		})
		resp := s.post(t, "/v1/embeddings", `{"model":"embed","input":"x"}`)
		if got := resp.Header.Get("Retry-After"); got != "3" {
			t.Errorf("Retry-After %q", got)
		}
		checkError(t, resp, 429, "rate_limit_error", "queue_full", "")
	})
	t.Run("request timeout", func(t *testing.T) {
		s := start(t, newFake(), api.Options{RequestTimeout: 50 * time.Millisecond})
		s.fake.SetGenerate(func(ctx context.Context, _ string, _ sdk.GenerateRequest, _ func(sdk.Event) error) error {
			<-ctx.Done()
			return ctx.Err()
		})
		checkError(t, s.post(t, "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"x"}]}`), 504, "server_error", "timeout", "")
	})
}

func TestPanicsAreRecovered(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	s.fake.SetGenerate(func(context.Context, string, sdk.GenerateRequest, func(sdk.Event) error) error {
		panic("fake backend bug")
	})
	checkError(t, s.post(t, "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"x"}]}`), 502, "server_error", "backend_error", "")
	checkError(t, s.post(t, "/v1/chat/completions", `{"model":"chat","n":2,"messages":[{"role":"user","content":"x"}]}`), 502, "server_error", "backend_error", "")
	checkError(t, s.post(t, "/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"x"}]}`), 502, "server_error", "backend_error", "")
	assertHealthy(t, s)

	// A panic in the handler itself is a 500.
	fake := newFake()
	s = startWith(t, panicky{fake}, fake, api.Options{})
	checkError(t, s.post(t, "/v1/chat/completions", `{"model":"boom","messages":[{"role":"user","content":"x"}]}`), 500, "server_error", "internal_error", "")
	assertHealthy(t, s)
}

// panicky panics when asked for the model "boom".
type panicky struct{ *apitest.Fake }

func (p panicky) Model(name string) (workers.ModelStatus, bool) {
	if name == "boom" {
		panic("lookup bug")
	}
	return p.Fake.Model(name)
}

// postWithKey posts a JSON body with a key (the server reads no body without one).
func postWithKey(url string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequest("POST", url, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apitest.Key)
	return http.DefaultClient.Do(req)
}

func TestBodyTooLargeOnABareListener(t *testing.T) {
	// Served on a bare listener, without netguard's lingering close: the 413 path
	// drains the refused body itself, so a plain client still gets the 413.
	app := api.New(newFake(), api.Options{MaxBodyBytes: 1 << 20, Logger: quietLogger(), Gate: apitest.Gate{}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- app.Listener(ln) }()
	defer func() {
		_ = app.ShutdownWithTimeout(5 * time.Second)
		<-served
	}()
	for range 3 {
		resp, err := postWithKey("http://"+ln.Addr().String()+"/v1/chat/completions", strings.NewReader(strings.Repeat("x", 5<<20)))
		if err != nil {
			t.Fatal(err)
		}
		checkError(t, resp, 413, "invalid_request_error", "request_too_large", "")
	}
}
