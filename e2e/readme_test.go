package e2e

import (
	"bufio"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ragway/ragway/internal/testbin"
)

// readmeLine returns the one line of a ```sh block of README.md that contains s.
func readmeLine(t *testing.T, s string) string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var found []string
	inSh := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```"):
			inSh = !inSh && line == "```sh"
		case inSh && strings.Contains(line, s):
			found = append(found, line)
		}
	}
	if len(found) != 1 {
		t.Fatalf("README.md's sh blocks have %d lines containing %q, want 1: %q", len(found), s, found)
	}
	return found[0]
}

// readmeShell runs a README line with sh in the repository root, as a reader who
// followed the tour would: the gateway g on localhost:8080, ragway's default URL
// (here g's address, also as RAGWAY_URL),
// RAGWAY_API_KEY exported (g's key), bin/ragway built (here the test's binary).
func readmeShell(t *testing.T, g *gateway, line string) (stdout, stderr string, code int) {
	t.Helper()
	u, err := url.Parse(g.URL)
	if err != nil {
		t.Fatal(err)
	}
	line = strings.ReplaceAll(line, "localhost:8080", u.Host)
	line = strings.ReplaceAll(line, "bin/ragway ", testbin.Ragway(t)+" ")
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "RAGWAY_API_KEY="+g.Key, "RAGWAY_URL="+g.URL)
	return runCommand(t, cmd)
}

// TestREADMEKillExample runs the tour's `kill -9` line: it kills the plugin
// /readyz reports, and the gateway restarts it.
func TestREADMEKillExample(t *testing.T) {
	line := readmeLine(t, "kill -9")
	// The pid must come from this gateway's /readyz: a line that looks for
	// processes by name is not run (it may kill another checkout's plugins).
	if !strings.Contains(line, "localhost:8080/readyz") {
		t.Fatalf("the README's kill line does not take the pid from /readyz: %s", line)
	}
	g := startGateway(t, echoModels)
	_, before := g.readyz()
	pid := before.Models[0].Replicas[0].Pid
	if stdout, stderr, code := readmeShell(t, g, line); code != 0 {
		t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", line, code, stdout, stderr)
	}
	g.waitFor("the killed replica restarted", 20*time.Second, func(code int, r readiness) bool {
		rep := r.Models[0].Replicas[0]
		return code == 200 && rep.Restarts == 1 && rep.Pid != pid && rep.Pid != 0
	})
}

// TestREADMEIngestExample runs the README's `ragway ingest` line in a clone:
// every path it names exists and every file is indexed.
func TestREADMEIngestExample(t *testing.T) {
	line := readmeLine(t, "bin/ragway ingest")
	g := startGateway(t, echoModels)
	stdout, stderr, code := readmeShell(t, g, line)
	if code != 0 {
		t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", line, code, stdout, stderr)
	}
	m := summaryRe.FindStringSubmatch(stdout)
	if m == nil || m[1] == "0" || m[3] != "0" {
		t.Fatalf("%s: the summary does not show files indexed and none failed:\n%s", line, stdout)
	}
}

// TestServeAnnouncesTheKeyLast: the admin key task run leaves for serve
// (RAGWAY_ANNOUNCE_KEY_FILE) is printed framed, once the gateway listens and its
// models are ready, and its file removed.
func TestServeAnnouncesTheKeyLast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin-key")
	const key = "rgw_abcd1234_0123456789abcdefghijABCDEFGHIJ0123456789"
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RAGWAY_ANNOUNCE_KEY_FILE", path)
	g := launchGateway(t, echoModels)
	if !g.logged("export RAGWAY_API_KEY=" + key) {
		t.Fatalf("the gateway did not print the key:\n%s", g.Logs())
	}
	logs := g.Logs()
	// After the gateway listens, once its model is ready. (The workers log "replica
	// ready" just after the replica is, so that line may come a moment later.)
	listening, announced := strings.Index(logs, `msg="ragway listening"`), strings.Index(logs, "export RAGWAY_API_KEY=")
	if listening < 0 || listening > announced {
		t.Fatalf("the key came before the gateway listened:\n%s", logs)
	}
	if code, r := g.readyz(); code != 200 || !r.Models[0].Ready {
		t.Fatalf("/readyz %d %+v after the key was printed", code, r)
	}
	if !strings.Contains(logs, "+-----") || !strings.Contains(logs, "| The admin API key") {
		t.Fatalf("the key is not framed:\n%s", logs)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("the key's file is still there once printed")
	}
}

// TestREADMEModelsExample runs the README's models lines, in order, against a
// gateway with the embedded defaults' model: the new model serves, the alias names
// it, the list and the record show it.
func TestREADMEModelsExample(t *testing.T) {
	g := startGateway(t, echoModels)
	for _, want := range []struct{ line, out string }{
		{"bin/ragway models add -", "chat@v2"},
		{"bin/ragway models alias latest chat@v2", "alias latest now names model chat@v2"},
		{"bin/ragway models list", "chat@v2"},
		{"bin/ragway models changes", "alias"},
	} {
		line := readmeLine(t, want.line)
		stdout, stderr, code := readmeShell(t, g, line)
		if code != 0 || !strings.Contains(stdout, want.out) {
			t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", line, code, stdout, stderr)
		}
	}
	if code, body := g.call("POST", "/v1/chat/completions", g.Key, chatBody("latest", "hello", false)); code != 200 || !strings.Contains(string(body), `"hello"`) {
		t.Fatalf("a chat through the alias: %d %s", code, body)
	}
}
