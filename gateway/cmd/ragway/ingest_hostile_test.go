package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// received is what the fake gateway got for one document upload.
type received struct {
	filename    string // as the gateway's multipart parser reads it
	contentType string
	length      int64 // the request's Content-Length (-1: not announced)
	bytes       int64 // of the file part
	sum         [32]byte
}

// fakeGateway is a stand-in for the gateway's knowledge-base API that decodes the
// multipart upload as the gateway does (mime/multipart), percent-decodes :kb path
// segments, refuses names with "/" at creation, and answers 413 (without reading
// the body) above limit.
type fakeGateway struct {
	*httptest.Server
	limit int64 // 0: none

	mu      sync.Mutex
	kbs     map[string]string // name → id
	uploads []received
	paths   []string // the escaped paths of every request
}

func newFakeGateway(t *testing.T) *fakeGateway {
	t.Helper()
	g := &fakeGateway{kbs: map[string]string{"docs": "kb1"}}
	g.Server = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.Close)
	return g
}

func (g *fakeGateway) fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": "invalid_request_error", "code": code}})
}

// kb finds a knowledge base by name or id.
func (g *fakeGateway) kb(nameOrID string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if id, ok := g.kbs[nameOrID]; ok {
		return id, true
	}
	for _, id := range g.kbs {
		if id == nameOrID {
			return id, true
		}
	}
	return "", false
}

