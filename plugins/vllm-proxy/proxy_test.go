package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// Behaviour against misbehaving upstreams: failover, timeouts,
// cancellation, the API key.

// stub is an upstream whose /health answers 200 and whose generation
// endpoints run gen; everything else is 404.
type stub struct {
	*httptest.Server
	log   requestLog
	posts atomic.Int64
}

func newStub(t *testing.T, gen http.HandlerFunc) *stub {
	t.Helper()
	s := &stub{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/health":
			s.log.add(r)
		case r.Method == http.MethodPost:
			// Read the body as a real server does: only then does
			// net/http notice the client going away.
			s.log.add(r)
			s.posts.Add(1)
			gen(w, r)
		default:
			s.log.add(r)
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// sse writes an event-stream head and the given data payloads.
func sse(w http.ResponseWriter, payloads ...string) {
	w.Header().Set("Content-Type", "text/event-stream")
	for _, p := range payloads {
		fmt.Fprintf(w, "data: %s\n\n", p)
	}
	w.(http.Flusher).Flush()
}

// block waits for the client to go away (bounded, so a broken test
// cannot hang the server's Close).
func block(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(20 * time.Second):
	}
}

const roleChunk = `{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`

func TestFailoverBeforeFirstToken(t *testing.T) {
	const timeout = 300 * time.Millisecond
	tests := []struct {
		name string
		gen  http.HandlerFunc
		want string // in the warning logged about A
	}{
		{name: "HTTP 500", gen: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error":{"message":"boom","type":"InternalServerError","code":500}}`, http.StatusInternalServerError)
		}, want: "HTTP 500: boom"},
		{name: "HTTP 503", gen: func(w http.ResponseWriter, r *http.Request) { writeGolden(w, "error_overloaded_503.http") }, want: "HTTP 503"},
		{name: "HTTP 429", gen: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "slow down", http.StatusTooManyRequests) }, want: "HTTP 429: slow down"},
		{name: "garbage in the stream", gen: func(w http.ResponseWriter, r *http.Request) { sse(w, "<html><body>oops") }, want: "invalid stream chunk"},
		{name: "HTML instead of a stream", gen: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, "<html>proxy error</html>")
		}, want: `text/html`},
		{name: "stream ends before a finish_reason", gen: func(w http.ResponseWriter, r *http.Request) { sse(w, roleChunk) }, want: "ended the stream before a finish_reason"},
		{name: "error chunk before any token", gen: func(w http.ResponseWriter, r *http.Request) { writeGolden(w, "chat_error_flat_stream.http") }, want: "Engine core died"},
		{name: "connection reset", gen: func(w http.ResponseWriter, r *http.Request) {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		}, want: "EOF"},
		// An upstream silent for the whole timeout uses up the request's
		// deadline: see TestDeadlineBeforeFirstEvent.
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newStub(t, tc.gen)
			// b reports load through /metrics, so a (no metrics, idle) goes first.
			b := newReplay(t, nil)
			p, logs := load(t, map[string]any{"upstreams": ups(a.URL, b.URL), "timeout": timeout.String()})
			start := time.Now()
			g := collect(context.Background(), p, chatReq("hi"))
			if g.err != nil {
				t.Fatalf("generate: %v", g.err)
			}
			if el := time.Since(start); el > timeout+2*time.Second {
				t.Errorf("took %v with timeout %v", el, timeout)
			}
			checkContract(t, g.events)
			if g.text != "The sea is calm." || a.posts.Load() != 1 || len(b.log.posts()) != 1 {
				t.Fatalf("text %q; a got %d requests, b %d; want b's answer after one try each", g.text, a.posts.Load(), len(b.log.posts()))
			}
			if l := logs.String(); !strings.Contains(l, "trying the next") || !strings.Contains(l, tc.want) {
				t.Errorf("log does not report a's failure (%q):\n%s", tc.want, l)
			}
		})
	}
}

