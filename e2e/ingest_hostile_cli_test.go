package e2e

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ragway/ragway/internal/testbin"
)

// publicTempDir is a temporary directory anyone may read and enter (t.TempDir's are
// the test user's alone), removed at the end of the test.
func publicTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ragway-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// unprivilegedCLI runs the ragway binary like ragwayCLI, but as user nobody when the
// tests run as root, so that file permissions hold for it (root reads a directory
// of mode 000; nobody cannot). The binary is copied where nobody may run it.
type unprivilegedCLI struct {
	bin  string
	attr *syscall.SysProcAttr
	dir  string // the working directory
}

func newUnprivilegedCLI(t *testing.T) *unprivilegedCLI {
	t.Helper()
	c := &unprivilegedCLI{bin: testbin.Ragway(t), dir: publicTempDir(t)}
	if os.Geteuid() != 0 {
		return c
	}
	data, err := os.ReadFile(c.bin)
	if err != nil {
		t.Fatal(err)
	}
	c.bin = filepath.Join(c.dir, "ragway")
	if err := os.WriteFile(c.bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	c.attr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return c
}

func (c *unprivilegedCLI) run(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir, cmd.SysProcAttr = c.dir, c.attr
	return runCommand(t, cmd)
}

// sparseFile makes a file of size bytes (zeros) without writing them.
func sparseFile(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// kbDocuments returns the documents of knowledge base kb (a name or an id) by source.
func (g *gateway) kbDocuments(t *testing.T, kb string) map[string]kbDoc {
	t.Helper()
	var list struct {
		Data []struct {
			kbDoc
			Source string `json:"source"`
		} `json:"data"`
	}
	if code, body := g.getJSON("/v1/knowledge-bases/"+url.PathEscape(kb)+"/documents?limit=200", g.Key, &list); code != 200 {
		t.Fatalf("documents of %s: %d %s", kb, code, body)
	}
	docs := make(map[string]kbDoc, len(list.Data))
	for _, d := range list.Data {
		docs[d.Source] = d.kbDoc
	}
	return docs
}

// kbIDs returns the ids of g.Key's knowledge bases named name.
func (g *gateway) kbIDs(t *testing.T, name string) []string {
	t.Helper()
	var list struct {
		Data []struct{ ID, Name string } `json:"data"`
	}
	if code, body := g.getJSON("/v1/knowledge-bases", g.Key, &list); code != 200 {
		t.Fatalf("knowledge bases: %d %s", code, body)
	}
	var ids []string
	for _, k := range list.Data {
		if k.Name == name {
			ids = append(ids, k.ID)
		}
	}
	return ids
}

// TestIngestCLIHostileTree ingests, as a user without privileges, a directory with an
// unreadable subdirectory, a dangling link, a file above the gateway's limit and
// files whose names hold newlines, tabs, quotes, escape sequences and bytes that
// are not UTF-8: every readable file is indexed under a clean name, the rest is
// listed with its reason, and the exit status says so.
func TestIngestCLIHostileTree(t *testing.T) {
	g := startGateway(t, echoModels)
	cli := newUnprivilegedCLI(t)
	base := publicTempDir(t)
	tree := filepath.Join(base, "tree")
	names := map[string]string{ // on disk → the document's source at the gateway
		"ok.md":           "ok.md",
		"new\nline.md":    "new\uFFFDline.md",
		"tab\there.md":    "tab\uFFFDhere.md",
		`quote" and \.md`: `quote" and \.md`,
		"bad\xff\xfe.md":  "bad\uFFFD\uFFFD.md",
		"esc\x1b[2J.md":   "esc\uFFFD[2J.md",
		"网关 文档\u2028.txt": "网关 文档\uFFFD.txt",
	}
	files := map[string]string{"locked/secret.md": "# Secret\n\nNobody may read this directory.\n"}
	n := 0
	for name := range names {
		n++
		files[name] = fmt.Sprintf("# Document %d\n\nThe file named %q is indexed under a name fit to store.\n", n, name)
	}
	writeFiles(t, tree, files)
	if err := os.Symlink(filepath.Join(base, "missing.md"), filepath.Join(tree, "dangling.md")); err != nil {
		t.Fatal(err)
	}
	sparseFile(t, filepath.Join(tree, "big.md"), 5<<20) // above the gateway's default 4 MiB
	locked := filepath.Join(tree, "locked")
	if err := os.Chmod(locked, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(locked, 0o755) })

	env := []string{"RAGWAY_URL=" + g.URL, "RAGWAY_API_KEY=" + g.Key}
	stdout, stderr, code := cli.run(t, env, "ingest", "--kb", "hostile", "--create", tree)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	if code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	if !strings.HasPrefix(stdout, fmt.Sprintf("%d indexed, 0 duplicates, 1 failed, 2 skipped: ", len(names))) {
		t.Errorf("summary %q", stdout)
	}
	q := func(p ...string) string { return strconv.Quote(filepath.Join(p...)) }
	for _, want := range []string{
		"\nfailed " + q(tree, "big.md") + ": 5242880 bytes: larger than the server's limit of 4194304 bytes (--max-bytes)\n",
		"\nskipped " + q(tree, "dangling.md") + ": a dangling symbolic link (to " + q(base, "missing.md") + ", which does not exist)\n",
		"\nskipped " + q(locked) + ": cannot read the directory: permission denied\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	if !strings.HasSuffix(stderr, fmt.Sprintf("ragway: ingest: 1 of %d files failed, 2 paths skipped for an error\n", len(names)+1)) {
		t.Errorf("stderr does not end with the exit error: %q", stderr)
	}
	for name := range names {
		if want := regexp.MustCompile(`(?m)^indexed ` + regexp.QuoteMeta(q(tree, name)) + ` \(\d+ chunks?\)$`); !want.MatchString(stderr) {
			t.Errorf("stderr lacks %s", want)
		}
	}
	docs := g.kbDocuments(t, "hostile")
	for disk, source := range names {
		if d, ok := docs[source]; !ok || d.Status != "indexed" {
			t.Errorf("%q: no indexed document with source %q (%+v)", disk, source, docs)
		}
	}
	if len(docs) != len(names) {
		t.Errorf("%d documents, want %d: %+v", len(docs), len(names), docs)
	}

	// Without the CLI's check, the gateway refuses the file: the reason names the
	// limit, and no internals.
	stdout, stderr, code = cli.run(t, env, "ingest", "--kb", "hostile", "--max-bytes", "0", filepath.Join(tree, "big.md"))
	line := ""
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, "failed "+q(tree, "big.md")+": ") {
			line = l
		}
	}
	t.Logf("--max-bytes 0: %s", line)
	if code != 1 || !strings.Contains(line, "limit") || strings.Contains(line, "tcp") || strings.Contains(line, "127.0.0.1:") {
		t.Errorf("--max-bytes 0: exit %d, failed line %q\nstdout %q\nstderr %q", code, line, stdout, stderr)
	}
}

