package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/vectorstore/qdrant/qdranttest"
	"github.com/ragway/ragway/internal/pgtest"
	"github.com/ragway/ragway/internal/testbin"
)

// ragwayCLI runs the real ragway binary with env added to the environment and returns
// its stdout, stderr and exit code.
func ragwayCLI(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(testbin.Ragway(t), args...)
	cmd.Env = append(os.Environ(), env...)
	return runCommand(t, cmd)
}

// runCommand runs cmd and returns its stdout, stderr and exit code; failing to start it
// fails the test.
func runCommand(t *testing.T, cmd *exec.Cmd) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", strings.Join(cmd.Args, " "), err)
	}
	return out.String(), errOut.String(), code
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var summaryRe = regexp.MustCompile(`(\d+) indexed, (\d+) duplicates?, (\d+) failed, (\d+) skipped: (\d+) chunks? from .* in .* \(\d+\.\d\d MB/s\)`)

func TestIngestCLI(t *testing.T) {
	g := startGateway(t, echoModels)
	dir := t.TempDir()
	ops := "# Operations\n\nWhen Postgres is down the gateway answers 503 and reconnects by itself.\n"
	writeFiles(t, dir, map[string]string{
		"ops.md":              ops,
		"guide/网关.txt":        "数据库不可用时，网关返回503错误。数据库恢复后，网关会自动重新连接。",
		"guide/keys.html":     "<html><head><title>Keys</title></head><body><h1>Keys</h1><p>API keys are stored as SHA-256 hashes and shown once.</p></body></html>",
		"guide/copy.markdown": ops, // the same content as ops.md
		"bad.txt":             "ok \xff\xfe bad",
		"logo.png":            "\x89PNG\r\n\x1a\n....",
		".hidden.md":          "# Hidden\n\nnot uploaded",
		".git/config.txt":     "not uploaded",
	})
	env := []string{"RAGWAY_URL=" + g.URL, "RAGWAY_API_KEY=" + g.Key}

	stdout, stderr, code := ragwayCLI(t, env, "ingest", "--kb", "docs", "--create", dir)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	if code == 0 {
		t.Fatalf("exit status 0, want non-zero: bad.txt failed")
	}
	m := summaryRe.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no summary in stdout %q", stdout)
	}
	// ops.md and copy.markdown: one indexed, one duplicate (whichever came second).
	if got := strings.Join(m[1:5], " "); got != "3 1 1 3" {
		// Skipped: logo.png, .hidden.md and .git (not entered, its files not counted).
		t.Errorf("summary counts %q, want 3 indexed, 1 duplicate, 1 failed, 3 skipped", got)
	}
	for _, want := range []string{
		"\nfailed " + strconv.Quote(filepath.Join(dir, "bad.txt")) + ": ",
		"\nskipped " + strconv.Quote(filepath.Join(dir, "logo.png")) + ": not a type ingest uploads\n",
		"\nskipped " + strconv.Quote(filepath.Join(dir, ".hidden.md")) + ": hidden\n",
		"\nskipped " + strconv.Quote(filepath.Join(dir, ".git")) + ": a hidden directory, not entered\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the summary lacks %q", want)
		}
	}
	if m[5] == "0" {
		t.Errorf("no chunks in %q", m[0])
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^indexed ".*网关\.txt" \(\d+ chunks?\)$`),
		regexp.MustCompile(`(?m)^indexed ".*keys\.html" \(\d+ chunks?\)$`),
		regexp.MustCompile(`(?m)^duplicate ".*(ops\.md|copy\.markdown)" \(document [0-9a-f-]{36}\)$`),
		regexp.MustCompile(`(?m)^failed ".*bad\.txt": .*UTF-8`),
		regexp.MustCompile(`ingest: 1 of 5 files failed`),
	} {
		if !want.MatchString(stderr) {
			t.Errorf("stderr does not match %s", want)
		}
	}
	if strings.Contains(stderr, "\r") {
		t.Errorf("a progress bar on a pipe: %q", stderr)
	}

	for query, want := range map[string]string{"数据库": "网关", "postgres down": "Operations", "SHA-256 hashes": "Keys"} {
		hits := g.search(t, g.Key, "docs", query)
		if len(hits) == 0 || !strings.Contains(hits[0].Title, want) {
			t.Errorf("search %q: %+v, want %s first", query, hits, want)
		}
	}

	// Again: everything is a duplicate now, and duplicates are no failure.
	stdout, stderr, code = ragwayCLI(t, env, "ingest", "--kb", "docs", filepath.Join(dir, "guide"), filepath.Join(dir, "ops.md"))
	if code != 0 || !strings.Contains(stdout, "0 indexed, 4 duplicates, 0 failed, 0 skipped") {
		t.Errorf("second run: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}

	t.Run("errors", func(t *testing.T) {
		bob := g.createKey("bob", "chat")
		for _, tt := range []struct {
			name string
			env  []string
			args []string
			want string
		}{
			{"no such knowledge base", env, []string{"--kb", "nope", dir}, `you have no knowledge base "nope" (--create makes it)`},
			{"wrong key", []string{"RAGWAY_URL=" + g.URL, "RAGWAY_API_KEY=rgw_aaaaaaaa_" + strings.Repeat("a", 40)}, []string{"--kb", "docs", dir}, "check RAGWAY_API_KEY"},
			{"no ingest scope", []string{"RAGWAY_URL=" + g.URL, "RAGWAY_API_KEY=" + bob}, []string{"--kb", "docs", dir}, "ingest scope"},
			{"unreachable", []string{"RAGWAY_URL=http://127.0.0.1:1", "RAGWAY_API_KEY=" + g.Key}, []string{"--kb", "docs", dir}, "not reachable at http://127.0.0.1:1"},
			{"--url wins", []string{"RAGWAY_URL=http://127.0.0.1:1", "RAGWAY_API_KEY=" + g.Key}, []string{"--url", g.URL + "/v1/", "--kb", "nope", dir}, `you have no knowledge base "nope"`},
			{"missing path", env, []string{"--kb", "docs", filepath.Join(dir, "missing")}, "skipped " + strconv.Quote(filepath.Join(dir, "missing")) + ": no such file or directory\n"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				stdout, stderr, code := ragwayCLI(t, tt.env, append([]string{"ingest"}, tt.args...)...)
				if code == 0 || !strings.Contains(stdout+stderr, tt.want) {
					t.Errorf("exit %d\nstdout %q\nstderr %q\nwant non-zero and %q", code, stdout, stderr, tt.want)
				}
			})
		}
	})
}

// TestReindexCLI rebuilds a knowledge base into an empty Qdrant (a second stand-in,
// as after losing Qdrant's storage) and finds its documents there.
func TestReindexCLI(t *testing.T) {
	dbURL := pgtest.Database(t)
	first := launchGatewayConfig(t, dbURL, fmt.Sprintf("vector_store: {kind: qdrant, url: %q}", qdranttest.Start(t)), echoModels)
	first.waitReady(20 * time.Second)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"ops.md": "# Operations\n\nWhen Postgres is down the gateway answers 503 and reconnects by itself.\n",
		"网关.txt": "数据库不可用时，网关返回503错误。",
	})
	stdout, stderr, code := ragwayCLI(t, []string{"RAGWAY_URL=" + first.URL, "RAGWAY_API_KEY=" + first.Key}, "ingest", "--kb", "docs", "--create", dir)
	if code != 0 || !strings.Contains(stdout, "2 indexed") {
		t.Fatalf("ingest: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	var kb struct{ ID string }
	first.getJSON("/v1/knowledge-bases/docs", first.Key, &kb)
	if len(first.search(t, first.Key, "docs", "postgres down")) == 0 {
		t.Fatal("not found on the first Qdrant")
	}

	// A second gateway on the same database and an empty Qdrant finds nothing ...
	empty := qdranttest.Start(t)
	second := launchGatewayConfig(t, dbURL, fmt.Sprintf("vector_store: {kind: qdrant, url: %q}", empty), echoModels)
	second.waitReady(20 * time.Second)
	if hits := second.search(t, first.Key, "docs", "postgres down"); len(hits) != 0 {
		t.Fatalf("found on an empty Qdrant: %+v", hits)
	}
	// ... until reindex rebuilds the knowledge base there.
	env := []string{"RAGWAY_DATABASE_URL=" + dbURL}
	for _, args := range [][]string{{"--kb", kb.ID}, {"--kb", "docs", "--user", "e2e"}} {
		stdout, stderr, code = ragwayCLI(t, env, append([]string{"reindex", "-c", second.Config}, args...)...)
		if code != 0 || !regexp.MustCompile(`^reindexed knowledge base .*: 2 chunks into qdrant in \S+\n$`).MatchString(stdout) {
			t.Fatalf("reindex %q: exit %d\nstdout: %s\nstderr: %s", args, code, stdout, stderr)
		}
		t.Logf("ragway reindex %s: %s", strings.Join(args, " "), stdout)
	}
	for query, want := range map[string]string{"postgres down": "Operations", "数据库": "网关"} {
		if hits := second.search(t, first.Key, "docs", query); len(hits) == 0 || !strings.Contains(hits[0].Title, want) {
			t.Errorf("search %q after reindex: %+v", query, hits)
		}
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--kb", "docs"}, "names are per user: add --user NAME"},
		{[]string{"--kb", "00000000-0000-0000-0000-000000000000"}, "no knowledge base has the id"},
		{[]string{"--kb", "nope", "--user", "e2e"}, `user e2e has no knowledge base "nope"`},
		{[]string{"--kb", "docs", "--user", "nobody"}, `no user named "nobody"`},
	} {
		_, stderr, code := ragwayCLI(t, env, append([]string{"reindex", "-c", second.Config}, tt.args...)...)
		if code == 0 || !strings.Contains(stderr, tt.want) {
			t.Errorf("reindex %q: exit %d, stderr %q; want %q", tt.args, code, stderr, tt.want)
		}
	}
	// The embedded store needs no reindex.
	stdout, _, code = ragwayCLI(t, env, "reindex", "--kb", kb.ID)
	if code != 0 || !strings.Contains(stdout, "rebuilds its index from the database at start") {
		t.Errorf("reindex on the embedded store: exit %d, %q", code, stdout)
	}
}