func (g *fakeGateway) serve(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	g.paths = append(g.paths, r.URL.EscapedPath())
	g.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer k" {
		g.fail(w, 401, "invalid_api_key", "incorrect API key")
		return
	}
	var seg []string
	for _, s := range strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/") {
		u, err := url.PathUnescape(s)
		if err != nil {
			g.fail(w, 400, "invalid_value", "bad path")
			return
		}
		seg = append(seg, u)
	}
	switch {
	case r.Method == "POST" && len(seg) == 2 && seg[1] == "knowledge-bases":
		var req struct{ Name string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Name == "" {
			g.fail(w, 400, "invalid_value", "no name")
			return
		}
		if strings.Contains(req.Name, "/") {
			g.fail(w, 400, "invalid_value", fmt.Sprintf("invalid value for 'name': '%s'; a name may not contain '/'", req.Name))
			return
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		if _, ok := g.kbs[req.Name]; ok {
			g.fail(w, 409, "conflict", fmt.Sprintf("you already have a knowledge base named '%s'", req.Name))
			return
		}
		id := fmt.Sprintf("kb%d", len(g.kbs)+1)
		g.kbs[req.Name] = id
		w.WriteHeader(201)
		json.NewEncoder(w).Encode(map[string]string{"id": id, "name": req.Name})
	case r.Method == "GET" && len(seg) == 3 && seg[1] == "knowledge-bases":
		id, ok := g.kb(seg[2])
		if !ok {
			g.fail(w, 404, "not_found", "no such knowledge base")
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"id": id, "name": seg[2]})
	case r.Method == "POST" && len(seg) == 4 && seg[1] == "knowledge-bases" && seg[3] == "documents":
		if _, ok := g.kb(seg[2]); !ok {
			g.fail(w, 404, "not_found", "no such knowledge base")
			return
		}
		if g.limit > 0 && r.ContentLength > g.limit {
			g.fail(w, 413, "request_too_large", fmt.Sprintf("the request body is larger than the limit of %d bytes", g.limit))
			return
		}
		mr, err := r.MultipartReader()
		if err != nil {
			g.fail(w, 400, "invalid_value", "not multipart")
			return
		}
		p, err := mr.NextPart()
		if err != nil || p.FormName() != "file" {
			g.fail(w, 400, "missing_required_parameter", fmt.Sprintf("no file: %v", err))
			return
		}
		h := sha256.New()
		n, err := io.Copy(h, p)
		if err != nil {
			g.fail(w, 400, "invalid_value", "cannot read the file")
			return
		}
		rc := received{filename: p.FileName(), contentType: p.Header.Get("Content-Type"), length: r.ContentLength, bytes: n}
		h.Sum(rc.sum[:0])
		g.mu.Lock()
		g.uploads = append(g.uploads, rc)
		id := len(g.uploads)
		g.mu.Unlock()
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"id":"doc%d","status":"indexed","chunk_count":1}`, id)
	default:
		g.fail(w, 404, "not_found", "no such thing")
	}
}

// received returns the uploads so far, by file name.
func (g *fakeGateway) received() map[string]received {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := make(map[string]received, len(g.uploads))
	for _, u := range g.uploads {
		m[u.filename] = u
	}
	return m
}

// ingestTo runs `ragway ingest` against gw with the key it accepts.
func ingestTo(t *testing.T, gw *fakeGateway, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	t.Setenv("RAGWAY_URL", "")
	t.Setenv("RAGWAY_API_KEY", "")
	return ragway(t, append([]string{"ingest", "--url", gw.URL, "--api-key", "k"}, args...)...)
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

// TestIngestStreamsLargeFiles uploads a 64 MiB file and checks that the CLI streams
// it: the whole process (CLI and the in-process gateway, which streams too)
// allocates a small fraction of the file, and the gateway is told its length up
// front.
func TestIngestStreamsLargeFiles(t *testing.T) {
	gw := newFakeGateway(t)
	const size = 64 << 20
	path := filepath.Join(t.TempDir(), "big.txt")
	sparseFile(t, path, size)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	stdout, stderr, err := ingestTo(t, gw, "--kb", "docs", "--max-bytes", strconv.Itoa(size+1<<20), path)
	runtime.ReadMemStats(&after)
	if err != nil || !strings.HasPrefix(stdout, "1 indexed") {
		t.Fatalf("error %v\nstdout %q\nstderr %q", err, stdout, stderr)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("uploading %d bytes allocated %d bytes: the file is not streamed", size, alloc)
	}
	u, ok := gw.received()["big.txt"]
	if !ok || u.bytes != size || u.sum != sha256.Sum256(make([]byte, size)) {
		t.Fatalf("received %+v", gw.received())
	}
	if u.length <= size || u.length > size+1024 {
		t.Errorf("Content-Length %d, want the body's length announced (the file's %d and the form's framing)", u.length, size)
	}
}

// TestIngestRefusesFilesAboveLimit checks that files whose upload exceeds --max-bytes
// are refused before they are read or sent, and that --max-bytes 0 leaves it to
// the gateway.
func TestIngestRefusesFilesAboveLimit(t *testing.T) {
	gw := newFakeGateway(t)
	gw.limit = 4 << 20
	dir := t.TempDir()
	write(t, dir, map[string]string{"small.md": "# Small"})
	sparseFile(t, filepath.Join(dir, "big.md"), 5<<20)
	sparseFile(t, filepath.Join(dir, "edge.md"), 4<<20) // the file fits, the form around it does not

	stdout, stderr, err := ingestTo(t, gw, "--kb", "docs", dir)
	if err == nil || err.Error() != "ingest: 2 of 3 files failed" {
		t.Errorf("error %v", err)
	}
	if got := slices.Sorted(mapKeys(gw.received())); !slices.Equal(got, []string{"small.md"}) {
		t.Errorf("the gateway received %q, want only small.md", got)
	}
	for _, want := range []string{
		"failed " + strconv.Quote(filepath.Join(dir, "big.md")) + ": 5242880 bytes: larger than the server's limit of 4194304 bytes (--max-bytes)",
		"failed " + strconv.Quote(filepath.Join(dir, "edge.md")) + ": 4194304 bytes and the upload's framing: larger than the server's limit of 4194304 bytes (--max-bytes)",
	} {
		if !strings.Contains(stderr, want+"\n") || !strings.Contains(stdout, want+"\n") {
			t.Errorf("stderr %q\nstdout %q\nlack %q", stderr, stdout, want)
		}
	}
	if !strings.HasPrefix(stdout, "1 indexed, 0 duplicates, 2 failed, 0 skipped: 1 chunk from 7 B") {
		t.Errorf("summary %q: the bytes are those sent", stdout)
	}

	// --max-bytes 0: every file is sent, the gateway refuses the two.
	stdout, _, err = ingestTo(t, gw, "--kb", "docs", "--max-bytes", "0", dir)
	if err == nil || err.Error() != "ingest: 2 of 3 files failed" {
		t.Errorf("--max-bytes 0: error %v", err)
	}
	for _, name := range []string{"big.md", "edge.md"} {
		line := lineWith(stdout, "failed "+strconv.Quote(filepath.Join(dir, name))+": ")
		if !strings.Contains(line, "limit") || strings.Contains(line, "tcp") || strings.Contains(line, "127.0.0.1") {
			t.Errorf("--max-bytes 0, %s: %q, want the gateway's limit named and no internals", name, line)
		}
	}

	help, _ := mustRagway(t, "ingest", "-h")
	if !strings.Contains(help, "-max-bytes") || !strings.Contains(help, "4194304") || !strings.Contains(help, "server.max_body_bytes") {
		t.Errorf("ingest -h does not explain --max-bytes and its default:\n%s", help)
	}
	if _, _, err := ingestTo(t, gw, "--kb", "docs", "--max-bytes", "-1", dir); err == nil || !strings.Contains(err.Error(), "--max-bytes -1") {
		t.Errorf("--max-bytes -1: %v", err)
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// lineWith returns the first line of s that contains sub ("" if none).
func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

// deepTree makes a chain of directories under dir whose full path is longer than
// the system allows (PATH_MAX, 4096 on Linux), with a file at the bottom: a
// subtree nobody, root included, can read by path.
func deepTree(t *testing.T, dir string) {
	t.Helper()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("d", 200)
	for range 24 { // 24 × 201 bytes
		if err := r.Mkdir(name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := r.OpenRoot(name)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		r = next
	}
	defer r.Close()
	if err := r.WriteFile("deep.md", []byte("# Deep"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestIngestHostileTree walks a directory with what breaks walkers: dangling links,
// link loops, a named pipe, a link to its own directory, two links to one
// directory, a link to a file, a subtree too deep to read, and a missing argument.
// Every readable file is uploaded once; every other path is listed with its reason;
// the exit says paths were skipped for an error.
func TestIngestHostileTree(t *testing.T) {
	gw := newFakeGateway(t)
	base := t.TempDir()
	tree, other := filepath.Join(base, "tree"), filepath.Join(base, "other")
	write(t, tree, map[string]string{"a.md": "# A", "z.md": "# Z", "deep/.keep": ""})
	write(t, other, map[string]string{"o.md": "# O"})
	for link, target := range map[string]string{
		"dangling.md": filepath.Join(base, "missing.md"),
		"loop1.md":    "loop2.md",
		"loop2.md":    "loop1.md",
		"self":        ".",
		"b-linked":    other,
		"c-again":     other,
		"link.md":     "a.md",
	} {
		if err := os.Symlink(target, filepath.Join(tree, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(tree, "pipe.md"), 0o644); err != nil {
		t.Fatal(err)
	}
	deepTree(t, filepath.Join(tree, "deep"))

	missing := filepath.Join(base, "nope")
	stdout, stderr, err := ingestTo(t, gw, "--kb", "docs", tree, missing, filepath.Join(tree, "pipe.md"))
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	if got := slices.Sorted(mapKeys(gw.received())); !slices.Equal(got, []string{"a.md", "o.md", "z.md"}) || len(gw.uploads) != 3 {
		t.Errorf("the gateway received %q (%d uploads), want a.md, o.md and z.md once each", got, len(gw.uploads))
	}
	if err == nil || err.Error() != "ingest: 6 paths skipped for an error" {
		t.Errorf("error %v, want 6 paths skipped for an error", err)
	}
	if !strings.HasPrefix(stdout, "3 indexed, 0 duplicates, 0 failed, 11 skipped: ") {
		t.Errorf("summary %q", stdout)
	}
	q := func(p ...string) string { return strconv.Quote(filepath.Join(p...)) }
	for _, want := range []string{
		"skipped " + q(tree, "dangling.md") + ": a dangling symbolic link (to " + q(base, "missing.md") + ", which does not exist)",
		"skipped " + q(tree, "loop1.md") + ": a symbolic link loop",
		"skipped " + q(tree, "loop2.md") + ": a symbolic link loop",
		"skipped " + q(tree, "pipe.md") + ": not a regular file (a named pipe)",
		"skipped " + q(tree, "pipe.md") + ": not a regular file or a directory (a named pipe)",
		"skipped " + q(tree, "self") + ": a link to a directory that contains it (a loop)",
		"skipped " + q(tree, "c-again") + ": the same directory as " + q(tree, "b-linked"),
		"skipped " + q(tree, "link.md") + ": the same file as " + q(tree, "a.md"),
		"skipped " + q(tree, "deep", ".keep") + ": hidden",
		"skipped " + q(missing) + ": no such file or directory",
	} {
		if !strings.Contains(stdout, "\n"+want+"\n") {
			t.Errorf("stdout lacks the line %q", want)
		}
	}
	deepDir := strings.TrimSuffix(strconv.Quote(filepath.Join(tree, "deep", strings.Repeat("d", 200))), `"`) + "/"
	if deep := lineWith(stdout, "skipped "+deepDir); !strings.HasSuffix(deep, `": cannot read the directory: file name too long`) {
		t.Errorf("the too-deep subtree: %q", deep)
	}
}

