package e2e

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// wrongSecret returns key with its last character changed: well-formed, right
// prefix, wrong secret.
func wrongSecret(key string) string {
	last := byte('A')
	if key[len(key)-1] == 'A' {
		last = 'B'
	}
	return key[:len(key)-1] + string(last)
}

// statelessChat is a WS chat frame that stores nothing.
func statelessChat(id, text string) map[string]any {
	return map[string]any{"type": "chat", "id": id, "model": "chat", "messages": []map[string]string{{"role": "user", "content": text}}}
}

// wantWSChatOK runs a stateless chat on c and checks it is answered in full.
func wantWSChatOK(t *testing.T, c *websocket.Conn, id, text string) {
	t.Helper()
	r := runWSChat(t, c, statelessChat(id, text))
	if r.End.Type != "done" || r.Text != text || r.Start.Type != "start" {
		t.Fatalf("chat %s: start %s, text %q, end %s; want the echo of %q", id, r.Start.raw, r.Text, r.End.raw, text)
	}
}

// wantWSError reads the next frame and checks it is an error frame for id with code.
func wantWSError(t *testing.T, c *websocket.Conn, id, code string) wsFrame {
	t.Helper()
	f := readWS(t, c)
	if f.Type != "error" || f.ID != id || f.Error == nil || f.Error.Code != code {
		t.Fatalf("frame %s, want an error frame for %q with code %s", f.raw, id, code)
	}
	apiErrorBody(t, f.raw) // the error object has the OpenAI shape
	return f
}

func TestAuthHTTP(t *testing.T) {
	g := startGateway(t, echoModels)
	ingest := g.createKey("e2e-ingest", "ingest")
	chat := chatBody("chat", "hello", false)
	for _, route := range []struct{ method, path, body string }{
		{"POST", "/v1/chat/completions", chat},
		{"GET", "/v1/models", ""},
		{"GET", "/v1/conversations", ""},
	} {
		t.Run(route.method+" "+route.path, func(t *testing.T) {
			for _, c := range []struct {
				name   string
				header string // the Authorization header ("": none)
				status int
				code   string
			}{
				{"no key", "", 401, "missing_api_key"},
				{"bearer without a key", "Bearer", 401, "missing_api_key"},
				{"malformed key", "Bearer not-a-ragway-key", 401, "invalid_api_key"},
				{"wrong secret", "Bearer " + wrongSecret(g.Key), 401, "invalid_api_key"},
				{"unknown prefix", "Bearer rgw_zzzzzzzz" + g.Key[12:], 401, "invalid_api_key"},
				{"not a bearer token", "Basic " + g.Key, 401, "invalid_api_key"},
				{"ingest scope only", "Bearer " + ingest, 403, "insufficient_scope"},
			} {
				var rd io.Reader
				if route.body != "" {
					rd = strings.NewReader(route.body)
				}
				req, _ := http.NewRequest(route.method, g.URL+route.path, rd)
				req.Header.Set("Content-Type", "application/json")
				if c.header != "" {
					req.Header.Set("Authorization", c.header)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				e := wantAPIError(t, c.name, resp.StatusCode, body, c.status, c.code)
				wantType := "authentication_error"
				if c.status == 403 {
					wantType = "permission_error"
				}
				if e.Type != wantType {
					t.Fatalf("%s: type %q, want %q", c.name, e.Type, wantType)
				}
			}
			// The right key passes.
			if code, body := g.call(route.method, route.path, g.Key, route.body); code != 200 {
				t.Fatalf("with a valid key: %d %s", code, body)
			}
		})
	}

	t.Run("open routes", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			code, body := g.call("GET", path, "", "")
			if code != 200 {
				t.Fatalf("GET %s without a key: %d %s", path, code, body)
			}
			if path == "/metrics" && !strings.Contains(string(body), "ragway_requests_total") {
				t.Fatalf("/metrics without a key (loopback) does not serve the metrics: %.300s", body)
			}
		}
	})
	noKeysInLogs(t, g, ingest, wrongSecret(g.Key))
}

