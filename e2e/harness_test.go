package e2e

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	_ "github.com/lib/pq" // the usage table is read with database/sql
	"github.com/openai/openai-go/v3"

	"github.com/ragway/ragway/internal/pgtest"
	"github.com/ragway/ragway/internal/testbin"
)

// gateway is a running `ragway serve` process with its own database.
type gateway struct {
	t   *testing.T
	cmd *exec.Cmd
	URL string // http://127.0.0.1:PORT
	// Config is the config file; DatabaseURL its database (fresh, migrated).
	Config      string
	DatabaseURL string
	// Key is an API key with every scope, of user "e2e".
	Key  string
	log  *logBuffer // its stderr, line by line
	exit chan error // receives the process's exit once
}

// logBuffer holds a process's log as its lines arrive and wakes whoever waits for
// one (a process's log comes through a pipe, possibly after the response of the
// request that logged it).
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed, and replaced, when a line arrives and when the log ends
	ended   bool
	// blocked, when set, is called each time wait goes to sleep (for its test).
	blocked func()
}

func newLogBuffer() *logBuffer { return &logBuffer{changed: make(chan struct{})} }

// add appends one line (without its newline) and wakes the waiters.
func (l *logBuffer) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.WriteString(line + "\n")
	close(l.changed)
	l.changed = make(chan struct{})
}

// end records that no line will come (the process closed its stderr) and wakes the
// waiters.
func (l *logBuffer) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ended {
		l.ended = true
		close(l.changed)
	}
}

// String returns the log so far.
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// wait reports whether the log contains s within timeout. It checks again as each
// line arrives, and gives up at once when the log ended without s.
func (l *logBuffer) wait(s string, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		found, ended, changed := strings.Contains(l.buf.String(), s), l.ended, l.changed
		l.mu.Unlock()
		if found || ended {
			return found
		}
		if l.blocked != nil {
			l.blocked()
		}
		select {
		case <-changed:
		case <-deadline.C:
			return strings.Contains(l.String(), s)
		}
	}
}

var listenRe = regexp.MustCompile(`msg="ragway listening" addr=(http://\S+)`)

// startGateway runs ragway with the given models YAML (the value of the
// models: key) and waits until it listens and every model is ready.
func startGateway(t *testing.T, models string) *gateway {
	t.Helper()
	g := launchGateway(t, models)
	g.waitReady(20 * time.Second)
	return g
}

// launchGateway runs ragway on a fresh database and waits only until it listens.
func launchGateway(t *testing.T, models string) *gateway {
	t.Helper()
	return launchGatewayOn(t, pgtest.Database(t), models)
}

// launchGatewayOn runs ragway on the database at dbURL (migrated) and waits only
// until it listens. It creates g.Key with the CLI first.
func launchGatewayOn(t *testing.T, dbURL, models string) *gateway {
	t.Helper()
	return launchGatewayConfig(t, dbURL, "", models)
}

// launchGatewayConfig is launchGatewayOn with extra top-level YAML (e.g. a
// vector_store block).
func launchGatewayConfig(t *testing.T, dbURL, extra, models string) *gateway {
	t.Helper()
	return serveOn(t, dbURL, extra, models, true)
}

// serveOn starts `ragway serve` on dbURL, first making an admin key (g.Key)
// when withKey: without, the database need not be reachable.
func serveOn(t *testing.T, dbURL, extra, models string, withKey bool) *gateway {
	t.Helper()
	return serveOnEnv(t, dbURL, extra, models, withKey, nil)
}

// startGatewayEnv is startGateway with extra top-level YAML and more environment for
// the gateway's process.
func startGatewayEnv(t *testing.T, extra, models string, env []string) *gateway {
	t.Helper()
	g := serveOnEnv(t, pgtest.Database(t), extra, models, true, env)
	g.waitReady(20 * time.Second)
	return g
}