// TestIngestHostileNames uploads real files whose names hold newlines, tabs, quotes,
// backslashes, escape sequences and bytes that are not UTF-8: each is uploaded with
// a name the gateway decodes to valid UTF-8 without control characters, and the
// CLI prints each unambiguously (quoted).
func TestIngestHostileNames(t *testing.T) {
	gw := newFakeGateway(t)
	dir := t.TempDir()
	names := map[string]string{ // on disk → as the gateway should see it
		"new\nline.md":   "new\uFFFDline.md",
		"cr\r\nlf.md":    "cr\uFFFD\uFFFDlf.md",
		"tab\there.md":   "tab\uFFFDhere.md",
		`quote".md`:      `quote".md`,
		`"both" "".txt`:  `"both" "".txt`,
		`back\slash.md`:  `back\slash.md`,
		"bad\xff\xfe.md": "bad\uFFFD\uFFFD.md",
		"esc\x1b[2J.md":  "esc\uFFFD[2J.md",
		"nul-ish\x7f.md": "nul-ish\uFFFD.md",
		"c1\u0085.md":    "c1\uFFFD.md",
		"ls\u2028.md":    "ls\uFFFD.md",
		"网关 文档.md":       "网关 文档.md",
	}
	content := map[string]string{}
	for name := range names {
		content[name] = "# " + strconv.Quote(name)
	}
	write(t, dir, content)

	stdout, stderr, err := ingestTo(t, gw, "--kb", "docs", dir)
	if err != nil || !strings.HasPrefix(stdout, fmt.Sprintf("%d indexed, 0 duplicates, 0 failed, 0 skipped", len(names))) {
		t.Fatalf("error %v\nstdout %q\nstderr %q", err, stdout, stderr)
	}
	got := gw.received()
	for disk, sent := range names {
		u, ok := got[sent]
		if !ok {
			t.Errorf("%q: the gateway received no file named %q (got %q)", disk, sent, slices.Sorted(mapKeys(got)))
			continue
		}
		if u.sum != sha256.Sum256([]byte(content[disk])) || u.contentType != ingestTypes[filepath.Ext(disk)] {
			t.Errorf("%q: received %+v", disk, u)
		}
		if want := "indexed " + strconv.Quote(filepath.Join(dir, disk)) + " (1 chunk)\n"; !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	for _, l := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		if !strings.HasPrefix(l, `indexed "`) {
			t.Errorf("stderr line %q: a name broke the output", l)
		}
	}
	if strings.ContainsAny(stderr+stdout, "\x1b\r\t\x7f") {
		t.Errorf("raw control characters in the output:\n%q\n%q", stdout, stderr)
	}
}

