package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/openai/openai-go/v3"

	"github.com/ragway/ragway/internal/pgtest"
)

// adminModels is the body of GET /admin/models.
type adminModels struct {
	Data []struct {
		Name     string   `json:"name"`
		Source   string   `json:"source"`
		State    string   `json:"state"`
		Aliases  []string `json:"aliases"`
		Replicas []struct {
			State string `json:"state"`
			Pid   int    `json:"pid"`
		} `json:"replicas"`
	} `json:"data"`
	Draining []struct {
		Name string `json:"name"`
	} `json:"draining"`
}

func (g *gateway) adminModels() adminModels {
	g.t.Helper()
	var out adminModels
	if code, body := g.getJSON("/admin/models", g.Key, &out); code != http.StatusOK {
		g.t.Fatalf("GET /admin/models: %d %s", code, body)
	}
	return out
}

// readyReplicas counts the ready (or busy) replicas of model as the admin API
// shows them, -1 if it is not listed.
func (m adminModels) readyReplicas(model string) int {
	for _, x := range m.Data {
		if x.Name != model {
			continue
		}
		n := 0
		for _, r := range x.Replicas {
			if r.State == "ready" || r.State == "busy" {
				n++
			}
		}
		return n
	}
	return -1
}

// failures collects what went wrong in load goroutines (which may not call t.Fatal).
type failures struct {
	mu   sync.Mutex
	errs []string
	ok   atomic.Int64
	// gone counts chats refused with 404 model_not_found before any token (the
	// model was removed), when allowed.
	gone      atomic.Int64
	allowGone bool
}

func (f *failures) add(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

// httpLoad streams chats with the OpenAI SDK on model, one after another, until stop
// is closed; each must end with its whole answer and finish_reason "stop".
func httpLoad(g *gateway, model string, client int, stop <-chan struct{}, f *failures, wg *sync.WaitGroup) {
	c := sdkClient(g)
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			want := fmt.Sprintf("http client %d chat %d", client, i)
			ctx, cancel := contextWithTimeout(30 * time.Second)
			stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
				Model:    model,
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(want)},
			})
			var text strings.Builder
			finish := ""
			for stream.Next() {
				for _, ch := range stream.Current().Choices {
					text.WriteString(ch.Delta.Content)
					if ch.FinishReason != "" {
						finish = ch.FinishReason
					}
				}
			}
			err := stream.Err()
			cancel()
			var apiErr *openai.Error
			switch {
			case err != nil && f.allowGone && text.Len() == 0 && errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusNotFound &&
				apiErr.Code == "model_not_found":
				f.gone.Add(1)
			case err != nil:
				f.add("%s: %v", want, err)
			case strings.TrimSpace(text.String()) != want || finish != "stop":
				f.add("%s: cut: %q, finish_reason %q", want, text.String(), finish)
			default:
				f.ok.Add(1)
			}
		}
	})
}

// wsLoad runs stored chat turns on model over one socket, one after another, until
// stop is closed; each must end with done. It returns the conversations' ids when
// stopped, through ids.
func wsLoad(g *gateway, model string, client int, stop <-chan struct{}, f *failures, wg *sync.WaitGroup, ids chan<- string) {
	wg.Go(func() {
		conn, _, _, err := tryDialWS(g, g.Key, "")
		if err != nil {
			f.add("ws client %d: dial: %v", client, err)
			return
		}
		defer conn.Close()
		conv := ""
		for i := 0; ; i++ {
			select {
			case <-stop:
				ids <- conv
				return
			default:
			}
			id := fmt.Sprintf("w%d-%d", client, i)
			frame := map[string]any{"type": "chat", "id": id, "model": model, "content": fmt.Sprintf("ws client %d turn %d", client, i)}
			if conv != "" {
				frame["conversation_id"] = conv
			}
			if err := conn.WriteJSON(frame); err != nil {
				f.add("%s: write: %v", id, err)
				return
			}
			text, started, end, err := readChat(conn, id)
			switch {
			case err != nil:
				f.add("%s: %v", id, err)
				return
			case end.Type != "done" || end.FinishReason != "stop":
				f.add("%s: ended with %s", id, end.raw)
			case strings.TrimSpace(text) != fmt.Sprintf("ws client %d turn %d", client, i):
				f.add("%s: cut: %q", id, text)
			default:
				f.ok.Add(1)
			}
			if conv == "" {
				conv = started
			}
		}
	})
}

