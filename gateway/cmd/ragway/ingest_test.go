package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestIngestArgs(t *testing.T) {
	t.Setenv("RAGWAY_URL", "")
	t.Setenv("RAGWAY_API_KEY", "")
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no kb", []string{"ingest", "docs"}, "ingest: --kb is required"},
		{"no path", []string{"ingest", "--kb", "docs"}, "ingest: missing argument (PATH..."},
		{"bad concurrency", []string{"ingest", "--kb", "docs", "--concurrency", "0", "."}, "--concurrency 0: want 1 to 64"},
		{"bad url", []string{"ingest", "--kb", "docs", "--url", "localhost:8080", "."}, `bad gateway URL "localhost:8080"`},
		{"bad max-bytes", []string{"ingest", "--kb", "docs", "--max-bytes", "-5", "."}, "--max-bytes -5: want the gateway's limit in bytes, or 0 for none"},
		{"unknown flag", []string{"ingest", "--kb", "docs", "--force", "."}, "flag provided but not defined: -force"},
		{"reindex without kb", []string{"reindex"}, "reindex: --kb is required"},
		{"reindex by name alone", []string{"reindex", "--kb", "docs"}, "--kb docs is a name, and names are per user: add --user NAME"},
		{"reindex argument", []string{"reindex", "--kb", "docs", "now"}, `unexpected argument "now"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stdout, _, err := ragway(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ragway %q: error %v, want it to contain %q", tt.args, err, tt.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
}

func TestReindexEmbedded(t *testing.T) {
	t.Setenv("RAGWAY_VECTOR_STORE_KIND", "embedded")
	stdout, _ := mustRagway(t, "reindex", "--kb", "0b6f2a4e-1f47-4d7a-9a51-3b3c1f0e2d11")
	if !strings.Contains(stdout, "embedded: every gateway rebuilds its index from the database at start; nothing to do") {
		t.Fatalf("stdout %q", stdout)
	}
}

func TestGatewayURL(t *testing.T) {
	for _, tt := range []struct{ flag, env, want string }{
		{"", "", "http://127.0.0.1:8080"},
		{"", "http://gw:9000/", "http://gw:9000"},
		{"https://gw.example/v1", "http://other", "https://gw.example"},
		{"http://gw/prefix/v1/", "", "http://gw/prefix"},
	} {
		if got, err := gatewayURL(tt.flag, tt.env); err != nil || got != tt.want {
			t.Errorf("gatewayURL(%q, %q) = %q, %v; want %q", tt.flag, tt.env, got, err, tt.want)
		}
	}
}

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestIngestFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{
		"a.md":             "# A",
		"b.TXT":            "b",
		"sub/c.html":       "<p>c</p>",
		"sub/d.pdf":        "%PDF-",
		"sub/deep/e.mdx":   "e",
		"sub/f.xhtml":      "f",
		"logo.png":         "png",
		"notes":            "no extension",
		".hidden.md":       "hidden",
		".git/HEAD.txt":    "in a hidden directory",
		"sub/.cache/x.txt": "in a hidden directory",
	})
	if err := os.Symlink(filepath.Join(dir, "a.md"), filepath.Join(dir, "sub", "link.md")); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "explicit.dat") // named: uploaded whatever its extension
	write(t, filepath.Dir(other), map[string]string{"explicit.dat": "12345"})

	files, skips := ingestFiles([]string{dir, other, filepath.Join(dir, "a.md"), filepath.Join(dir, "missing")})
	var got []string
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f.path)
		if f.path == other {
			rel = "explicit.dat"
			if f.size != 5 {
				t.Errorf("size of %s: %d", f.path, f.size)
			}
		}
		got = append(got, filepath.ToSlash(rel))
	}
	want := []string{"a.md", "b.TXT", "sub/c.html", "sub/d.pdf", "sub/deep/e.mdx", "sub/f.xhtml", "explicit.dat"}
	if !slices.Equal(got, want) {
		t.Errorf("files %q, want %q (a.md named twice: once; sub/link.md is a.md)", got, want)
	}
	var gotSkips []string
	for _, sk := range skips {
		rel, _ := filepath.Rel(dir, sk.path)
		gotSkips = append(gotSkips, fmt.Sprintf("%s: %s %v", filepath.ToSlash(rel), sk.reason, sk.err))
	}
	wantSkips := []string{
		".git: a hidden directory, not entered false",
		".hidden.md: hidden false",
		"logo.png: not a type ingest uploads false",
		"notes: not a type ingest uploads false",
		"sub/.cache: a hidden directory, not entered false",
		"sub/link.md: the same file as " + strconv.Quote(filepath.Join(dir, "a.md")) + " false",
		"missing: no such file or directory true",
	}
	if !slices.Equal(gotSkips, wantSkips) {
		t.Errorf("skipped\n%q, want\n%q", gotSkips, wantSkips)
	}
}

func TestIngestSummary(t *testing.T) {
	s := ingestSummary{skips: []skippedPath{{"logo.png", "not a type ingest uploads", false}, {"gone\n.md", "a dangling symbolic link", true}}, elapsed: 2 * time.Second}
	s.add(ingestResult{file: ingestFile{path: "b.md", size: 1_500_000}, sent: 1_500_000, outcome: outIndexed, chunks: 7})
	s.add(ingestResult{file: ingestFile{path: "c.md", size: 500_000}, sent: 500_000, outcome: outIndexed, chunks: 5})
	s.add(ingestResult{file: ingestFile{path: "d.md", size: 1000}, sent: 1000, outcome: outDuplicate})
	s.add(ingestResult{file: ingestFile{path: "z.md", size: 999_000}, sent: 999_000, outcome: outFailed, err: fmt.Errorf("broken")})
	s.add(ingestResult{file: ingestFile{path: "a\tbig.pdf", size: 9_000_000}, outcome: outFailed, err: fmt.Errorf("too large")})
	want := "2 indexed, 1 duplicate, 2 failed, 2 skipped: 12 chunks from 3.0 MB in 2s (1.50 MB/s)"
	if got := s.String(); got != want {
		t.Errorf("summary\n%q, want\n%q (the bytes are those sent)", got, want)
	}
	var details strings.Builder
	s.writeDetails(&details)
	wantDetails := `failed "a\tbig.pdf": too large
failed "z.md": broken
skipped "logo.png": not a type ingest uploads
skipped "gone\n.md": a dangling symbolic link
`
	if details.String() != wantDetails {
		t.Errorf("details\n%s\nwant\n%s", details.String(), wantDetails)
	}
	if err := s.exitError(5); err == nil || err.Error() != "ingest: 2 of 5 files failed, 1 path skipped for an error" {
		t.Errorf("exit error %v", err)
	}
	if err := (&ingestSummary{skips: s.skips[:1]}).exitError(3); err != nil {
		t.Errorf("a path skipped by rule: exit error %v, want none", err)
	}
	if got := (ingestSummary{}).String(); got != "0 indexed, 0 duplicates, 0 failed, 0 skipped: 0 chunks from 0 B in 0s (0.00 MB/s)" {
		t.Errorf("empty summary %q", got)
	}
	for n, want := range map[int64]string{999: "999 B", 12_345: "12.3 kB", 4_200_000: "4.2 MB", 3_000_000_000: "3.00 GB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for _, tt := range []struct {
		r    ingestResult
		want string
	}{
		{ingestResult{file: ingestFile{path: "docs/a.md"}, outcome: outIndexed, chunks: 12}, `indexed "docs/a.md" (12 chunks)`},
		{ingestResult{file: ingestFile{path: "docs/a.md"}, outcome: outIndexed, chunks: 1}, `indexed "docs/a.md" (1 chunk)`},
		{ingestResult{file: ingestFile{path: "docs/b.md"}, outcome: outDuplicate, docID: "d1"}, `duplicate "docs/b.md" (document d1)`},
		{ingestResult{file: ingestFile{path: "docs/c\n\xff.pdf"}, outcome: outFailed, err: fmt.Errorf("broken")}, `failed "docs/c\n\xff.pdf": broken`},
	} {
		if got := resultLine(shown(tt.r)); got != tt.want {
			t.Errorf("resultLine = %q, want %q", got, tt.want)
		}
	}
}

// TestIngestOutputHelpers checks the helpers that keep names and messages on one
// unambiguous line, and the reader that holds a body to its announced length.
func TestIngestOutputHelpers(t *testing.T) {
	for in, want := range map[string]string{
		"plain é 文档":         "plain é 文档",
		"two\nlines\r\tand":  `two\nlines\r\tand`,
		"bad \xff\xfe byte":  `bad \xff\xfe byte`,
		"esc \x1b[2J \u2028": `esc \x1b[2J \u2028`,
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
	if got := truncate("文档文档", 7); got != "文档…" {
		t.Errorf("truncate cut a character: %q", got)
	}
	for in, want := range map[string]string{
		"a\x00b\x7f\u0085\u2029.md": "a\uFFFDb\uFFFD\uFFFD\uFFFD.md",
		"\xe6\x96.md":               "\uFFFD\uFFFD.md", // a cut character: one U+FFFD a byte
		"ok \uFFFD 文档.md":           "ok \uFFFD 文档.md",
	} {
		if got := sendName(in); got != want {
			t.Errorf("sendName(%q) = %q, want %q", in, got, want)
		}
	}
	for _, tt := range []struct {
		content string
		n       int64
		want    error
	}{
		{"12345", 5, nil},
		{"123456", 5, errFileGrew},
		{"1234", 5, errFileShrank},
		{"", 0, nil},
	} {
		got, err := io.ReadAll(&exactReader{r: strings.NewReader(tt.content), n: tt.n})
		if !errors.Is(err, tt.want) || (err == nil && string(got) != tt.content) {
			t.Errorf("exactReader(%q, %d): %q, %v; want %v", tt.content, tt.n, got, err, tt.want)
		}
	}
}

func TestProgressBar(t *testing.T) {
	var buf bytes.Buffer
	b := &bar{w: &buf, width: 80, files: 4, bytes: 4000}
	b.started(ingestFile{path: "docs/很长的中文文件名称很长的中文文件名称.md", size: 1000})
	b.doneFiles, b.doneBytes, b.chunks = 1, 1000, 9
	line := b.line()
	if !strings.HasPrefix(line, "[=====>              ] 1/4 files  1.0 kB/4.0 kB  9 chunks  …") || !strings.HasSuffix(line, "文件名称.md") {
		t.Errorf("line %q", line)
	}
	if columns(line) > 79 || columns(line) < 78 {
		t.Errorf("line %q is %d columns, want 78 or 79 (full)", line, columns(line))
	}
	b.width = 50 // no room for the file
	if line := b.line(); columns(line) > 49 || strings.Contains(line, "docs") {
		t.Errorf("line %q at 50 columns", line)
	}
	b.done(ingestResult{file: ingestFile{path: "docs/很长的中文文件名称很长的中文文件名称.md", size: 1000}, outcome: outDuplicate, docID: "d1"})
	if !strings.Contains(buf.String(), "\r\033[Kduplicate docs/") || len(b.current) != 0 {
		t.Errorf("a duplicate above the bar: %q, current %q", buf.String(), b.current)
	}
	if got := truncateColumns("short", 10); got != "short" {
		t.Errorf("truncateColumns = %q", got)
	}
}

// fakeKB is a stand-in for the gateway's knowledge-base API.
func fakeKB(t *testing.T) (*httptest.Server, *sync.Map) {
	var uploaded sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(status int, code, msg string) {
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": "invalid_request_error", "code": code}})
		}
		if r.Header.Get("Authorization") != "Bearer k" {
			fail(401, "invalid_api_key", "incorrect API key")
			return
		}
		switch {
		case r.Method == "POST" && r.URL.Path == "/v1/knowledge-bases":
			fail(409, "conflict", "you already have a knowledge base named 'docs'")
		case r.Method == "GET" && r.URL.Path == "/v1/knowledge-bases/docs":
			fmt.Fprint(w, `{"id":"kb1","name":"docs"}`)
		case r.Method == "POST" && r.URL.Path == "/v1/knowledge-bases/kb1/documents" && r.URL.Query().Get("wait") == "true":
			f, fh, err := r.FormFile("file")
			if err != nil {
				fail(400, "missing_required_parameter", "no file")
				return
			}
			f.Close()
			uploaded.Store(fh.Filename, fh.Header.Get("Content-Type"))
			switch {
			case strings.HasPrefix(fh.Filename, "dup"):
				fail(409, "duplicate_document", "this knowledge base already has this content: document 'doc0' (Dup)")
			case strings.HasPrefix(fh.Filename, "bad"):
				fail(400, "invalid_value", `invalid text: "bad.txt" is not valid UTF-8`)
			case strings.HasPrefix(fh.Filename, "empty"):
				w.WriteHeader(201)
				fmt.Fprint(w, `{"id":"doc9","status":"failed","error":"the document has no text","chunk_count":0}`)
			default:
				w.WriteHeader(201)
				fmt.Fprint(w, `{"id":"doc1","status":"indexed","chunk_count":2}`)
			}
		default:
			fail(404, "not_found", "no such thing")
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &uploaded
}

func TestIngestAgainstFakeGateway(t *testing.T) {
	srv, uploaded := fakeKB(t)
	t.Setenv("RAGWAY_URL", srv.URL)
	t.Setenv("RAGWAY_API_KEY", "k")
	dir := t.TempDir()
	write(t, dir, map[string]string{"a.md": "# A", "b.html": "<p>b</p>", "dup.txt": "d", "logo.png": "p"})

	stdout, stderr := mustRagway(t, "ingest", "--kb", "docs", "--create", "--concurrency", "3", dir)
	if !strings.HasPrefix(stdout, "2 indexed, 1 duplicate, 0 failed, 1 skipped: 4 chunks from ") {
		t.Errorf("stdout %q", stdout)
	}
	for _, want := range []string{"indexed " + strconv.Quote(filepath.Join(dir, "a.md")) + " (2 chunks)\n", "duplicate " + strconv.Quote(filepath.Join(dir, "dup.txt")) + " (document doc0)\n"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q lacks %q", stderr, want)
		}
	}
	if ct, _ := uploaded.Load("b.html"); ct != "text/html" {
		t.Errorf("b.html sent as %v", ct)
	}

	write(t, dir, map[string]string{"bad.txt": "x", "empty.md": ""})
	stdout, stderr, err := ragway(t, "ingest", "--kb", "docs", filepath.Join(dir, "bad.txt"), filepath.Join(dir, "empty.md"), filepath.Join(dir, "a.md"))
	if err == nil || err.Error() != "ingest: 2 of 3 files failed" {
		t.Errorf("error %v", err)
	}
	if !strings.HasPrefix(stdout, "1 indexed, 0 duplicates, 2 failed, 0 skipped") ||
		!strings.Contains(stderr, "failed "+strconv.Quote(filepath.Join(dir, "bad.txt"))+`: invalid text: "bad.txt" is not valid UTF-8`) ||
		!strings.Contains(stderr, "failed "+strconv.Quote(filepath.Join(dir, "empty.md"))+": not indexed: the document has no text") {
		t.Errorf("stdout %q\nstderr %q", stdout, stderr)
	}

	t.Setenv("RAGWAY_API_KEY", "wrong")
	_, _, err = ragway(t, "ingest", "--kb", "docs", dir)
	if err == nil || !strings.Contains(err.Error(), "the gateway refused the API key (incorrect API key): check RAGWAY_API_KEY") {
		t.Errorf("a wrong key: %v", err)
	}
	t.Setenv("RAGWAY_API_KEY", "")
	_, _, err = ragway(t, "ingest", "--kb", "docs", dir)
	if err == nil || !strings.Contains(err.Error(), "no API key was given: set RAGWAY_API_KEY or --api-key") {
		t.Errorf("no key: %v", err)
	}
	_, _, err = ragway(t, "ingest", "--kb", "other", "--api-key", "k", dir)
	if err == nil || !strings.Contains(err.Error(), `you have no knowledge base "other" (--create makes it)`) {
		t.Errorf("a missing knowledge base: %v", err)
	}
}
