package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/ragway/ragway/internal/pgtest"
	"github.com/ragway/ragway/internal/testbin"
)

// browser is an HTTP client with a cookie jar, as a browser holds the session.
type browser struct {
	t    *testing.T
	g    *gateway
	c    *http.Client
	csrf string
}

func newBrowser(t *testing.T, g *gateway) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, g: g, c: &http.Client{Jar: jar}}
}

// do sends a request with the session cookie (and the CSRF token when it has one
// and csrf is set), and an Origin when origin is not "".
func (b *browser) do(method, path, body string, csrf bool, origin string) (int, []byte) {
	b.t.Helper()
	req, _ := http.NewRequest(method, b.g.URL+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if csrf && b.csrf != "" {
		req.Header.Set("X-CSRF-Token", b.csrf)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

type sessionBody struct {
	User struct {
		Name  string `json:"name"`
		Admin bool   `json:"admin"`
	} `json:"user"`
	Scopes    []string `json:"scopes"`
	CSRFToken string   `json:"csrf_token"`
}

// TestAccounts: sign up by invitation (the CLI's), the session cookie authenticates
// the API like a key, a request that changes state needs the CSRF token and this
// origin, a user makes and revokes keys no stronger than theirs, signing out ends the
// session, a wrong password says nothing about the name, and sign-ins are throttled.
func TestAccounts(t *testing.T) {
	g := startGateway(t, echoModels)
	b := newBrowser(t, g)

	code, body := b.do("POST", "/auth/signup", `{"name":"alice","password":"long enough password"}`, false, "")
	wantAPIError(t, "sign up without an invitation", code, body, http.StatusBadRequest, "invalid_value")
	invite, err := g.cli("users", "invite", "--name", "alice")
	if err != nil {
		t.Fatal(err)
	}
	invite = strings.TrimSpace(invite)
	code, body = b.do("POST", "/auth/signup", `{"name":"alice","password":"long enough password","invite":"`+invite+`"}`, false, "")
	var s sessionBody
	decode(t, "sign up", code, body, http.StatusCreated, &s)
	if s.User.Name != "alice" || s.User.Admin || s.CSRFToken == "" || strings.Join(s.Scopes, ",") != "chat,ingest" {
		t.Fatalf("session %s", body)
	}
	u, _ := url.Parse(g.URL)
	for _, ck := range b.c.Jar.Cookies(u) {
		if ck.Name == "ragway_session" && (strings.Contains(string(body), ck.Value)) {
			t.Fatal("the session's secret is in the answer's body")
		}
	}
	b.csrf = s.CSRFToken

	// The cookie authenticates as a key does.
	if code, body := b.do("GET", "/v1/models", "", false, ""); code != http.StatusOK {
		t.Fatalf("GET /v1/models with the session: %d %s", code, body)
	}
	code, body = b.do("GET", "/auth/session", "", false, "")
	decode(t, "session", code, body, http.StatusOK, &s)
	if s.CSRFToken != b.csrf {
		t.Fatalf("GET /auth/session gives another CSRF token: %s", body)
	}
	// A change of state needs the CSRF token, and this origin.
	create := `{"name":"docs"}`
	code, body = b.do("POST", "/v1/knowledge-bases", create, false, "")
	wantAPIError(t, "a POST without the CSRF token", code, body, http.StatusForbidden, "csrf_token")
	code, body = b.do("POST", "/v1/knowledge-bases", create, true, "https://evil.example")
	wantAPIError(t, "a POST from another origin", code, body, http.StatusForbidden, "cross_origin")
	code, body = b.do("POST", "/v1/knowledge-bases", create, true, g.URL)
	decode(t, "a POST from this origin with the token", code, body, http.StatusCreated, nil)

	// Keys: at most the user's scopes, listed without sessions, revoked by their owner.
	code, body = b.do("POST", "/v1/keys", `{"name":"laptop","scopes":["admin"]}`, true, "")
	wantAPIError(t, "a key stronger than its user", code, body, http.StatusBadRequest, "invalid_value")
	code, body = b.do("POST", "/v1/keys", `{"name":"laptop"}`, true, "")
	var k struct {
		Key, Prefix string
		Scopes      []string
	}
	decode(t, "create a key", code, body, http.StatusCreated, &k)
	if code, body := g.call("GET", "/v1/models", k.Key, ""); code != http.StatusOK {
		t.Fatalf("the new key: %d %s", code, body)
	}
	code, body = b.do("GET", "/v1/keys", "", false, "")
	var keys struct {
		Data []struct{ Prefix, Name string }
	}
	decode(t, "list keys", code, body, http.StatusOK, &keys)
	if len(keys.Data) != 1 || keys.Data[0].Prefix != k.Prefix || strings.Contains(string(body), `"key":`) {
		t.Fatalf("keys %s", body)
	}
	code, body = b.do("DELETE", "/v1/keys/"+k.Prefix, "", true, "")
	decode(t, "revoke the key", code, body, http.StatusOK, nil)
	if code, _ := g.call("GET", "/v1/models", k.Key, ""); code != http.StatusUnauthorized {
		t.Fatalf("a revoked key: %d", code)
	}
	// An API key cannot manage the account: a leaked key could mint keys outliving it.
	code, body = g.call("POST", "/v1/keys", g.Key, `{"name":"more"}`)
	wantAPIError(t, "a key minting keys", code, body, http.StatusForbidden, "session_required")
	code, body = g.call("POST", "/auth/signout-everywhere", g.Key, "")
	wantAPIError(t, "a key signing its user out everywhere", code, body, http.StatusForbidden, "session_required")

	// Signing in or up is done from this site's page: a form of another site (text/plain
	// that parses as JSON) cannot sign the browser into an attacker's account.
	req, _ := http.NewRequest("POST", g.URL+"/auth/signin", strings.NewReader(`{"name":"alice","password":"long enough password"}`))
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType || len(resp.Cookies()) != 0 {
		t.Fatalf("a text/plain sign-in: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	code, body = newBrowser(t, g).do("POST", "/auth/signin", `{"name":"alice","password":"long enough password"}`, false, "https://evil.example")
	wantAPIError(t, "a sign-in from another origin", code, body, http.StatusForbidden, "cross_origin")

	// A sign-in body is read before any credential: at most 16 KiB, sent plain with a
	// Content-Length; anything else is refused unread.
	for _, tc := range []struct {
		what, body, encoding string
		chunked              bool
		status               int
		code                 string
	}{
		{"a 17 KiB sign-in", `{"name":"alice","password":"` + strings.Repeat("p", 17<<10) + `"}`, "", false, http.StatusRequestEntityTooLarge, "request_too_large"},
		{"a chunked sign-in", `{"name":"alice","password":"long enough password"}`, "", true, http.StatusRequestEntityTooLarge, "request_too_large"},
		{"a gzip sign-in", `{"name":"alice","password":"long enough password"}`, "gzip", false, http.StatusUnsupportedMediaType, "unsupported_encoding"},
	} {
		var r io.Reader = strings.NewReader(tc.body)
		if tc.chunked {
			r = io.MultiReader(r) // no length known: sent chunked
		}
		req, _ := http.NewRequest("POST", g.URL+"/auth/signin", r)
		req.Header.Set("Content-Type", "application/json")
		if tc.encoding != "" {
			req.Header.Set("Content-Encoding", tc.encoding)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.what, err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(resp.Cookies()) != 0 {
			t.Fatalf("%s: cookies %v", tc.what, resp.Cookies())
		}
		wantAPIError(t, tc.what, resp.StatusCode, data, tc.status, tc.code)
	}

	// The WebSocket takes the cookie from this origin only.
	wsURL := strings.Replace(g.URL, "http://", "ws://", 1) + "/v1/ws"
	header := func(origin string) http.Header {
		h := http.Header{"Origin": {origin}}
		for _, ck := range b.c.Jar.Cookies(u) {
			h.Add("Cookie", ck.Name+"="+ck.Value)
		}
		return h
	}
	conn, resp, err := websocket.DefaultDialer.Dial(wsURL, header(g.URL))
	if err != nil {
		t.Fatalf("a socket from this origin with the cookie: %v %v", err, resp)
	}
	r := runWSChat(t, conn, map[string]any{"type": "chat", "id": "c1", "model": "chat", "content": "hello there"})
	if r.End.Type != "done" {
		t.Fatalf("chat over a socket signed in by cookie: %s", r.End.raw)
	}
	conn.Close()
	evil, _, err := websocket.DefaultDialer.Dial(wsURL, header("https://evil.example"))
	if err == nil {
		evil.Close()
		t.Fatal("a page of another origin opened a socket as the user")
	}

	// Signing out ends the session.
	code, body = b.do("POST", "/auth/signout", "", true, "")
	decode(t, "sign out", code, body, http.StatusOK, nil)
	if code, _ := b.do("GET", "/v1/models", "", false, ""); code != http.StatusUnauthorized {
		t.Fatalf("after signing out: %d", code)
	}

	// Sign in; wrong passwords; the throttle.
	code, body = b.do("POST", "/auth/signin", `{"name":"alice","password":"long enough password"}`, false, "")
	decode(t, "sign in", code, body, http.StatusOK, &s)
	b.csrf = s.CSRFToken

	// Renaming a conversation: its owner only, a title of at most 200 characters.
	code, body = g.call("POST", "/v1/conversations", g.Key, `{"title":"first"}`)
	var conv struct{ ID, Title string }
	decode(t, "a conversation", code, body, http.StatusCreated, &conv)
	code, body = g.call("PATCH", "/v1/conversations/"+conv.ID, g.Key, `{"title":"renamed"}`)
	decode(t, "rename", code, body, http.StatusOK, &conv)
	if conv.Title != "renamed" {
		t.Fatalf("renamed: %s", body)
	}
	code, body = g.call("PATCH", "/v1/conversations/"+conv.ID, g.Key, `{"title":"`+strings.Repeat("t", 201)+`"}`)
	wantAPIError(t, "a title too long", code, body, http.StatusBadRequest, "invalid_value")
	code, body = g.call("PATCH", "/v1/conversations/"+conv.ID, g.Key, `{"name":"x"}`)
	wantAPIError(t, "another field", code, body, http.StatusBadRequest, "unknown_parameter")
	code, body = b.do("PATCH", "/v1/conversations/"+conv.ID, `{"title":"mine now"}`, true, "")
	wantAPIError(t, "another user's conversation", code, body, http.StatusNotFound, "not_found")

	wrong := func(name string) (int, []byte) {
		return newBrowser(t, g).do("POST", "/auth/signin", `{"name":"`+name+`","password":"not the password"}`, false, "")
	}
	codeKnown, bodyKnown := wrong("alice")
	codeUnknown, bodyUnknown := wrong("nobody")
	var e1, e2 struct {
		Error struct{ Message, Code string }
	}
	_ = json.Unmarshal(bodyKnown, &e1)
	_ = json.Unmarshal(bodyUnknown, &e2)
	if codeKnown != http.StatusUnauthorized || codeKnown != codeUnknown || e1.Error != e2.Error || e1.Error.Code != "invalid_credentials" {
		t.Fatalf("wrong passwords for a known and an unknown name differ: %d %s / %d %s", codeKnown, bodyKnown, codeUnknown, bodyUnknown)
	}
	for range 9 {
		wrong("alice")
	}
	code, body = newBrowser(t, g).do("POST", "/auth/signin", `{"name":"alice","password":"long enough password"}`, false, "")
	wantAPIError(t, "the right password after 10 failures", code, body, http.StatusTooManyRequests, "too_many_signins")
	// Without web.trusted_proxies a forwarded address is not believed.
	code, body = signInFrom(t, g, "alice", "long enough password", "203.0.113.50")
	wantAPIError(t, "the right password with another X-Forwarded-For", code, body, http.StatusTooManyRequests, "too_many_signins")
}

// TestAdminDirectory: an admin lists the users with their keys and sessions, revokes a
// user's key, signs a user out everywhere, and reads the usage per user and model; a
// user without the admin scope can do none of it, and bad parameters are refused
// naming them.
func TestAdminDirectory(t *testing.T) {
	g := startGateway(t, echoModels)
	invite, err := g.cli("users", "invite", "--name", "bob")
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, g)
	code, body := b.do("POST", "/auth/signup", `{"name":"bob","password":"long enough password","invite":"`+strings.TrimSpace(invite)+`"}`, false, "")
	var s sessionBody
	decode(t, "sign up", code, body, http.StatusCreated, &s)
	b.csrf = s.CSRFToken
	code, body = b.do("POST", "/v1/keys", `{"name":"script"}`, true, "")
	var k struct{ Key, Prefix string }
	decode(t, "bob's key", code, body, http.StatusCreated, &k)
	for range 3 {
		code, body = g.call("POST", "/v1/chat/completions", k.Key, `{"model":"chat","messages":[{"role":"user","content":"count these words"}]}`)
		decode(t, "bob chats", code, body, http.StatusOK, nil)
	}

	// Not an admin: refused.
	for _, path := range []string{"/admin/users", "/admin/usage", "/admin/users/bob/keys"} {
		code, body = b.do("GET", path, "", false, "")
		wantAPIError(t, "bob reading "+path, code, body, http.StatusForbidden, "insufficient_scope")
	}

	var users struct {
		Data []struct {
			Name           string
			Admin          bool
			HasPassword    bool `json:"has_password"`
			Keys, Sessions int
			LastUsedAt     int64 `json:"last_used_at"`
		}
		HasMore bool `json:"has_more"`
	}
	// A key's last use is recorded in the background: awaited.
	waitFor(t, "bob's last use", func() bool {
		code, body = g.call("GET", "/admin/users?limit=1", g.Key, "")
		decode(t, "the first user", code, body, http.StatusOK, &users)
		return len(users.Data) == 1 && users.Data[0].LastUsedAt != 0
	})
	if len(users.Data) != 1 || users.Data[0].Name != "bob" || !users.Data[0].HasPassword || users.Data[0].Keys != 1 ||
		users.Data[0].Sessions != 1 || users.Data[0].LastUsedAt == 0 || !users.HasMore {
		t.Fatalf("page 1: %s", body)
	}
	code, body = g.call("GET", "/admin/users?limit=1&after=bob", g.Key, "")
	decode(t, "the next user", code, body, http.StatusOK, &users)
	if len(users.Data) != 1 || users.Data[0].Name != "e2e" || users.Data[0].HasPassword {
		t.Fatalf("page 2: %s", body)
	}

	// Usage per user and model, the most tokens first; it is written in the
	// background, so it is awaited.
	var usage struct {
		Data []struct {
			User, Model string
			Requests    int64
			Tot         int64 `json:"total_tokens"`
		}
		Since int64
	}
	waitFor(t, "bob's usage", func() bool {
		code, body = g.call("GET", "/admin/usage?days=7", g.Key, "")
		decode(t, "usage", code, body, http.StatusOK, &usage)
		return len(usage.Data) == 1 && usage.Data[0].Requests == 3
	})
	if u := usage.Data[0]; u.User != "bob" || u.Model != "chat" || u.Tot <= 0 || usage.Since <= 0 {
		t.Fatalf("usage %s", body)
	}

	// Bob's keys; one revoked by the admin.
	code, body = g.call("GET", "/admin/users/bob/keys", g.Key, "")
	var keys struct{ Data []struct{ Prefix string } }
	decode(t, "bob's keys", code, body, http.StatusOK, &keys)
	if len(keys.Data) != 1 || keys.Data[0].Prefix != k.Prefix {
		t.Fatalf("keys %s", body)
	}
	code, body = g.call("DELETE", "/admin/users/bob/keys/"+k.Prefix, g.Key, "")
	decode(t, "revoke bob's key", code, body, http.StatusOK, nil)
	if code, _ := g.call("GET", "/v1/models", k.Key, ""); code != http.StatusUnauthorized {
		t.Fatalf("a key the admin revoked: %d", code)
	}
	code, body = g.call("DELETE", "/admin/users/e2e/keys/"+k.Prefix, g.Key, "")
	wantAPIError(t, "another user's key under a user", code, body, http.StatusNotFound, "not_found")

	// Signed out everywhere by the admin.
	code, body = g.call("POST", "/admin/users/bob/signout-everywhere", g.Key, "")
	decode(t, "sign bob out", code, body, http.StatusOK, nil)
	if code, _ := b.do("GET", "/v1/models", "", false, ""); code != http.StatusUnauthorized {
		t.Fatalf("bob's session after the admin signed him out: %d", code)
	}

	for _, tc := range []struct{ method, path, param string }{
		{"GET", "/admin/usage?days=0", "days"},
		{"GET", "/admin/usage?days=367", "days"},
		{"GET", "/admin/usage?limit=1001", "limit"},
		{"GET", "/admin/users?limit=201", "limit"},
		{"GET", "/admin/users?after=%00", "after"},
		{"GET", "/admin/users/%C3%28/keys", "user"},
		{"GET", "/admin/users/a%00b/keys", "user"},
		{"DELETE", "/admin/users/bob/keys/nope", "prefix"},
	} {
		code, body = g.call(tc.method, tc.path, g.Key, "")
		if e := wantAPIError(t, tc.path, code, body, http.StatusBadRequest, apiErrorBody(t, body).Code); e.Param != tc.param {
			t.Fatalf("%s: param %q, want %q (%s)", tc.path, e.Param, tc.param, body)
		}
	}
	code, body = g.call("GET", "/admin/users/nobody/keys", g.Key, "")
	wantAPIError(t, "an unknown user", code, body, http.StatusNotFound, "not_found")
}

// signInFrom posts a sign-in with X-Forwarded-For set to forwarded (unless "").
func signInFrom(t *testing.T, g *gateway, name, password, forwarded string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", g.URL+"/auth/signin", strings.NewReader(`{"name":"`+name+`","password":"`+password+`"}`))
	req.Header.Set("Content-Type", "application/json")
	if forwarded != "" {
		req.Header.Set("X-Forwarded-For", forwarded)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// TestSigninThrottleBehindProxy: behind a trusted proxy (web.trusted_proxies) the
// per-address sign-in limit counts the address the proxy forwarded, the rightmost
// one: an address the client writes left of it changes nothing.
func TestSigninThrottleBehindProxy(t *testing.T) {
	g := launchGatewayConfig(t, pgtest.Database(t), "web: {trusted_proxies: [127.0.0.1]}", `
  - {name: chat, backend: echo}
`)
	g.waitReady(20 * time.Second)
	cmd := exec.Command(testbin.Ragway(t), "users", "password", "--user", "ann")
	cmd.Env = append(os.Environ(), "RAGWAY_DATABASE_URL="+g.DatabaseURL)
	cmd.Stdin = strings.NewReader("the right password\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("users password: %v\n%s", err, out)
	}
	for i := range 10 {
		// The client's own leftmost entries vary; the proxy's entry does not.
		code, body := signInFrom(t, g, "ann", "a wrong password", fmt.Sprintf("198.51.100.%d, 203.0.113.1", i))
		wantAPIError(t, "a wrong password", code, body, http.StatusUnauthorized, "invalid_credentials")
	}
	code, body := signInFrom(t, g, "ann", "the right password", "198.51.100.77, 203.0.113.1")
	wantAPIError(t, "the 11th try from 203.0.113.1", code, body, http.StatusTooManyRequests, "too_many_signins")
	code, body = signInFrom(t, g, "ann", "the right password", "203.0.113.1, 203.0.113.2")
	decode(t, "the right password from 203.0.113.2", code, body, http.StatusOK, nil)
}