// readChat reads chat id's frames until its end, without a *testing.T: the text,
// the conversation (from the start frame) and the end frame.
func readChat(conn *websocket.Conn, id string) (text, conversation string, end wsFrame, err error) {
	var b strings.Builder
	for {
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, data, err := conn.ReadMessage()
		if err != nil {
			return b.String(), conversation, wsFrame{}, err
		}
		var fr wsFrame
		if err := json.Unmarshal(data, &fr); err != nil {
			return b.String(), conversation, wsFrame{}, err
		}
		fr.raw = data
		if fr.ID != id {
			return b.String(), conversation, fr, fmt.Errorf("a frame of another chat: %s", data)
		}
		switch fr.Type {
		case "start":
			conversation = fr.ConversationID
		case "token":
			b.WriteString(fr.Text)
		case "done", "error":
			return b.String(), conversation, fr, nil
		}
	}
}

// TestModelChangesUnderLoad: under a steady load of streaming chats over HTTP (the
// OpenAI SDK) and WebSocket (stored turns), a model added through the admin API is
// replaced 5 times, scaled 1→3→1, and a second model is added and removed: no chat
// fails or is cut, and every stored answer is complete.
func TestModelChangesUnderLoad(t *testing.T) {
	g := startGateway(t, `  - {name: base, backend: echo}`)
	entry := func(delay int) string {
		return fmt.Sprintf(`{"name":"chat","aliases":["default"],"backend":"echo","max_concurrency":8,"options":{"delay_ms":%d,"load_delay_ms":200}}`, delay)
	}
	if code, body := g.call("POST", "/admin/models", g.Key, entry(5)); code != http.StatusCreated {
		t.Fatalf("add: %d %s", code, body)
	}
	stop := make(chan struct{})
	var f failures
	var wg sync.WaitGroup
	ids := make(chan string, 4)
	for i := range 4 {
		httpLoad(g, []string{"chat", "default"}[i%2], i, stop, &f, &wg)
	}
	for i := range 2 {
		wsLoad(g, "chat", i, stop, &f, &wg, ids)
	}
	time.Sleep(300 * time.Millisecond)

	for i := range 5 {
		if code, body := g.call("POST", "/admin/models/chat/replace", g.Key, entry(5+i%2)); code != http.StatusOK {
			t.Fatalf("replace %d: %d %s", i+1, code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, n := range []int{3, 1} {
		if code, body := g.call("POST", "/admin/models/chat/scale", g.Key, fmt.Sprintf(`{"replicas":%d}`, n)); code != http.StatusOK {
			t.Fatalf("scale to %d: %d %s", n, code, body)
		}
		deadline := time.Now().Add(20 * time.Second)
		for g.adminModels().readyReplicas("chat") != n && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if got := g.adminModels().readyReplicas("chat"); got != n {
			t.Fatalf("scaled to %d: %d replicas ready", n, got)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if code, body := g.call("POST", "/admin/models", g.Key, `{"name":"second","backend":"echo"}`); code != http.StatusCreated {
		t.Fatalf("add second: %d %s", code, body)
	}
	// The second model is removed under its own load: the chats it had finish, the
	// ones after are 404 before any token.
	second := failures{allowGone: true}
	var wg2 sync.WaitGroup
	stop2 := make(chan struct{})
	for i := range 3 {
		httpLoad(g, "second", 9+i, stop2, &second, &wg2)
	}
	time.Sleep(300 * time.Millisecond)
	if code, body := g.call("DELETE", "/admin/models/second", g.Key, ""); code != http.StatusOK {
		t.Fatalf("remove second: %d %s", code, body)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop2)
	wg2.Wait()
	if second.gone.Load() == 0 {
		t.Fatal("no chat of the removed model was refused after the removal")
	}
	code, body := g.call("POST", "/v1/chat/completions", g.Key, chatBody("second", "gone?", false))
	wantAPIError(t, "a chat with the removed model", code, body, http.StatusNotFound, "model_not_found")
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(ids)

	if len(f.errs) > 0 || len(second.errs) > 0 || f.ok.Load() < 20 || second.ok.Load() == 0 {
		t.Fatalf("%d chats ok, %d failed: %q; second model: %d ok, %q", f.ok.Load(), len(f.errs), f.errs[:min(5, len(f.errs))],
			second.ok.Load(), second.errs)
	}
	t.Logf("%d chats served during the changes", f.ok.Load()+second.ok.Load())
	// Every stored answer is complete.
	for id := range ids {
		if id == "" {
			continue
		}
		for _, m := range g.conversation(g.Key, id).Messages {
			if m.Role == "assistant" && m.Status != "complete" {
				t.Fatalf("conversation %s: an answer %s (%s)", id, m.Status, m.Error)
			}
		}
	}
	// The replaced versions' processes are gone; the record lists every change.
	deadline := time.Now().Add(20 * time.Second)
	for len(g.adminModels().Draining) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if d := g.adminModels().Draining; len(d) > 0 {
		t.Fatalf("old versions still draining: %v", d)
	}
	var changes struct {
		Data []struct {
			Action, Model, Actor string
			OK                   bool
		} `json:"data"`
	}
	g.getJSON("/admin/models/changes?limit=50", g.Key, &changes)
	count := map[string]int{}
	for _, c := range changes.Data {
		if c.OK && strings.HasPrefix(c.Actor, "e2e (rgw_") {
			count[c.Action+" "+c.Model]++
		}
	}
	if count["add chat"] != 1 || count["replace chat"] != 5 || count["scale chat"] != 2 || count["add second"] != 1 || count["remove second"] != 1 {
		t.Fatalf("recorded changes: %v", count)
	}
}

// TestModelChangesRefused: a replacement that cannot load leaves the old version
// serving and says why; the config file's models are not the admin API's to change;
// entries are checked as the config file's; the command key is refused.
func TestModelChangesRefused(t *testing.T) {
	g := startGateway(t, echoModels)
	if code, body := g.call("POST", "/admin/models", g.Key, `{"name":"v","backend":"echo"}`); code != http.StatusCreated {
		t.Fatalf("add: %d %s", code, body)
	}
	pid := g.adminModels().Data[1].Replicas[0].Pid
	code, body := g.call("POST", "/admin/models/v/replace", g.Key, `{"name":"v","backend":"echo","options":{"fail_load":true}}`)
	e := wantAPIError(t, "a version that cannot load", code, body, http.StatusUnprocessableEntity, "model_not_started")
	if !strings.Contains(e.Message, "fail_load is set") || !strings.Contains(e.Message, "the old one keeps serving") {
		t.Fatalf("the refusal does not say why: %q", e.Message)
	}
	if got := g.adminModels().Data[1].Replicas[0].Pid; got != pid {
		t.Fatalf("the old version's process changed: %d → %d", pid, got)
	}
	if code, body := g.call("POST", "/v1/chat/completions", g.Key, chatBody("v", "still served", false)); code != http.StatusOK {
		t.Fatalf("the old version after a failed replace: %d %s", code, body)
	}
	for _, c := range []struct {
		method, path, body string
		status             int
		code, param        string
	}{
		{"POST", "/admin/models/chat/replace", `{"name":"chat","backend":"echo"}`, 409, "conflict", ""},
		{"DELETE", "/admin/models/chat", "", 409, "conflict", ""},
		{"POST", "/admin/models", `{"name":"chat","backend":"echo"}`, 409, "conflict", ""},
		{"POST", "/admin/models", `{"name":"x","backend":"echo","aliases":["default"]}`, 409, "conflict", ""},
		{"POST", "/admin/models", `{"name":"x","backend":"echo","replicas":0}`, 400, "invalid_value", "replicas"},
		{"POST", "/admin/models", `{"name":"x","backend":"echo","replica":2}`, 400, "invalid_value", "replica"},
		{"POST", "/admin/models", `{"name":"x","backend":"Echo!"}`, 400, "invalid_value", "backend"},
		{"POST", "/admin/models", `{"name":"x","backend":"echo","command":"/bin/sh"}`, 400, "invalid_value", "command"},
		{"POST", "/admin/models", `{"name":"x","backend":"llamacpp","options":{"model_path":"demo","lib_path":"/tmp/evil"}}`, 400, "invalid_value", "options.lib_path"},
		{"POST", "/admin/models", `{"name":"x","backend":"llamacpp","options":{"model_path":"/etc/passwd"}}`, 400, "invalid_value", "options.model_path"},
		{"POST", "/admin/models", `{"name":"x","backend":"llamacpp","options":{"model_path":"../secret"}}`, 400, "invalid_value", "options.model_path"},
		{"POST", "/admin/models", `{"name":"x","backend":"echo","options":{"nested":[{"key_file":"/etc/shadow"}]}}`, 400, "invalid_value", "options.nested[0].key_file"},
		{"POST", "/admin/models", `{"name":"x","backend":"echo","idle_timeout":"soon"}`, 400, "invalid_value", ""},
		{"POST", "/admin/models", `{"name":"x"`, 400, "invalid_value", ""},
		{"POST", "/admin/models", `{"name":"x","backend":"no-such-plugin"}`, 422, "model_not_started", ""},
		{"POST", "/admin/models/nothing/replace", `{"name":"nothing","backend":"echo"}`, 404, "model_not_found", ""},
		{"POST", "/admin/models/v/replace", `{"name":"w","backend":"echo"}`, 400, "invalid_value", "name"},
		{"POST", "/admin/models/v/scale", `{"replicas":0}`, 400, "invalid_value", "replicas"},
		{"POST", "/admin/models/v/explode", `{}`, 404, "unknown_url", ""},
		{"PUT", "/admin/aliases/chat", `{"model":"v"}`, 409, "conflict", ""},
		{"PUT", "/admin/aliases/default", `{"model":"v"}`, 409, "conflict", ""},
	} {
		code, body := g.call(c.method, c.path, g.Key, c.body)
		e := wantAPIError(t, c.method+" "+c.path+" "+c.body, code, body, c.status, c.code)
		if c.param != "" && e.Param != c.param {
			t.Fatalf("%s %s %s: param %q, want %q (%s)", c.method, c.path, c.body, e.Param, c.param, e.Message)
		}
	}
	// Only admin keys.
	chatKey := g.createKey("someone", "chat")
	code, body = g.call("GET", "/admin/models", chatKey, "")
	wantAPIError(t, "a chat key on the admin API", code, body, http.StatusForbidden, "insufficient_scope")
	// Nothing was added by the refused changes.
	if n := len(g.adminModels().Data); n != 2 {
		t.Fatalf("%d models after refused changes, want 2", n)
	}
}

// TestAliasSwitchesVersions: two versions side by side, and an alias moved from one
// to the other at once, through the CLI.
func TestAliasSwitchesVersions(t *testing.T) {
	g := startGateway(t, `  - {name: base, backend: echo}`)
	dir := t.TempDir()
	for _, v := range []string{"v1", "v2"} {
		path := dir + "/" + v + ".yaml"
		entry := fmt.Sprintf("name: chat@%s\nbackend: echo\noptions: {delay_ms: 1}\n", v)
		if v == "v1" {
			entry += "aliases: [chat]\n"
		}
		if err := os.WriteFile(path, []byte(entry), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := g.adminCLI("models", "add", path); err != nil || !strings.Contains(out, "chat@"+v) {
			t.Fatalf("models add %s: %q, %v", v, out, err)
		}
	}
	for range 2 { // the second time, it is so already: the same answer
		if out, err := g.adminCLI("models", "alias", "chat", "chat@v2"); err != nil || !strings.Contains(out, "alias chat now names model chat@v2") {
			t.Fatalf("models alias: %q, %v", out, err)
		}
	}
	out, err := g.adminCLI("models", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 7 && f[0] == "chat@v2" && (f[1] != "admin" || f[3] != "serving" || f[4] != "1/1" || f[6] != "chat") {
			t.Fatalf("models list row %q", line)
		}
		if len(f) >= 7 && f[0] == "chat@v1" && f[6] != "-" {
			t.Fatalf("models list row %q: v1 keeps the alias", line)
		}
	}
	if !strings.Contains(out, "MODEL") || !strings.Contains(out, "replica 0") {
		t.Fatalf("models list:\n%s", out)
	}
	if out, err := g.adminCLI("models", "changes"); err != nil || !strings.Contains(out, "alias") || !strings.Contains(out, "e2e (rgw_") {
		t.Fatalf("models changes:\n%s %v", out, err)
	}
}

// adminCLI runs a ragway command against the gateway with its admin key.
func (g *gateway) adminCLI(args ...string) (string, error) {
	g.t.Helper()
	return g.cliEnv([]string{"RAGWAY_URL=" + g.URL, "RAGWAY_API_KEY=" + g.Key}, args...)
}

// TestModelAddedOnOneGatewayServesOnAnother: two gateways on one database; a model
// added through A's admin API serves on B within 2 s, a replacement and a removal
// follow, and B serves it after a restart.
func TestModelAddedOnOneGatewayServesOnAnother(t *testing.T) {
	db := pgtest.Database(t)
	a := launchGatewayOn(t, db, `  - {name: base, backend: echo}`)
	b := serveOn(t, db, "", `  - {name: base, backend: echo}`, false)
	b.Key = a.Key
	a.waitReady(20 * time.Second)
	b.waitReady(20 * time.Second)
	start := time.Now()
	if code, body := a.call("POST", "/admin/models", a.Key, `{"name":"shared","backend":"echo"}`); code != http.StatusCreated {
		t.Fatalf("add on A: %d %s", code, body)
	}
	added := time.Now()
	served := func(g *gateway) bool {
		code, _ := g.call("POST", "/v1/chat/completions", g.Key, chatBody("shared", "hello", false))
		return code == http.StatusOK
	}
	for !served(b) {
		if time.Since(added) > 2*time.Second {
			t.Fatalf("B does not serve the model added on A %v after A answered", time.Since(added))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("added on A in %v; served on B %v after", added.Sub(start), time.Since(added))
	// Removed on A: gone on B.
	if code, body := a.call("DELETE", "/admin/models/shared", a.Key, ""); code != http.StatusOK {
		t.Fatalf("remove on A: %d %s", code, body)
	}
	deadline := time.Now().Add(2 * time.Second)
	for served(b) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if served(b) {
		t.Fatal("B still serves the model removed on A")
	}
	// Added again, then B restarts: it serves it from the database.
	if code, body := a.call("POST", "/admin/models", a.Key, `{"name":"shared","backend":"echo"}`); code != http.StatusCreated {
		t.Fatalf("add again on A: %d %s", code, body)
	}
	_ = b.stop(syscall.SIGTERM)
	b2 := serveOn(t, db, "", `  - {name: base, backend: echo}`, false)
	b2.Key = a.Key
	b2.waitReady(20 * time.Second)
	deadline = time.Now().Add(20 * time.Second)
	for !served(b2) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !served(b2) {
		t.Fatal("a restarted gateway does not serve the stored model")
	}
}

// TestReloadOnHangup: SIGHUP (and `ragway reload`) apply an edited config file's
// models; a broken file changes nothing and is reported as at start.
func TestReloadOnHangup(t *testing.T) {
	g := startGateway(t, `  - {name: one, backend: echo}
  - {name: two, backend: echo}`)
	pidOf := func(model string) int {
		for _, m := range g.adminModels().Data {
			if m.Name == model && len(m.Replicas) > 0 {
				return m.Replicas[0].Pid
			}
		}
		return 0
	}
	onePid := pidOf("one")
	rewrite := func(models string) {
		data, err := os.ReadFile(g.Config)
		if err != nil {
			t.Fatal(err)
		}
		head, _, _ := strings.Cut(string(data), "models:\n")
		if err := os.WriteFile(g.Config, []byte(head+"models:\n"+models), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// one changes (a new version), two goes, three comes.
	rewrite(`  - {name: one, backend: echo, options: {delay_ms: 1}}
  - {name: three, backend: echo}
`)
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !g.logged(`msg="reload: models changed as the config file says"`) {
		t.Fatalf("no reload logged:\n%s", g.Logs())
	}
	m := g.adminModels()
	names := []string{}
	for _, x := range m.Data {
		names = append(names, x.Name+":"+x.Source)
	}
	if strings.Join(names, ",") != "one:reload,three:reload" {
		t.Fatalf("after the reload: %v", names)
	}
	if pidOf("one") == onePid {
		t.Fatal("model one was not restarted with its new options")
	}
	// A broken file: nothing changes, the errors are those of a start.
	rewrite(`  - {name: one, backend: echo, replicas: 0}
`)
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !g.logged(`reload: the config file is not valid; nothing changed`) || !g.logged(`models[0].replicas: must be >= 1, got 0`) {
		t.Fatalf("a broken file's reload:\n%s", g.Logs())
	}
	out, err := g.adminCLI("reload")
	if err == nil || !strings.Contains(err.Error(), "models[0].replicas: must be >= 1, got 0") {
		t.Fatalf("ragway reload with a broken file: %q, %v", out, err)
	}
	if n := len(g.adminModels().Data); n != 2 {
		t.Fatalf("%d models after a broken reload, want 2", n)
	}
	// Fixed, through `ragway reload`.
	rewrite(`  - {name: one, backend: echo, options: {delay_ms: 1}}
`)
	out, err = g.adminCLI("reload")
	if err != nil || !strings.Contains(out, "removed: three") || !strings.Contains(out, "unchanged: one") {
		t.Fatalf("ragway reload: %q, %v", out, err)
	}
}

// TestColdStartsAreReported: a scale-to-zero model's replica, stopped for idleness
// and woken by a request, is counted and timed in /readyz and /metrics.
func TestColdStartsAreReported(t *testing.T) {
	g := startGateway(t, `  - {name: lazy, backend: echo, idle_timeout: 300ms, options: {load_delay_ms: 100}}`)
	idle := func(_ int, r readiness) bool {
		return len(r.Models) == 1 && len(r.Models[0].Replicas) == 1 && r.Models[0].Replicas[0].State == "idle"
	}
	g.waitFor("the replica idle", 10*time.Second, idle)
	if code, body := g.call("POST", "/v1/chat/completions", g.Key, chatBody("lazy", "wake up", false)); code != http.StatusOK {
		t.Fatalf("a chat waking the model: %d %s", code, body)
	}
	_, r := g.readyz()
	rep := r.Models[0].Replicas[0]
	if rep.ColdStarts != 1 || rep.LastColdStartMS < 100 {
		t.Fatalf("/readyz after a cold start: %d cold starts, last %d ms (want 1, at least the load's 100 ms)", rep.ColdStarts, rep.LastColdStartMS)
	}
	code, body := g.call("GET", "/metrics", "", "")
	if code != http.StatusOK || !strings.Contains(string(body), `ragway_cold_starts_total{model="lazy"} 1`) ||
		!strings.Contains(string(body), `ragway_cold_start_seconds_count{model="lazy"} 1`) {
		t.Fatalf("/metrics after a cold start: %d\n%s", code, body)
	}
	if !g.logged(`msg="cold start: an idle replica woken by a request is ready"`) {
		t.Fatal("the cold start is not logged")
	}
}

// TestPluginsDoNotGetTheGatewaysSecrets: a backend option naming an environment
// variable (vllm-proxy's api_key_env) cannot read the gateway's own secrets — they are
// not in the plugins' environment — and through the admin API it may only name a
// variable meant for upstreams.
func TestPluginsDoNotGetTheGatewaysSecrets(t *testing.T) {
	var mu sync.Mutex
	var auths []string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"object":"list","data":[{"id":"up","object":"model"}]}`))
	}))
	defer upstream.Close()
	g := serveOnEnv(t, pgtest.Database(t), "", fmt.Sprintf(`  - {name: chat, backend: echo}
  - {name: leak, backend: vllm-proxy, options: {upstreams: [%q], api_key_env: DATABASE_URL}}`, upstream.URL), true,
		[]string{"DATABASE_URL=postgres://u:secret-marker@db/x", "HF_TOKEN=hf_secret-marker"})
	// The plugin does not see the variable at all.
	g.waitFor("the proxy refused for want of its key", 20*time.Second, func(_ int, r readiness) bool {
		for _, m := range r.Models {
			if m.Name == "leak" && len(m.Replicas) == 1 && strings.Contains(m.Replicas[0].LastError, "environment variable DATABASE_URL is not set") {
				return true
			}
		}
		return false
	})
	code, body := g.call("POST", "/admin/models", g.Key, fmt.Sprintf(`{"name":"x","backend":"vllm-proxy","options":{"upstreams":[%q],"api_key_env":"HF_TOKEN"}}`, upstream.URL))
	wantAPIError(t, "an admin model reading HF_TOKEN", code, body, http.StatusBadRequest, "invalid_value")
	mu.Lock()
	defer mu.Unlock()
	for _, a := range auths {
		if strings.Contains(a, "secret-marker") {
			t.Fatalf("the upstream received the gateway's secret: %q", a)
		}
	}
}