func TestNoFailover(t *testing.T) {
	const timeout = 300 * time.Millisecond
	tests := []struct {
		name    string
		gen     http.HandlerFunc
		is      func(error) bool
		want    string
		emitted string
	}{
		{name: "the request is invalid", gen: func(w http.ResponseWriter, r *http.Request) { writeGolden(w, "error_flat_400.http") },
			is: sdk.IsInvalidRequest, want: "maximum context length"},
		{name: "the key is refused", gen: func(w http.ResponseWriter, r *http.Request) { writeGolden(w, "error_unauthorized_401.http") },
			want: "unauthorised"},
		{name: "an error after the first token", gen: func(w http.ResponseWriter, r *http.Request) { writeGolden(w, "chat_error_midstream.http") },
			want: "Internal server error", emitted: "The answer"},
		{name: "stalled after the first token", gen: func(w http.ResponseWriter, r *http.Request) {
			sse(w, roleChunk, chatChunk("Hello", ""))
			block(r)
		}, want: "no data for 300ms (option timeout)", emitted: "Hello"},
		{name: "garbage after the first token", gen: func(w http.ResponseWriter, r *http.Request) {
			sse(w, chatChunk("Hello", ""), "{{{")
		}, want: "invalid stream chunk", emitted: "Hello"},
		{name: "cut after the first token", gen: func(w http.ResponseWriter, r *http.Request) {
			sse(w, chatChunk("Hello", ""))
		}, want: "ended the stream before a finish_reason", emitted: "Hello"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newStub(t, tc.gen)
			b := newReplay(t, nil)
			p, _ := load(t, map[string]any{"upstreams": ups(a.URL, b.URL), "timeout": timeout.String()})
			start := time.Now()
			g := collect(context.Background(), p, chatReq("hi"))
			switch {
			case g.err == nil:
				t.Fatalf("no error; text %q", g.text)
			case !strings.Contains(g.err.Error(), tc.want):
				t.Errorf("error %q does not say %q", g.err, tc.want)
			case tc.is != nil && !tc.is(g.err):
				t.Errorf("error %q does not match its sentinel", g.err)
			case isRetryable(g.err) && tc.emitted != "":
				t.Errorf("error %q after tokens is marked retryable", g.err)
			}
			if el := time.Since(start); el > timeout+2*time.Second {
				t.Errorf("took %v with timeout %v", el, timeout)
			}
			if g.text != tc.emitted || g.final.Final() || len(b.log.posts()) != 0 {
				t.Errorf("emitted %q (final %v), b got %d requests; want %q, no final, b untouched", g.text, g.final.Final(), len(b.log.posts()), tc.emitted)
			}
		})
	}
}

