package api_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fasthttp/websocket"

	"github.com/ragway/ragway/gateway/api"
	"github.com/ragway/ragway/gateway/api/apitest"
	"github.com/ragway/ragway/gateway/auth"
)

// countingGate admits apitest.Key only and counts every key check, so that a test can
// tell whether a request went through authentication.
type countingGate struct{ checks atomic.Int32 }

func (g *countingGate) Check(ctx context.Context, key, scope string) (auth.Principal, error) {
	return g.Verify(ctx, key, scope)
}

func (g *countingGate) Verify(_ context.Context, key, _ string) (auth.Principal, error) {
	g.checks.Add(1)
	switch key {
	case "":
		return auth.Principal{}, auth.ErrNoKey
	case apitest.Key:
		return auth.Principal{KeyID: "k", UserID: "u"}, nil
	}
	return auth.Principal{}, auth.ErrInvalidKey
}

const (
	pageOrigin  = "https://chat.example.com"
	otherOrigin = "http://localhost:5173"
)

// corsRequest sends a request without a key (as a browser's preflight is) with the
// given headers; a header given twice is sent twice.
func corsRequest(t *testing.T, s *testServer, method, path string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// accessControl returns the response's Access-Control-* headers.
func accessControl(resp *http.Response) []string {
	var out []string
	for k, v := range resp.Header {
		if strings.HasPrefix(strings.ToLower(k), "access-control-") {
			out = append(out, k+": "+strings.Join(v, ", "))
		}
	}
	slices.Sort(out)
	return out
}

// headerList splits a comma-separated header (every instance of it) into its items.
func headerList(resp *http.Response, name string) []string {
	var out []string
	for _, v := range resp.Header.Values(name) {
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, strings.ToLower(item))
			}
		}
	}
	return out
}

func requireItems(t *testing.T, resp *http.Response, name string, want ...string) {
	t.Helper()
	got := headerList(resp, name)
	for _, w := range want {
		if !slices.Contains(got, strings.ToLower(w)) {
			t.Errorf("%s = %q lacks %s", name, resp.Header.Values(name), w)
		}
	}
}

