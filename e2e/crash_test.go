package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/ragway/ragway/internal/testbin"
)

func chatBody(model, text string, stream bool) string {
	b, _ := json.Marshal(map[string]any{
		"model": model, "stream": stream,
		"messages": []map[string]string{{"role": "user", "content": text}},
	})
	return string(b)
}

func TestPluginKillIsSurvivedAndRestarted(t *testing.T) {
	g := startGateway(t, echoModels)
	old := pids(g.waitReady(10*time.Second), "chat")
	if len(old) != 1 {
		t.Fatalf("pids = %v", old)
	}
	if err := syscall.Kill(old[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := g.waitFor("a restarted replica", 10*time.Second, func(code int, r readiness) bool {
		p := pids(r, "chat")
		return code == 200 && len(p) == 1 && p[0] != old[0] && r.Models[0].Replicas[0].State == "ready"
	})
	if r.Models[0].Replicas[0].Restarts != 1 {
		t.Fatalf("restarts = %d, want 1", r.Models[0].Replicas[0].Restarts)
	}
	if code, body := g.post("/v1/chat/completions", chatBody("chat", "back again", false)); code != 200 || !strings.Contains(string(body), "back again") {
		t.Fatalf("after restart: %d %s", code, body)
	}
	if code, _ := g.post("/v1/chat/completions", `{`); code != 400 {
		t.Fatalf("gateway unhealthy after plugin kill: %d", code)
	}
}

func TestCrashBeforeFirstTokenIsRetried(t *testing.T) {
	g := startGateway(t, `
  - {name: slow, backend: echo, replicas: 1, options: {delay_ms: 400}}
`)
	pid := pids(g.waitReady(10*time.Second), "slow")[0]
	client := sdkClient(g)
	type result struct {
		text string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := client.Chat.Completions.New(ctxTimeout(t, 30*time.Second), openai.ChatCompletionNewParams{
			Model: "slow", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("survives a crash")},
		})
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- result{text: resp.Choices[0].Message.Content}
	}()
	// Kill the replica while the request waits for its first token.
	g.waitFor("the request to be in flight", 10*time.Second, func(_ int, r readiness) bool {
		return r.Models[0].Replicas[0].State == "busy"
	})
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.text != "survives a crash" {
		t.Fatalf("got %q, %v; want the whole answer from the restarted replica", r.text, r.err)
	}
}

func TestCrashMidStreamGivesCleanError(t *testing.T) {
	g := startGateway(t, `
  - {name: flaky, backend: echo, options: {fail_after: 2, delay_ms: 30}}
`)
	resp, err := g.send("POST", "/v1/chat/completions", g.Key, chatBody("flaky", "one two three four", true))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	events := sseEvents(t, resp.Body)
	if len(events) < 2 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("events = %q, want ... error, [DONE]", events)
	}
	var text strings.Builder
	for _, e := range events[:len(events)-2] {
		var c struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(e), &c); err != nil {
			t.Fatalf("chunk %q: %v", e, err)
		}
		for _, ch := range c.Choices {
			text.WriteString(ch.Delta.Content)
		}
	}
	var last struct {
		Error struct{ Message, Type string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(events[len(events)-2]), &last); err != nil || last.Error.Message == "" {
		t.Fatalf("event before [DONE] = %q, want an error object", events[len(events)-2])
	}
	if text.String() != "one two" {
		t.Fatalf("streamed %q before the crash, want %q", text.String(), "one two")
	}
	// The replica comes back.
	g.waitReady(10 * time.Second)
}

func TestCrashLoopShowsFailed(t *testing.T) {
	g := launchGateway(t, echoModels+`
  - {name: broken, backend: echo, options: {fail_load: exit}}
`)
	r := g.waitFor("broken to be failed", 30*time.Second, func(code int, r readiness) bool {
		for _, m := range r.Models {
			if m.Name == "broken" && len(m.Replicas) == 1 && m.Replicas[0].State == "failed" {
				return code == http.StatusServiceUnavailable
			}
		}
		return false
	})
	for _, m := range r.Models {
		if m.Name == "broken" && !strings.Contains(m.Replicas[0].LastError, "exit") {
			t.Fatalf("last error %q does not say the plugin exited", m.Replicas[0].LastError)
		}
	}
	code, body := g.post("/v1/chat/completions", chatBody("broken", "hi", false))
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), `"error"`) {
		t.Fatalf("request to a failed model: %d %s", code, body)
	}
	if code, _ := g.post("/v1/chat/completions", chatBody("chat", "fine", false)); code != 200 {
		t.Fatalf("healthy model affected by the broken one: %d", code)
	}
}