func TestAuthWebSocket(t *testing.T) {
	g := startGateway(t, echoModels)
	ingest := g.createKey("e2e-ingest", "ingest")

	t.Run("Authorization header", func(t *testing.T) {
		c := dialWSKey(t, g, g.Key, "")
		wantWSChatOK(t, c, "h1", "by header")
		// An auth frame on an authenticated socket is refused; the socket stays usable.
		writeWS(t, c, map[string]any{"type": "auth", "id": "a", "api_key": g.Key})
		wantWSError(t, c, "a", "invalid_value")
		wantWSChatOK(t, c, "h2", "still fine")
	})
	t.Run("api_key query parameter", func(t *testing.T) {
		c := dialWSKey(t, g, "", "api_key="+g.Key)
		wantWSChatOK(t, c, "q1", "by query")
	})
	t.Run("first frame", func(t *testing.T) {
		c := dialWSKey(t, g, "", "")
		writeWS(t, c, map[string]any{"type": "auth", "api_key": g.Key})
		wantWSChatOK(t, c, "f1", "by first frame")
		wantWSChatOK(t, c, "f2", "and again")
	})

	// Keys given with the upgrade request are checked before it: an HTTP error.
	for _, c := range []struct {
		name, key, query string
		status           int
		code             string
	}{
		{"header: malformed key", "not-a-ragway-key", "", 401, "invalid_api_key"},
		{"header: wrong secret", wrongSecret(g.Key), "", 401, "invalid_api_key"},
		{"header: ingest scope only", ingest, "", 403, "insufficient_scope"},
		{"query: malformed key", "", "api_key=nope", 401, "invalid_api_key"},
		{"query: wrong secret", "", "api_key=" + wrongSecret(g.Key), 401, "invalid_api_key"},
		{"query: ingest scope only", "", "api_key=" + ingest, 403, "insufficient_scope"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, status, body, err := tryDialWS(g, c.key, c.query)
			if err == nil {
				conn.Close()
				t.Fatal("the upgrade succeeded")
			}
			wantAPIError(t, c.name, status, body, c.status, c.code)
		})
	}

	// A socket opened without a key must authenticate with its first frame: anything
	// else is an error frame and a close with 1008 (policy violation).
	for _, c := range []struct {
		name  string
		first map[string]any
		code  string
	}{
		{"first frame: malformed key", map[string]any{"type": "auth", "api_key": "nope"}, "invalid_api_key"},
		{"first frame: wrong secret", map[string]any{"type": "auth", "api_key": wrongSecret(g.Key)}, "invalid_api_key"},
		{"first frame: ingest scope only", map[string]any{"type": "auth", "api_key": ingest}, "insufficient_scope"},
		{"first frame: auth without a key", map[string]any{"type": "auth"}, "missing_api_key"},
		{"first frame: a chat", statelessChat("c1", "let me in"), "missing_api_key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := dialWSKey(t, g, "", "")
			writeWS(t, conn, c.first)
			id, _ := c.first["id"].(string)
			wantWSError(t, conn, id, c.code)
			wantClose(t, conn, websocket.ClosePolicyViolation)
		})
	}
	noKeysInLogs(t, g, ingest, wrongSecret(g.Key))
}

func TestAuthRevokedKey(t *testing.T) {
	g := startGateway(t, echoModels)
	key := g.createKey("e2e-revoked", "chat")
	other := g.createKey("e2e-revoked", "chat") // same user, not revoked

	if code, body := g.call("POST", "/v1/chat/completions", key, chatBody("chat", "before", false)); code != 200 {
		t.Fatalf("before revocation: %d %s", code, body)
	}
	sock := dialWSKey(t, g, key, "")
	wantWSChatOK(t, sock, "before", "before revocation")

	out, err := g.cli("keys", "revoke", keyPrefix(key))
	if err != nil || !strings.Contains(out, "revoked key "+keyPrefix(key)) {
		t.Fatalf("keys revoke: %q, %v", out, err)
	}

	// The very next request is refused.
	code, body := g.call("POST", "/v1/chat/completions", key, chatBody("chat", "after", false))
	wantAPIError(t, "chat after revocation", code, body, 401, "revoked_api_key")
	code, body = g.call("GET", "/v1/conversations", key, "")
	wantAPIError(t, "conversations after revocation", code, body, 401, "revoked_api_key")
	// The socket opened before: its next chat frame gets an error frame, and the
	// socket, whose key is no longer one, is closed.
	writeWS(t, sock, statelessChat("after", "after revocation"))
	wantWSError(t, sock, "after", "revoked_api_key")
	wantClose(t, sock, websocket.ClosePolicyViolation)
	// New sockets are refused, by header and by first frame.
	if conn, status, body, err := tryDialWS(g, key, ""); err == nil {
		conn.Close()
		t.Fatal("a socket opened with a revoked key")
	} else {
		wantAPIError(t, "socket with a revoked key", status, body, 401, "revoked_api_key")
	}
	conn := dialWSKey(t, g, "", "")
	writeWS(t, conn, map[string]any{"type": "auth", "api_key": key})
	wantWSError(t, conn, "", "revoked_api_key")
	wantClose(t, conn, websocket.ClosePolicyViolation)

	// The user's other key is unaffected.
	if code, body := g.call("POST", "/v1/chat/completions", other, chatBody("chat", "other", false)); code != 200 {
		t.Fatalf("the user's other key after revoking one: %d %s", code, body)
	}
	noKeysInLogs(t, g, key, other)
}

// retryAfter returns the Retry-After header of resp in seconds (fails if absent or
// not a positive integer).
func retryAfter(t *testing.T, h http.Header) int {
	t.Helper()
	v := h.Get("Retry-After")
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("Retry-After %q, want whole seconds >= 1", v)
	}
	return n
}