// TestCORSPreflight: with server.cors_origins set, a preflight from a listed origin is
// answered 204 with the CORS approval, without a key and without reaching a route or
// the key check; any other origin (a hostile or malformed Origin included) and any
// preflight while CORS is off get a 403 naming the setting and no CORS header.
func TestCORSPreflight(t *testing.T) {
	gate := &countingGate{}
	fake := newFake()
	s := start(t, fake, api.Options{Gate: gate, CORSOrigins: []string{pageOrigin, otherOrigin}})

	for _, tc := range []struct{ origin, method, path string }{
		{pageOrigin, "POST", "/v1/chat/completions"},
		{otherOrigin, "POST", "/v1/embeddings"},
		{pageOrigin, "DELETE", "/v1/conversations/abc"},
		{pageOrigin, "GET", "/v1/models"},
		{pageOrigin, "POST", "/v1/no-such-route"},
	} {
		t.Run("allowed "+tc.origin+" "+tc.method+" "+tc.path, func(t *testing.T) {
			resp := corsRequest(t, s, "OPTIONS", tc.path,
				"Origin", tc.origin,
				"Access-Control-Request-Method", tc.method,
				"Access-Control-Request-Headers", "authorization,content-type,x-stainless-os,x-stainless-retry-count")
			body := readAll(t, resp)
			if resp.StatusCode != http.StatusNoContent || len(body) != 0 {
				t.Fatalf("status %d body %q, want 204 and no body", resp.StatusCode, body)
			}
			if got := resp.Header.Values("Access-Control-Allow-Origin"); !slices.Equal(got, []string{tc.origin}) {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, tc.origin)
			}
			requireItems(t, resp, "Access-Control-Allow-Methods", "GET", "POST", "DELETE")
			requireItems(t, resp, "Access-Control-Allow-Headers", "Authorization", "Content-Type", "Content-Encoding",
				"X-Request-Id", "X-Ragway-KB", "OpenAI-Organization", "OpenAI-Project", "X-Stainless-OS", "X-Stainless-Retry-Count", "X-Stainless-Timeout")
			if got := resp.Header.Get("Access-Control-Max-Age"); got != "7200" {
				t.Errorf("Access-Control-Max-Age = %q, want 7200", got)
			}
			requireItems(t, resp, "Vary", "Origin")
			if got := resp.Header.Get("Access-Control-Allow-Credentials"); got != "" {
				t.Errorf("Access-Control-Allow-Credentials = %q, want none", got)
			}
		})
	}

	// Hostile and malformed origins, each of them close to a listed one.
	refused := []struct {
		name   string
		header []string
	}{
		{"another site", []string{"Origin", "https://evil.example"}},
		{"a listed origin as a prefix", []string{"Origin", pageOrigin + ".evil.example"}},
		{"a listed origin with a path", []string{"Origin", pageOrigin + "/"}},
		{"a listed origin in upper case", []string{"Origin", strings.ToUpper(pageOrigin)}},
		{"another scheme", []string{"Origin", "http://chat.example.com"}},
		{"another port", []string{"Origin", pageOrigin + ":8443"}},
		{"null", []string{"Origin", "null"}},
		{"empty", []string{"Origin", ""}},
		{"two origins, both listed", []string{"Origin", pageOrigin, "Origin", otherOrigin}},
		{"two origins in one header", []string{"Origin", pageOrigin + ", " + otherOrigin}},
		{"a listed origin padded to 8 KiB", []string{"Origin", pageOrigin + strings.Repeat("a", 8<<10)}},
	}
	for _, tc := range refused {
		t.Run("refused "+tc.name, func(t *testing.T) {
			resp := corsRequest(t, s, "OPTIONS", "/v1/chat/completions",
				append(tc.header, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization")...)
			if ac := accessControl(resp); len(ac) != 0 {
				t.Errorf("CORS headers for a refused origin: %q", ac)
			}
			e := checkError(t, resp, http.StatusForbidden, "permission_error", "origin_not_allowed", "")
			if !strings.Contains(e.Message, "server.cors_origins") {
				t.Errorf("message %q does not name server.cors_origins", e.Message)
			}
		})
	}

	t.Run("off", func(t *testing.T) {
		off := start(t, fake, api.Options{Gate: gate})
		resp := corsRequest(t, off, "OPTIONS", "/v1/chat/completions",
			"Origin", pageOrigin, "Access-Control-Request-Method", "POST")
		if ac := accessControl(resp); len(ac) != 0 {
			t.Errorf("CORS headers while CORS is off: %q", ac)
		}
		if v := resp.Header.Values("Vary"); len(v) != 0 {
			t.Errorf("Vary %q while CORS is off", v)
		}
		e := checkError(t, resp, http.StatusForbidden, "permission_error", "origin_not_allowed", "")
		if !strings.Contains(e.Message, "server.cors_origins") {
			t.Errorf("message %q does not name server.cors_origins", e.Message)
		}
	})

	t.Run("an OPTIONS request that is not a preflight is routed as before", func(t *testing.T) {
		resp := corsRequest(t, s, "OPTIONS", "/v1/chat/completions", "Origin", pageOrigin)
		checkError(t, resp, http.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed", "")
	})

	t.Run("a preflight carrying a body is answered without it", func(t *testing.T) {
		_, r := rawRequest(t, s.url, "OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: x\r\nOrigin: "+pageOrigin+
			"\r\nAccess-Control-Request-Method: POST\r\nContent-Length: 1000000\r\n")
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != pageOrigin {
			t.Errorf("status %d, CORS %q: want the 204 approval", resp.StatusCode, accessControl(resp))
		}
	})

	if n := gate.checks.Load(); n != 0 {
		t.Errorf("preflights went through the key check %d times", n)
	}
	if n := len(fake.Calls()); n != 0 {
		t.Errorf("preflights reached the backend %d times", n)
	}
}

// TestCORSActualRequests: responses to a listed origin carry Access-Control-Allow-Origin,
// Vary: Origin and Access-Control-Expose-Headers — errors and streams included, so a page
// can read why a request failed — and never credentials; other origins get no CORS
// header; with CORS off nothing changes.
func TestCORSActualRequests(t *testing.T) {
	gate := &countingGate{}
	fake := newFake()
	s := start(t, fake, api.Options{Gate: gate, CORSOrigins: []string{pageOrigin}})
	chat := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	stream := `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	exposed := []string{"X-Request-Id", "X-Ragway-Conversation-Id", "X-Ragway-Message-Id", "Retry-After", "X-Should-Retry"}

	for _, tc := range []struct {
		name   string
		resp   func() *http.Response
		status int
	}{
		{"chat", func() *http.Response { return s.post(t, "/v1/chat/completions", chat, "Origin", pageOrigin) }, 200},
		{"stream", func() *http.Response { return s.post(t, "/v1/chat/completions", stream, "Origin", pageOrigin) }, 200},
		{"models", func() *http.Response { return s.do(t, "GET", "/v1/models", "", "Origin", pageOrigin) }, 200},
		{"bad key", func() *http.Response {
			return s.post(t, "/v1/chat/completions", chat, "Origin", pageOrigin, "Authorization", "Bearer rgw_wrong")
		}, 401},
		{"no key", func() *http.Response { return corsRequest(t, s, "GET", "/v1/models", "Origin", pageOrigin) }, 401},
		{"unknown route", func() *http.Response { return s.do(t, "GET", "/v1/nope", "", "Origin", pageOrigin) }, 404},
		{"bad request", func() *http.Response {
			return s.post(t, "/v1/chat/completions", `{"model":"chat"}`, "Origin", pageOrigin)
		}, 400},
	} {
		t.Run("allowed "+tc.name, func(t *testing.T) {
			resp := tc.resp()
			body := readAll(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Values("Access-Control-Allow-Origin"); !slices.Equal(got, []string{pageOrigin}) {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, pageOrigin)
			}
			requireItems(t, resp, "Vary", "Origin")
			requireItems(t, resp, "Access-Control-Expose-Headers", exposed...)
			for _, h := range []string{"Access-Control-Allow-Credentials", "Access-Control-Allow-Methods", "Access-Control-Max-Age"} {
				if v := resp.Header.Get(h); v != "" {
					t.Errorf("%s = %q on an actual request", h, v)
				}
			}
		})
	}

	t.Run("another origin", func(t *testing.T) {
		resp := s.post(t, "/v1/chat/completions", chat, "Origin", "https://evil.example")
		readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if ac := accessControl(resp); len(ac) != 0 {
			t.Errorf("CORS headers for another origin: %q", ac)
		}
		// A cache must not serve this answer to the listed origin, nor the reverse.
		requireItems(t, resp, "Vary", "Origin")
	})

	t.Run("off", func(t *testing.T) {
		off := start(t, fake, api.Options{Gate: gate})
		resp := off.post(t, "/v1/chat/completions", chat, "Origin", pageOrigin)
		readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if ac := accessControl(resp); len(ac) != 0 {
			t.Errorf("CORS headers while CORS is off: %q", ac)
		}
		if v := resp.Header.Values("Vary"); len(v) != 0 {
			t.Errorf("Vary %q while CORS is off", v)
		}
	})
}

// TestWebSocketOrigin: through the whole app, an upgrade whose Origin is neither the
// gateway's own nor listed in cors_origins gets 403 in the OpenAI shape before the
// upgrade (and before its key is looked at); the gateway's own origin, a listed one
// and no Origin at all (a non-browser client) are upgraded.
func TestWebSocketOrigin(t *testing.T) {
	gate := &countingGate{}
	s := start(t, newFake(), api.Options{Gate: gate, CORSOrigins: []string{pageOrigin}})
	host := strings.TrimPrefix(s.url, "http://")
	url := "ws://" + host + "/v1/ws"
	dial := func(origin ...string) (*websocket.Conn, *http.Response, error) {
		h := http.Header{"Authorization": {"Bearer " + apitest.Key}}
		if len(origin) > 0 {
			h["Origin"] = origin
		}
		return websocket.DefaultDialer.Dial(url, h)
	}

	for _, origin := range [][]string{{"https://evil.example"}, {"null"}, {"http://" + host + ".evil.example"}, {"http://" + host, "https://evil.example"}} {
		t.Run(fmt.Sprintf("refused %q", origin), func(t *testing.T) {
			before := gate.checks.Load()
			conn, resp, err := dial(origin...)
			if err == nil {
				conn.Close()
				t.Fatal("upgraded")
			}
			if resp == nil {
				t.Fatalf("no HTTP answer: %v", err)
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id header")
			}
			e := checkError(t, resp, http.StatusForbidden, "permission_error", "origin_not_allowed", "")
			if !strings.Contains(e.Message, "server.cors_origins") {
				t.Errorf("message %q does not name server.cors_origins", e.Message)
			}
			if n := gate.checks.Load() - before; n != 0 {
				t.Errorf("the key of a refused upgrade was checked %d times", n)
			}
		})
	}
	for name, origin := range map[string][]string{"the gateway's own": {"http://" + host}, "listed": {pageOrigin}, "none": nil} {
		t.Run("accepted "+name, func(t *testing.T) {
			conn, resp, err := dial(origin...)
			if err != nil {
				var b []byte
				if resp != nil {
					b, _ = io.ReadAll(resp.Body)
				}
				t.Fatalf("dial: %v %s", err, b)
			}
			resp.Body.Close()
			defer conn.Close()
			if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
				t.Fatal(err)
			}
			if _, msg, err := conn.ReadMessage(); err != nil || !strings.Contains(string(msg), `"pong"`) {
				t.Fatalf("%s, %v", msg, err)
			}
		})
	}
}

// TestCORSOnErrorsBeforeAnyMiddleware: an answer fasthttp gives before any
// middleware (a body over the limit) still carries the CORS headers a listed origin is
// due, so the page can read why its request failed.
func TestCORSOnErrorsBeforeAnyMiddleware(t *testing.T) {
	s := start(t, newFake(), api.Options{MaxBodyBytes: 1 << 10, CORSOrigins: []string{"https://chat.example.com"}})
	req, _ := http.NewRequest("POST", s.url+"/v1/chat/completions", strings.NewReader(strings.Repeat("x", 4<<10)))
	req.Header.Set("Authorization", "Bearer "+apitest.Key)
	req.Header.Set("Origin", "https://chat.example.com")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 || resp.Header.Get("Access-Control-Allow-Origin") != "https://chat.example.com" || resp.Header.Get("Vary") == "" {
		t.Fatalf("413 for a listed origin: %d %v", resp.StatusCode, resp.Header)
	}
}