// TestIngestCLIKnowledgeBaseNames ingests into knowledge bases named with a space
// and in CJK, three runs each: the first creates it, the second (--create again)
// and the third find it by name. A name with "/" either works the same way or is
// refused at creation with the gateway's reason.
func TestIngestCLIKnowledgeBaseNames(t *testing.T) {
	g := startGateway(t, echoModels)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"names.md": "# Names\n\nKnowledge-base names with spaces and CJK work on every run.\n"})
	file := filepath.Join(dir, "names.md")
	env := []string{"RAGWAY_URL=" + g.URL, "RAGWAY_API_KEY=" + g.Key}
	// runs ingests file into name once per args, and checks each run: the first
	// indexes it if fresh, the others find it there already.
	runs := func(t *testing.T, name string, fresh bool, runs ...[]string) {
		t.Helper()
		for i, args := range runs {
			stdout, stderr, code := ragwayCLI(t, env, append([]string{"ingest", "--kb", name, file}, args...)...)
			want := "0 indexed, 1 duplicate, 0 failed, 0 skipped"
			if i == 0 && fresh {
				want = "1 indexed, 0 duplicates, 0 failed, 0 skipped"
			}
			if code != 0 || !strings.HasPrefix(stdout, want) {
				t.Errorf("--kb %q %q (run %d): exit %d, want 0 and %q\nstdout %q\nstderr %q", name, args, i+1, code, want, stdout, stderr)
			}
		}
		ids := g.kbIDs(t, name)
		if len(ids) != 1 {
			t.Fatalf("knowledge bases named %q: %q, want one", name, ids)
		}
		if hits := g.search(t, g.Key, ids[0], "names with spaces and CJK"); len(hits) == 0 {
			t.Errorf("--kb %q: the document is not found in it", name)
		}
	}
	for _, name := range []string{"my docs", "文档"} {
		t.Run(name, func(t *testing.T) {
			runs(t, name, true, []string{"--create"}, []string{"--create"}, nil)
		})
	}

	t.Run("a/b", func(t *testing.T) {
		stdout, stderr, code := ragwayCLI(t, env, "ingest", "--kb", "a/b", "--create", file)
		if code == 0 {
			// The gateway takes the name: then the runs after find it by name.
			t.Log("the gateway took the name a/b")
			if !strings.HasPrefix(stdout, "1 indexed") {
				t.Errorf("stdout %q", stdout)
			}
			runs(t, "a/b", false, nil, []string{"--create"})
			return
		}
		reason := regexp.MustCompile(`ragway: ingest: cannot create the knowledge base "a/b": (.+)\n$`).FindStringSubmatch(stderr)
		if reason == nil || regexp.MustCompile(`(?i)internal|store:|pq:|sql|\b5\d\d\b`).MatchString(reason[1]) {
			t.Errorf("a refused name: exit %d, stderr %q; want the gateway's reason for humans", code, stderr)
		}
		t.Logf("the gateway refused the name a/b: %s", stderr)
		if ids := g.kbIDs(t, "a/b"); len(ids) != 0 {
			t.Errorf("refused, yet created: %q", ids)
		}
	})
}