func TestGatewaySIGKILLLeavesNoPlugins(t *testing.T) {
	g := startGateway(t, `
  - {name: chat, backend: echo, replicas: 2}
`)
	ps := pids(g.waitReady(10*time.Second), "chat")
	if len(ps) != 2 {
		t.Fatalf("pids = %v", ps)
	}
	_ = g.stop(syscall.SIGKILL)
	for _, pid := range ps {
		if !processGone(pid, 5*time.Second) {
			out, _ := exec.Command("ps", "-o", "pid,ppid,stat,cmd", "-p", strconv.Itoa(pid)).CombinedOutput()
			t.Fatalf("plugin %d outlived the SIGKILLed gateway:\n%s", pid, out)
		}
	}
}

func TestGracefulShutdownDrains(t *testing.T) {
	g := startGateway(t, `
  - {name: slow, backend: echo, options: {delay_ms: 100}}
`)
	ps := pids(g.waitReady(10*time.Second), "slow")
	resp, err := g.send("POST", "/v1/chat/completions", g.Key, chatBody("slow", "a b c d e", true))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	stopped := make(chan error, 1)
	go func() { stopped <- g.stop(syscall.SIGTERM) }()
	events := sseEvents(t, resp.Body)
	if len(events) == 0 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("in-flight stream cut by shutdown: %q", events)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("gateway exit: %v\n%s", err, g.Logs())
	}
	for _, pid := range ps {
		if !processGone(pid, 5*time.Second) {
			t.Fatalf("plugin %d outlived graceful shutdown", pid)
		}
	}
}

func TestInvalidConfigNamesTheKey(t *testing.T) {
	out, err := exec.Command(testbin.Ragway(t), "serve", "-c", writeFile(t, "bad.yaml", "models:\n  - {name: x, backend: echo, max_concurrency: 0}\n")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "models[0].max_concurrency") {
		t.Fatalf("err %v, output %s; want a failure naming models[0].max_concurrency", err, out)
	}
}

func writeFile(t *testing.T, name, content string) string {
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestClientDisconnectCancelsGeneration(t *testing.T) {
	g := startGateway(t, `
  - {name: slow, backend: echo, max_concurrency: 1, max_queue: 0, options: {delay_ms: 50, parallel: 1}}
`)
	long := strings.Repeat("word ", 400) // 20 s of tokens
	resp, err := g.send("POST", "/v1/chat/completions", g.Key, chatBody("slow", long, true))
	if err != nil {
		t.Fatal(err)
	}
	// Read until the first content arrives, then hang up.
	buf := make([]byte, 4096)
	var got strings.Builder
	for !strings.Contains(got.String(), "word") {
		n, err := resp.Body.Read(buf)
		if err != nil {
			t.Fatalf("stream ended before the first token: %v", err)
		}
		got.Write(buf[:n])
	}
	resp.Body.Close()
	// The gateway's slot is freed: the replica returns to ready and, with
	// max_queue 0, a new request is admitted instead of a 429.
	g.waitFor("the generation to be cancelled", 5*time.Second, func(_ int, r readiness) bool {
		return r.Models[0].Replicas[0].State == "ready"
	})
	// The plugin's only slot is freed too: were the abandoned generation
	// still running, this request would wait ~20 s inside the plugin.
	req, _ := http.NewRequest("POST", g.URL+"/v1/chat/completions", strings.NewReader(chatBody("slow", "next", false)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+g.Key)
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err = client.Do(req)
	if err != nil {
		t.Fatalf("request after the disconnect: %v (the plugin kept generating for the gone client?)", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("request after the disconnect: %d", resp.StatusCode)
	}
}