// serveOnEnv is serveOn with more environment for the gateway's process.
func serveOnEnv(t *testing.T, dbURL, extra, models string, withKey bool, env []string) *gateway {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\ndatabase_url: %q\nplugins_dir: %s\nserver: {shutdown_grace: 10s, heartbeat_interval: 200ms}\n%s\nmodels:\n%s",
		dbURL, testbin.Dir(t), extra, models)
	path := filepath.Join(dir, "ragway.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &gateway{t: t, log: newLogBuffer(), exit: make(chan error, 1), Config: path, DatabaseURL: dbURL}
	if withKey {
		g.Key = g.createKey("e2e", "chat,ingest,admin")
	}
	g.cmd = exec.Command(testbin.Ragway(t), "serve", "-c", path)
	// go-plugin's socket directories go under TMPDIR; a SIGKILLed gateway
	// cannot remove them, so keep them in the test's directory.
	g.cmd.Env = append(append(os.Environ(), "TMPDIR="+dir), env...)
	stderr, err := g.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			g.log.add(line)
			if m := listenRe.FindStringSubmatch(line); m != nil {
				addr <- m[1]
			}
		}
		g.log.end()
		g.exit <- g.cmd.Wait()
		close(addr)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", g.Logs())
		}
		g.stop(syscall.SIGKILL)
	})
	select {
	case u, ok := <-addr:
		if !ok {
			t.Fatalf("gateway exited before listening:\n%s", g.Logs())
		}
		g.URL = u
	case <-time.After(20 * time.Second):
		t.Fatalf("gateway did not listen within 20s:\n%s", g.Logs())
	}
	return g
}

// cli runs a ragway command on the gateway's config and returns its stdout.
func (g *gateway) cli(args ...string) (string, error) {
	g.t.Helper()
	return g.cliEnv(nil, args...)
}