func TestUpstreamDown(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	p, _ := newTestProxy()
	start := time.Now()
	_, err := p.Load(context.Background(), sdk.LoadRequest{Model: testModel, Options: map[string]any{"upstreams": ups(deadURL), "timeout": "2s"}})
	if err == nil || !strings.Contains(err.Error(), "no upstream answers") || !strings.Contains(err.Error(), deadURL) {
		t.Errorf("load with the only upstream down = %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("load took %v", el)
	}

	// One of two down: the other serves, Health says which is down.
	live := newReplay(t, nil)
	p, _ = load(t, map[string]any{"upstreams": ups(deadURL, live.URL), "timeout": "2s"})
	h, _ := p.Health(context.Background())
	if !h.OK || h.Slots != slotsPerUpstream || !strings.Contains(h.Message, "1 of 2 upstreams healthy") || !strings.Contains(h.Message, deadURL) {
		t.Errorf("health with one upstream down: %+v", h)
	}
	for range 3 {
		if g := collect(context.Background(), p, chatReq("hi")); g.err != nil || g.text != "The sea is calm." {
			t.Fatalf("generate with one upstream down: %q, %v", g.text, g.err)
		}
	}

	// The only upstream goes away after Load: a clean, quick error, and
	// Health turns not OK at once.
	gone := newReplay(t, nil)
	p, _ = load(t, map[string]any{"upstreams": ups(gone.URL), "timeout": "2s", "health_interval": "1h"})
	gone.Close()
	start = time.Now()
	g := collect(context.Background(), p, chatReq("hi"))
	if g.err == nil || !strings.Contains(g.err.Error(), "upstream "+gone.URL) || time.Since(start) > 2*time.Second {
		t.Errorf("generate against a vanished upstream = %v after %v", g.err, time.Since(start))
	}
	if h, _ := p.Health(context.Background()); h.OK {
		t.Errorf("health after the only upstream vanished: %+v", h)
	}
}

func TestUpstreamProbedBackIn(t *testing.T) {
	var reset atomic.Bool
	reset.Store(true)
	up := newStub(t, func(w http.ResponseWriter, r *http.Request) {
		if reset.Load() {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		writeGolden(w, "chat_stream.http")
	})
	p, _ := load(t, map[string]any{"upstreams": ups(up.URL), "health_interval": "20ms"})
	if g := collect(context.Background(), p, chatReq("hi")); g.err == nil {
		t.Fatal("no error from a connection reset")
	}
	// The failed request took the upstream out; it answers /health, so
	// the probe loop brings it back.
	reset.Store(false)
	waitHealth(t, p, func(h sdk.Health) bool { return h.OK })
	if g := collect(context.Background(), p, chatReq("hi")); g.err != nil {
		t.Fatal(g.err)
	}
}

func TestCancellationClosesTheUpstreamRequest(t *testing.T) {
	closed := make(chan struct{})
	up := newStub(t, func(w http.ResponseWriter, r *http.Request) {
		sse(w, roleChunk, chatChunk("Hello", ""))
		select {
		case <-r.Context().Done():
			close(closed)
		case <-time.After(20 * time.Second):
		}
	})
	p, _ := load(t, map[string]any{"upstreams": ups(up.URL), "timeout": "30s"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- p.Generate(ctx, chatReq("hi"), func(e sdk.Event) error {
			if e.Text == "Hello" {
				close(first)
			}
			return nil
		})
	}()
	<-first
	if h, _ := p.Health(context.Background()); h.Running != 1 {
		t.Errorf("health during the generation: %+v, want Running 1", h)
	}
	cancel()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request was not closed within 5s of the cancellation")
	}
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("generate = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("generate did not return")
	}
	if h, _ := p.Health(context.Background()); h.Running != 0 || !h.OK {
		t.Errorf("health after the cancellation: %+v", h)
	}
}

func TestStopSequenceTheUpstreamIgnores(t *testing.T) {
	closed := make(chan struct{})
	up := newStub(t, func(w http.ResponseWriter, r *http.Request) {
		sse(w, roleChunk, chatChunk("a", ""), chatChunk(" S", ""), chatChunk("TOP", ""), chatChunk(" and", ""))
		for {
			select {
			case <-r.Context().Done():
				close(closed)
				return
			case <-time.After(5 * time.Millisecond):
				sse(w, chatChunk(" on", ""))
			}
		}
	})
	p, _ := load(t, map[string]any{"upstreams": ups(up.URL)})
	req := chatReq("hi")
	req.Sampling.Stop = []string{"STOP"}
	g := collect(context.Background(), p, req)
	if g.err != nil {
		t.Fatal(g.err)
	}
	checkContract(t, g.events)
	if g.text != "a " || g.final.FinishReason != sdk.FinishStop {
		t.Errorf("text %q, finish %s; want %q, stop", g.text, g.final.FinishReason, "a ")
	}
	for _, e := range g.events {
		if strings.Contains(e.Text, "S") {
			t.Errorf("event %+v leaks part of the stop sequence", e)
		}
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request was not closed after the stop sequence")
	}
}

func TestAPIKeyIsSentAndNeverShown(t *testing.T) {
	const key = "sk-test-9f8e7d6c5b4a"
	t.Setenv("RAGWAY_TEST_VLLM_KEY", key)
	fake := &fakeOpenAI{model: testModel, key: key, dims: 8}
	good := httptest.NewServer(fake)
	defer good.Close()

	p, logs := load(t, map[string]any{"upstreams": ups(good.URL), "api_key_env": "RAGWAY_TEST_VLLM_KEY"})
	if g := collect(context.Background(), p, chatReq("hello world")); g.err != nil || g.text != "hello world" {
		t.Fatalf("generate with the key: %q, %v", g.text, g.err)
	}
	if _, err := p.Embed(context.Background(), sdk.EmbedRequest{Input: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	for _, r := range fake.log.all() {
		if r.Path != "/health" && r.Path != "/metrics" && r.Header.Get("Authorization") != "Bearer "+key {
			t.Errorf("%s %s sent Authorization %q", r.Method, r.Path, r.Header.Get("Authorization"))
		}
	}

	// Upstreams that quote the request's Authorization header back.
	echo := func(status int, shape string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			msg := "you sent " + r.Header.Get("Authorization")
			if status == 200 {
				sse(w, fmt.Sprintf(shape, msg))
				return
			}
			w.WriteHeader(status)
			fmt.Fprintf(w, shape, msg)
		}
	}
	var errs []error
	for _, h := range []http.HandlerFunc{
		echo(400, `{"object":"error","message":%q,"type":"BadRequestError","code":400}`),
		echo(401, `{"error":{"message":%q}}`),
		echo(500, `{"error":%q}`),
		echo(200, `{"error":{"message":%q,"type":"InternalServerError","code":500}}`),
		echo(200, `{"error":{"message":%q,"type":"BadRequestError","code":400}}`),
		echo(200, `not json: %s`),
	} {
		up := newStub(t, h)
		q := newProxy(p.log)
		loadInto(t, q, map[string]any{"upstreams": ups(up.URL), "api_key_env": "RAGWAY_TEST_VLLM_KEY"})
		g := collect(context.Background(), q, chatReq("hi"))
		if g.err == nil {
			t.Fatal("no error")
		}
		errs = append(errs, g.err)
		if !strings.Contains(g.err.Error(), "[redacted]") {
			t.Errorf("error %q: the upstream's message lost its redacted quote", g.err)
		}
	}

	// A refused key fails Load, naming the variable.
	t.Setenv("RAGWAY_TEST_VLLM_KEY", "sk-wrong-0000")
	_, err := newProxy(p.log).Load(context.Background(), sdk.LoadRequest{Model: testModel,
		Options: map[string]any{"upstreams": ups(good.URL), "api_key_env": "RAGWAY_TEST_VLLM_KEY"}})
	if err == nil || !strings.Contains(err.Error(), "RAGWAY_TEST_VLLM_KEY") || !strings.Contains(err.Error(), "401") {
		t.Errorf("load with a refused key = %v", err)
	}
	errs = append(errs, err)

	_, err = newProxy(p.log).Load(context.Background(), sdk.LoadRequest{Model: testModel,
		Options: map[string]any{"upstreams": ups(good.URL), "api_key_env": "RAGWAY_TEST_VLLM_KEY_UNSET"}})
	if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "RAGWAY_TEST_VLLM_KEY_UNSET is not set") {
		t.Errorf("load with the key variable unset = %v", err)
	}

	for _, err := range errs {
		if err != nil && (strings.Contains(err.Error(), key) || strings.Contains(err.Error(), "sk-wrong")) {
			t.Errorf("error shows the key: %q", err)
		}
	}
	if l := logs.String(); strings.Contains(l, key) || strings.Contains(l, "sk-wrong") {
		t.Errorf("the log shows the key:\n%s", l)
	}
}

func TestConnectionsAreReused(t *testing.T) {
	rp := &replay{routes: defaultRoutes()}
	up := httptest.NewUnstartedServer(http.HandlerFunc(rp.serve))
	var conns atomic.Int64
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	p, _ := load(t, map[string]any{"upstreams": ups(up.URL), "health_interval": "1h"})
	before := conns.Load()
	for range 10 {
		if g := collect(context.Background(), p, chatReq("hi")); g.err != nil {
			t.Fatal(g.err)
		}
	}
	if n := conns.Load() - before; n > 1 {
		t.Errorf("10 sequential generations opened %d new connections; want them on one kept-alive connection", n)
	}
}