func TestRateLimitRequests(t *testing.T) {
	g := startGateway(t, echoModels)
	// 2 a minute: a burst of 1, then one every 30 s.
	key := g.createKey("e2e-rpm", "chat", "--rpm", "2")
	if code, body := g.call("POST", "/v1/chat/completions", key, chatBody("chat", "within the limit", false)); code != 200 {
		t.Fatalf("first request: %d %s", code, body)
	}
	resp, err := g.send("POST", "/v1/chat/completions", key, chatBody("chat", "one too many", false))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	e := wantAPIError(t, "second request at once", resp.StatusCode, body, 429, "rate_limit_exceeded")
	if e.Type != "rate_limit_error" {
		t.Fatalf("type %q, want rate_limit_error", e.Type)
	}
	if s := retryAfter(t, resp.Header); s > 30 {
		t.Fatalf("Retry-After %d s for a 2 requests/minute key (one every 30 s)", s)
	}
	// The limit is the key's: another key of the gateway is not limited.
	if code, body := g.post("/v1/chat/completions", chatBody("chat", "unlimited", false)); code != 200 {
		t.Fatalf("another key: %d %s", code, body)
	}
	// The key is refused on the WebSocket too.
	if conn, status, body, err := tryDialWS(g, key, ""); err == nil {
		// The upgrade may be admitted; the chat is not.
		writeWS(t, conn, statelessChat("x", "over the limit"))
		wantWSError(t, conn, "x", "rate_limit_exceeded")
		conn.Close()
	} else {
		wantAPIError(t, "socket over the limit", status, body, 429, "rate_limit_exceeded")
	}

	// On a socket, every chat counts (opening the socket does not): 30 a minute is a
	// burst of 3, then one every 2 s.
	wsKey := g.createKey("e2e-rpm-ws", "chat", "--rpm", "30")
	conn := dialWSKey(t, g, wsKey, "")
	ok, start := 0, time.Now()
	for i := range 10 {
		id := "c" + strconv.Itoa(i)
		r := runWSChat(t, conn, statelessChat(id, "counted"))
		if r.End.Type == "done" {
			ok++
			continue
		}
		if r.End.Error == nil || r.End.Error.Code != "rate_limit_exceeded" {
			t.Fatalf("chat %s: %s, want done or a rate_limit_exceeded error", id, r.End.raw)
		}
		break
	}
	if most := 3 + int(time.Since(start)/(2*time.Second)); ok < 3 || ok > most {
		t.Fatalf("%d chats admitted before a refusal for a 30 requests/minute key, want 3 (to %d)", ok, most)
	}
	noKeysInLogs(t, g, key, wsKey)
}

func TestRateLimitTokens(t *testing.T) {
	g := startGateway(t, echoModels)
	key := g.createKey("e2e-tpm", "chat", "--tpm", "5")
	// One request may overdraw the balance (tokens are known after the fact)...
	code, body := g.call("POST", "/v1/chat/completions", key, chatBody("chat", "one two three four five six", false))
	if code != 200 || !strings.Contains(string(body), `"total_tokens":13`) {
		t.Fatalf("first request: %d %s, want 200 with 13 tokens (7 prompt, 6 completion)", code, body)
	}
	// ...and the next waits until it is positive again.
	resp, err := g.send("POST", "/v1/chat/completions", key, chatBody("chat", "more", false))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	wantAPIError(t, "request after overdrawing the tokens", resp.StatusCode, body, 429, "rate_limit_exceeded")
	// A balance of 1 token (the burst of 5 a minute) less 13: 12 tokens owed at 5
	// tokens a minute, 144 s to repay.
	if s := retryAfter(t, resp.Header); s < 140 || s > 150 {
		t.Fatalf("Retry-After %d s, want about 145 (12 tokens owed at 5 tokens/minute)", s)
	}
	// Streams are counted too: a fresh key, one streamed request, then refused.
	skey := g.createKey("e2e-tpm-stream", "chat", "--tpm", "5")
	resp, err = g.send("POST", "/v1/chat/completions", skey, chatBody("chat", "one two three four five six", true))
	if err != nil {
		t.Fatal(err)
	}
	if ev := sseEvents(t, resp.Body); resp.StatusCode != 200 || len(ev) == 0 || ev[len(ev)-1] != "[DONE]" {
		t.Fatalf("streamed request: %d %q", resp.StatusCode, ev)
	}
	resp.Body.Close()
	// The stream's tokens are charged before its end reaches the client.
	code, body = g.call("POST", "/v1/chat/completions", skey, chatBody("chat", "more", false))
	wantAPIError(t, "request after a streamed overdraw", code, body, 429, "rate_limit_exceeded")
	noKeysInLogs(t, g, key, skey)
}