// TestIngestKnowledgeBaseNames checks that names with spaces and CJK are escaped as
// one path segment in every request, on the run that creates them and on the
// runs after (which look them up by name), and that a name the gateway refuses
// at creation is reported with the gateway's reason.
func TestIngestKnowledgeBaseNames(t *testing.T) {
	gw := newFakeGateway(t)
	dir := t.TempDir()
	write(t, dir, map[string]string{"a.md": "# A"})
	for _, name := range []string{"my docs", "文档", "100% sure?#"} {
		for run, args := range [][]string{{"--create"}, {"--create"}, nil} {
			stdout, stderr, err := ingestTo(t, gw, append([]string{"--kb", name, filepath.Join(dir, "a.md")}, args...)...)
			if err != nil || !strings.HasPrefix(stdout, "1 indexed") {
				t.Errorf("--kb %q, run %d: error %v\nstdout %q\nstderr %q", name, run+1, err, stdout, stderr)
			}
		}
		if want := "/v1/knowledge-bases/" + url.PathEscape(name); !slices.Contains(gw.paths, want) {
			t.Errorf("--kb %q: no request for %s in %q", name, want, gw.paths)
		}
	}
	_, _, err := ingestTo(t, gw, "--kb", "a/b", "--create", dir)
	if err == nil || err.Error() != `ingest: cannot create the knowledge base "a/b": invalid value for 'name': 'a/b'; a name may not contain '/'` {
		t.Errorf("--kb a/b --create: %v", err)
	}
	_, _, err = ingestTo(t, gw, "--kb", "no such\nbase", dir)
	if err == nil || err.Error() != `ingest: you have no knowledge base "no such\nbase" (--create makes it)` {
		t.Errorf("a missing knowledge base: %v", err)
	}
}