// cliEnv is cli with more environment.
func (g *gateway) cliEnv(env []string, args ...string) (string, error) {
	g.t.Helper()
	cmd := exec.Command(testbin.Ragway(g.t), args...)
	cmd.Env = append(append(os.Environ(), "RAGWAY_DATABASE_URL="+g.DatabaseURL), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("ragway %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// createKey makes an API key for user with scopes (comma-separated) with the CLI.
func (g *gateway) createKey(user, scopes string, extra ...string) string {
	g.t.Helper()
	out, err := g.cli(append([]string{"keys", "create", "--user", user, "--scopes", scopes}, extra...)...)
	if err != nil {
		g.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// Logs returns everything the gateway logged so far.
func (g *gateway) Logs() string { return g.log.String() }

// logTimeout bounds the wait for a log line that is due: the line may arrive after
// the response of the request that logged it, later still on a loaded machine.
const logTimeout = 15 * time.Second

// logged reports whether the gateway logs s (within logTimeout, and while it runs).
func (g *gateway) logged(s string) bool { return g.log.wait(s, logTimeout) }

// stop signals the gateway and waits for it to exit (SIGKILL after 15s).
func (g *gateway) stop(sig syscall.Signal) error {
	if g.cmd.ProcessState != nil {
		return nil
	}
	_ = g.cmd.Process.Signal(sig)
	select {
	case err := <-g.exit:
		g.exit <- err
		return err
	case <-time.After(15 * time.Second):
		_ = g.cmd.Process.Kill()
		return fmt.Errorf("gateway did not exit within 15s of %v", sig)
	}
}

// readiness is the /readyz body.
type readiness struct {
	Status string `json:"status"`
	Models []struct {
		Name     string `json:"name"`
		Ready    bool   `json:"ready"`
		Replicas []struct {
			ID        int    `json:"id"`
			State     string `json:"state"`
			Pid       int    `json:"pid"`
			Restarts  int    `json:"restarts"`
			LastError string `json:"last_error"`
			// ColdStarts and LastColdStartMS report starts from idle.
			ColdStarts      int   `json:"cold_starts"`
			LastColdStartMS int64 `json:"last_cold_start_ms"`
		} `json:"replicas"`
	} `json:"models"`
}

func (g *gateway) readyz() (int, readiness) {
	g.t.Helper()
	resp, err := http.Get(g.URL + "/readyz")
	if err != nil {
		g.t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	var r readiness
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		g.t.Fatalf("/readyz body: %v", err)
	}
	return resp.StatusCode, r
}

// waitFor polls /readyz until cond holds; /readyz is the signal the gateway
// offers for replica state changes.
func (g *gateway) waitFor(what string, timeout time.Duration, cond func(int, readiness) bool) readiness {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, r := g.readyz()
		if cond(code, r) {
			return r
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("waiting for %s: last /readyz %d %+v", what, code, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *gateway) waitReady(timeout time.Duration) readiness {
	g.t.Helper()
	return g.waitFor("all models ready", timeout, func(code int, r readiness) bool {
		if code != http.StatusOK {
			return false
		}
		for _, m := range r.Models {
			for _, rep := range m.Replicas {
				if rep.State != "ready" {
					return false
				}
			}
		}
		return true
	})
}

// pids returns the plugin pids of model.
func pids(r readiness, model string) []int {
	var out []int
	for _, m := range r.Models {
		if m.Name == model {
			for _, rep := range m.Replicas {
				if rep.Pid > 0 {
					out = append(out, rep.Pid)
				}
			}
		}
	}
	return out
}

// post sends a JSON body with g.Key and returns status and body.
func (g *gateway) post(path, body string) (int, []byte) {
	g.t.Helper()
	return g.call("POST", path, g.Key, body)
}

// call sends a request with key (none if "") and returns status and body.
func (g *gateway) call(method, path, key, body string) (int, []byte) {
	g.t.Helper()
	resp, err := g.send(method, path, key, body)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// send sends a request with key (none if "") and a JSON body (none if "").
func (g *gateway) send(method, path, key, body string) (*http.Response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, g.URL+path, rd)
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return http.DefaultClient.Do(req)
}

// processGone waits until pid no longer exists.
func processGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			return true
		}
		// A zombie still answers kill(0); it has exited when its state is Z.
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if f := strings.Fields(string(b)); len(f) > 2 && f[2] == "Z" {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// sseEvents reads an SSE body and returns the data payloads in order.
func sseEvents(t *testing.T, body io.Reader) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}

// contextWithTimeout is context.WithTimeout on the background context.
func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// streamGreedy streams a greedy chat completion with usage and returns the
// text and the usage chunk.
func streamGreedy(t *testing.T, ctx context.Context, c openai.Client, model, prompt string, maxTokens int64) (string, openai.CompletionUsage) {
	t.Helper()
	stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:         model,
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		Temperature:   openai.Float(0),
		MaxTokens:     openai.Int(maxTokens),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var text strings.Builder
	var usage openai.CompletionUsage
	for stream.Next() {
		ch := stream.Current()
		for _, choice := range ch.Choices {
			text.WriteString(choice.Delta.Content)
		}
		if ch.Usage.TotalTokens > 0 {
			usage = ch.Usage
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	return text.String(), usage
}

// apiErrorBody checks that body is an error in the OpenAI shape
// {"error":{"message","type","param","code"}} (all four keys present, message and
// type non-empty) and returns it.
func apiErrorBody(t *testing.T, body []byte) apiError {
	t.Helper()
	var raw struct {
		Error map[string]json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(body, &raw); err != nil || raw.Error == nil {
		t.Fatalf("body %q is not the OpenAI error shape: %v", body, err)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := raw.Error[k]; !ok {
			t.Fatalf("error body %s lacks %q", body, k)
		}
	}
	var e struct {
		Error apiError `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("error body %s: want a message and a type (%v)", body, err)
	}
	return e.Error
}

// apiError is the inner object of an OpenAI error body (Param and Code "" when null).
type apiError struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Param   string `json:"param"`
	Code    string `json:"code"`
}

// wantAPIError checks an HTTP answer: status, and an OpenAI error body with code.
func wantAPIError(t *testing.T, what string, status int, body []byte, wantStatus int, wantCode string) apiError {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("%s: status %d (%s), want %d %s", what, status, body, wantStatus, wantCode)
	}
	e := apiErrorBody(t, body)
	if e.Code != wantCode {
		t.Fatalf("%s: error %+v, want code %s", what, e, wantCode)
	}
	return e
}

// wsFrame is any server frame of /v1/ws.
type wsFrame struct {
	Type           string    `json:"type"`
	ID             string    `json:"id"`
	Text           string    `json:"text"`
	ConversationID string    `json:"conversation_id"`
	MessageID      string    `json:"message_id"`
	FinishReason   string    `json:"finish_reason"`
	Usage          *wsUsage  `json:"usage"`
	Error          *apiError `json:"error"`
	// A tool_call frame's.
	Index     int    `json:"index"`
	CallID    string `json:"call_id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
	raw       []byte
}

type wsUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// wsURL is the gateway's /v1/ws URL with query (none if "").
func (g *gateway) wsURL(query string) string {
	u := strings.Replace(g.URL, "http://", "ws://", 1) + "/v1/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

// dialWSKey opens /v1/ws with key in the Authorization header ("": none) and
// query; it fails the test unless the upgrade succeeds.
func dialWSKey(t *testing.T, g *gateway, key, query string) *websocket.Conn {
	t.Helper()
	conn, status, body, err := tryDialWS(g, key, query)
	if err != nil {
		t.Fatalf("dial /v1/ws: %v (status %d %s)", err, status, body)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// tryDialWS opens /v1/ws with key in the Authorization header ("": none) and
// query; when the upgrade is refused it returns the HTTP status and body.
func tryDialWS(g *gateway, key, query string) (*websocket.Conn, int, []byte, error) {
	h := http.Header{}
	if key != "" {
		h.Set("Authorization", "Bearer "+key)
	}
	conn, resp, err := websocket.DefaultDialer.Dial(g.wsURL(query), h)
	if err != nil {
		if resp == nil {
			return nil, 0, nil, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, resp.StatusCode, b, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	return conn, 0, nil, nil
}

// readWS reads one frame.
func readWS(t *testing.T, c *websocket.Conn) wsFrame {
	t.Helper()
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	var f wsFrame
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("frame %q: %v", b, err)
	}
	f.raw = b
	return f
}

func writeWS(t *testing.T, c *websocket.Conn, v any) {
	t.Helper()
	if err := c.WriteJSON(v); err != nil {
		t.Fatalf("write frame: %v", err)
	}
}

// wsChat is the result of one chat on a socket.
type wsChat struct {
	Start   wsFrame // the start frame (Type "" if none came)
	Sources wsFrame // the sources frame (Type "" if none came)
	Text    string  // the tokens, concatenated
	Tokens  int     // how many token frames
	End     wsFrame // the done or error frame
	// ToolCalls are the tool_call frames.
	ToolCalls []wsFrame
}

// runWSChat sends frame (a chat with "id") and reads that chat's frames until its
// done or error frame. Frames of other chats fail the test.
func runWSChat(t *testing.T, c *websocket.Conn, chat map[string]any) wsChat {
	t.Helper()
	writeWS(t, c, chat)
	return readWSChat(t, c, chat["id"].(string))
}

// readWSChat reads the frames of chat id until its done or error frame.
func readWSChat(t *testing.T, c *websocket.Conn, id string) wsChat {
	t.Helper()
	var r wsChat
	for {
		f := readWS(t, c)
		if f.ID != id {
			t.Fatalf("frame of another chat while reading %q: %s", id, f.raw)
		}
		switch f.Type {
		case "start":
			r.Start = f
		case "sources":
			r.Sources = f
		case "token":
			r.Text += f.Text
			r.Tokens++
		case "tool_call":
			r.ToolCalls = append(r.ToolCalls, f)
		case "done", "error":
			r.End = f
			return r
		default:
			t.Fatalf("unexpected frame %s", f.raw)
		}
	}
}

// wantClose reads the next frame, which must be the server's close, and checks its code.
func wantClose(t *testing.T, c *websocket.Conn, code int) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := c.ReadMessage()
	if err == nil {
		t.Fatalf("frame %s where a close (%d) was expected", b, code)
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != code {
		t.Fatalf("socket ended with %v, want close code %d", err, code)
	}
}

// getJSON sends a GET with key and decodes a 200 answer into out; it returns the
// status and the body.
func (g *gateway) getJSON(path, key string, out any) (int, []byte) {
	g.t.Helper()
	code, body := g.call("GET", path, key, "")
	if code == http.StatusOK && out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			g.t.Fatalf("GET %s: %v in %s", path, err, body)
		}
	}
	return code, body
}

// storedConversation is the body of GET /v1/conversations/{id}.
type storedConversation struct {
	ID       string          `json:"id"`
	Object   string          `json:"object"`
	Title    string          `json:"title"`
	Model    string          `json:"model"`
	Messages []storedMessage `json:"messages"`
}

type storedMessage struct {
	ID               string `json:"id"`
	Role             string `json:"role"`
	Content          string `json:"content"`
	Status           string `json:"status"`
	Model            string `json:"model"`
	FinishReason     string `json:"finish_reason"`
	Error            string `json:"error"`
	PromptTokens     int    `json:"prompt_tokens"`
	CompletionTokens int    `json:"completion_tokens"`
	// Sources is the JSON array of the answer's retrieval sources.
	Sources json.RawMessage `json:"sources"`
	// An answer's tool calls, a tool result's call id.
	ToolCalls []struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
	ToolCallID string `json:"tool_call_id"`
}

// conversation returns the stored conversation id as key's user sees it.
func (g *gateway) conversation(key, id string) storedConversation {
	g.t.Helper()
	var c storedConversation
	if code, body := g.getJSON("/v1/conversations/"+id, key, &c); code != http.StatusOK {
		g.t.Fatalf("GET /v1/conversations/%s: %d %s", id, code, body)
	}
	return c
}

// conversationIDs lists the ids of key's conversations.
func (g *gateway) conversationIDs(key string) []string {
	g.t.Helper()
	var list struct {
		Object string               `json:"object"`
		Data   []storedConversation `json:"data"`
	}
	if code, body := g.getJSON("/v1/conversations?limit=200", key, &list); code != http.StatusOK || list.Object != "list" {
		g.t.Fatalf("GET /v1/conversations: %d %s", code, body)
	}
	ids := make([]string, 0, len(list.Data))
	for _, c := range list.Data {
		ids = append(ids, c.ID)
	}
	return ids
}

// usageRow is one row of the usage table.
type usageRow struct {
	User, Key, Model, Route        string
	PromptTokens, CompletionTokens int
}

// usageRows reads the gateway database's usage table, oldest first (user is the
// user's name, key the key's prefix).
func (g *gateway) usageRows() []usageRow {
	g.t.Helper()
	db, err := sql.Open("postgres", g.DatabaseURL)
	if err != nil {
		g.t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT u.name, coalesce(k.prefix, ''), x.model, x.route, x.prompt_tokens, x.completion_tokens
		FROM usage x JOIN users u ON u.id = x.user_id LEFT JOIN api_keys k ON k.id = x.api_key_id ORDER BY x.id`)
	if err != nil {
		g.t.Fatalf("read usage: %v", err)
	}
	defer rows.Close()
	var out []usageRow
	for rows.Next() {
		var r usageRow
		if err := rows.Scan(&r.User, &r.Key, &r.Model, &r.Route, &r.PromptTokens, &r.CompletionTokens); err != nil {
			g.t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		g.t.Fatal(err)
	}
	return out
}

// waitUsage polls the usage table until it has at least n rows (they are written in
// the background) and returns them.
func (g *gateway) waitUsage(n int, timeout time.Duration) []usageRow {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rows := g.usageRows()
		if len(rows) >= n {
			return rows
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("usage table has %d rows after %v, want %d: %+v", len(rows), timeout, n, rows)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// keyPrefix is the visible prefix of a key ("rgw_" and 8 characters).
func keyPrefix(key string) string { return key[:12] }

// noKeysInLogs fails the test if the gateway logged any of keys.
func noKeysInLogs(t *testing.T, g *gateway, keys ...string) {
	t.Helper()
	logs := g.Logs()
	for _, k := range append(keys, g.Key) {
		if k != "" && strings.Contains(logs, k) {
			t.Errorf("the gateway logged the API key %s…", keyPrefix(k))
		}
	}
	// Not even the secret part alone.
	for _, k := range append(keys, g.Key) {
		if len(k) > 13 && strings.Contains(logs, k[13:]) {
			t.Errorf("the gateway logged the secret of API key %s…", keyPrefix(k))
		}
	}
}

// waitFor polls done every 20 ms until it holds, failing the test after 20 s.
func waitFor(t *testing.T, what string, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within 20s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
