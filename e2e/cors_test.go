package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/fasthttp/websocket"
)

// TestBrowserOrigins runs ragway with server.cors_origins set as a user would, through
// RAGWAY_SERVER_CORS_ORIGINS, and talks to it as browsers do: a listed page's preflight
// is approved without a key and its chat answer is readable; another page's preflight
// is refused; WebSocket upgrades from another page are refused before the upgrade, from
// a listed page or the gateway's own it works, and without Origin as always.
func TestBrowserOrigins(t *testing.T) {
	const page = "http://localhost:5173"
	t.Setenv("RAGWAY_SERVER_CORS_ORIGINS", "https://chat.example.com, "+page)
	g := startGateway(t, echoModels)

	do := func(method, path, key, body string, header ...string) (*http.Response, []byte) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, g.URL+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	resp, body := do("OPTIONS", "/v1/chat/completions", "", "", "Origin", page,
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type,x-stainless-os")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != page ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("listed page's preflight: %d %v %s", resp.StatusCode, resp.Header, body)
	}

	resp, body = do("OPTIONS", "/v1/chat/completions", "", "", "Origin", "https://evil.example", "Access-Control-Request-Method", "POST")
	wantAPIError(t, "another page's preflight", resp.StatusCode, body, http.StatusForbidden, "origin_not_allowed")
	if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
		t.Errorf("another page's preflight: Access-Control-Allow-Origin %q", v)
	}

	resp, body = do("POST", "/v1/chat/completions", g.Key, `{"model":"chat","messages":[{"role":"user","content":"hello"}]}`, "Origin", page)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != page ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Request-Id") {
		t.Fatalf("listed page's chat: %d %v %s", resp.StatusCode, resp.Header, body)
	}

	dial := func(origin string) (int, []byte, error) {
		h := http.Header{"Authorization": {"Bearer " + g.Key}}
		if origin != "" {
			h.Set("Origin", origin)
		}
		conn, resp, err := websocket.DefaultDialer.Dial(g.wsURL(""), h)
		if err != nil {
			if resp == nil {
				return 0, nil, err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, b, err
		}
		defer conn.Close()
		writeWS(t, conn, map[string]any{"type": "ping"})
		if f := readWS(t, conn); f.Type != "pong" {
			t.Errorf("origin %q: got %s, want pong", origin, f.raw)
		}
		return http.StatusSwitchingProtocols, nil, nil
	}
	status, body, _ := dial("https://evil.example")
	wantAPIError(t, "another page's WebSocket", status, body, http.StatusForbidden, "origin_not_allowed")
	for _, origin := range []string{page, g.URL, ""} {
		if status, body, err := dial(origin); status != http.StatusSwitchingProtocols {
			t.Errorf("WebSocket with Origin %q: %d %s %v", origin, status, body, err)
		}
	}
}
