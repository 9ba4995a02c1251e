package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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
	mu   sync.Mutex
	logs bytes.Buffer
	exit chan error // receives the process's exit once
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
	dir := t.TempDir()
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\ndatabase_url: %q\nplugins_dir: %s\nserver: {shutdown_grace: 10s, heartbeat_interval: 200ms}\nmodels:\n%s",
		dbURL, testbin.Dir(t), models)
	path := filepath.Join(dir, "ragway.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &gateway{t: t, exit: make(chan error, 1), Config: path, DatabaseURL: dbURL}
	g.Key = g.createKey("e2e", "chat,ingest,admin")
	g.cmd = exec.Command(testbin.Ragway(t), "serve", "-c", path)
	// go-plugin's socket directories go under TMPDIR; a SIGKILLed gateway
	// cannot remove them, so keep them in the test's directory.
	g.cmd.Env = append(os.Environ(), "TMPDIR="+dir)
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
			g.mu.Lock()
			g.logs.WriteString(line + "\n")
			g.mu.Unlock()
			if m := listenRe.FindStringSubmatch(line); m != nil {
				addr <- m[1]
			}
		}
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
	cmd := exec.Command(testbin.Ragway(g.t), args...)
	cmd.Env = append(os.Environ(), "RAGWAY_DATABASE_URL="+g.DatabaseURL)
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
func (g *gateway) Logs() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.logs.String()
}

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
