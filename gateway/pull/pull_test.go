package pull

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hub mimics the Hugging Face layout on loopback: /{org}/{repo}/resolve/{rev}/{file}
// answers 302 to a storage server (another host) with X-Linked-Etag (the SHA-256)
// and X-Linked-Size; the storage serves the bytes with ranges and an ETag, and may
// drop the connection in the middle of a body.
type hub struct {
	t       *testing.T
	files   map[string][]byte // by resolve path
	hub     *httptest.Server
	storage *httptest.Server
	dropAt  atomic.Int64 // > 0: the next GET from byte 0 is cut after that many bytes
	mu      sync.Mutex
	ranges  []string // Range headers the storage saw
	auth    []string // Authorization headers: "hub:…" or "storage:…"
	publish bool     // send X-Linked-Etag
}

func newHub(t *testing.T) *hub {
	h := &hub{t: t, files: map[string][]byte{}, publish: true}
	h.storage = httptest.NewServer(http.HandlerFunc(h.serveStorage))
	h.hub = httptest.NewServer(http.HandlerFunc(h.serveHub))
	t.Cleanup(func() { h.hub.Close(); h.storage.Close() })
	return h
}

func (h *hub) serveHub(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.auth = append(h.auth, "hub:"+r.Header.Get("Authorization"))
	h.mu.Unlock()
	data, ok := h.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	sum := sha256.Sum256(data)
	if h.publish {
		w.Header().Set("X-Linked-Etag", `"`+hex.EncodeToString(sum[:])+`"`)
		w.Header().Set("X-Linked-Size", fmt.Sprint(len(data)))
	}
	http.Redirect(w, r, h.storage.URL+"/blob"+r.URL.Path, http.StatusFound)
}

func (h *hub) serveStorage(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.auth = append(h.auth, "storage:"+r.Header.Get("Authorization"))
	if r.Method == http.MethodGet {
		h.ranges = append(h.ranges, r.Header.Get("Range"))
	}
	h.mu.Unlock()
	data, ok := h.files[strings.TrimPrefix(r.URL.Path, "/blob")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	sum := sha256.Sum256(data)
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
	if n := h.dropAt.Load(); n > 0 && r.Method == http.MethodGet && r.Header.Get("Range") == "" {
		h.dropAt.Store(0)
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(data[:n])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // the connection drops mid-file
		}
		return
	}
	http.ServeContent(w, r, "model.gguf", time.Unix(1700000000, 0), bytes.NewReader(data))
}

func (h *hub) add(path string, size int) []byte {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	h.files[path] = data
	return data
}

func sumOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestPullResumesAfterADroppedConnection(t *testing.T) {
	h := newHub(t)
	data := h.add("/org/repo/resolve/main/tiny.gguf", 3<<20)
	h.dropAt.Store(1 << 20)
	dir := t.TempDir()
	var last atomic.Int64
	res, err := Pull(context.Background(), "hf:org/repo/tiny.gguf", Options{Dir: dir, HFEndpoint: h.hub.URL, HFToken: "hf_secret",
		Progress: func(done, total int64) {
			if total != int64(len(data)) {
				t.Errorf("progress total %d, want %d", total, len(data))
			}
			last.Store(done)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.SHA256 != sumOf(data) || res.Bytes != int64(len(data)) || res.Path != filepath.Join(dir, "tiny.gguf") {
		t.Fatalf("result %+v", res)
	}
	got, _ := os.ReadFile(res.Path)
	if !bytes.Equal(got, data) || last.Load() != int64(len(data)) {
		t.Fatalf("file of %d bytes (progress %d), want %d", len(got), last.Load(), len(data))
	}
	// The second GET asked for the rest only.
	if len(h.ranges) != 2 || h.ranges[1] != fmt.Sprintf("bytes=%d-", 1<<20) {
		t.Fatalf("ranges asked: %q", h.ranges)
	}
	// The token went to the hub, never to the storage it redirects to.
	for _, a := range h.auth {
		if strings.HasPrefix(a, "storage:") && a != "storage:" || strings.HasPrefix(a, "hub:") && a != "hub:Bearer hf_secret" {
			t.Fatalf("authorization headers: %q", h.auth)
		}
	}
	if _, err := os.Stat(res.Path + ".part"); !os.IsNotExist(err) {
		t.Fatal("the .part file is left")
	}
	// Pulled again: nothing downloaded.
	before := len(h.ranges)
	if _, err := Pull(context.Background(), "hf:org/repo/tiny.gguf", Options{Dir: dir, HFEndpoint: h.hub.URL}); err != nil || len(h.ranges) != before {
		t.Fatalf("pulling a file there already: %v, %d more downloads", err, len(h.ranges)-before)
	}
}

func TestPullResumesAnInterruptedPull(t *testing.T) {
	h := newHub(t)
	data := h.add("/org/repo/resolve/v2/big.gguf", 4<<20)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Pull(ctx, "hf:org/repo/big.gguf@v2", Options{Dir: dir, HFEndpoint: h.hub.URL,
		Progress: func(done, _ int64) {
			if done >= 2<<20 {
				cancel() // the user pressed Ctrl-C
			}
		}})
	if err == nil || !strings.Contains(err.Error(), "pull again to resume") {
		t.Fatalf("an interrupted pull: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, "big.gguf.part"))
	if err != nil || fi.Size() < 2<<20 {
		t.Fatalf("the part kept: %v, %v", fi, err)
	}
	res, err := Pull(context.Background(), "hf:org/repo/big.gguf@v2", Options{Dir: dir, HFEndpoint: h.hub.URL})
	if err != nil || !res.Resumed || res.SHA256 != sumOf(data) {
		t.Fatalf("the resumed pull: %+v, %v", res, err)
	}
	if last := h.ranges[len(h.ranges)-1]; last != fmt.Sprintf("bytes=%d-", fi.Size()) {
		t.Fatalf("the resumption asked %q, want the rest from %d", last, fi.Size())
	}
}

func TestPullRefusesAWrongChecksum(t *testing.T) {
	h := newHub(t)
	data := h.add("/org/repo/resolve/main/m.gguf", 1<<20)
	dir := t.TempDir()
	wrong := strings.Repeat("ab", 32)
	// Given and published disagree: nothing is downloaded.
	_, err := Pull(context.Background(), "hf:org/repo/m.gguf", Options{Dir: dir, HFEndpoint: h.hub.URL, SHA256: wrong})
	if err == nil || !strings.Contains(err.Error(), "is not the one the server publishes") || len(h.ranges) != 0 {
		t.Fatalf("a checksum the hub contradicts: %v (%d downloads)", err, len(h.ranges))
	}
	// Nothing published: the bytes are checked against the one given, and refused.
	h.publish = false
	_, err = Pull(context.Background(), h.storage.URL+"/blob/org/repo/resolve/main/m.gguf", Options{Dir: dir, SHA256: wrong})
	if err == nil || !strings.Contains(err.Error(), "the file is refused") {
		t.Fatalf("a wrong checksum: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 || entries[0].Name() != "m.gguf.lock" {
		t.Fatalf("left in the models directory: %v (want only the lock file)", entries)
	}
	// Nothing published and nothing given: refused, unless asked to skip.
	_, err = Pull(context.Background(), h.storage.URL+"/blob/org/repo/resolve/main/m.gguf", Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "publishes no SHA-256") {
		t.Fatalf("no checksum at all: %v", err)
	}
	res, err := Pull(context.Background(), h.storage.URL+"/blob/org/repo/resolve/main/m.gguf", Options{Dir: dir, SHA256: SkipVerify})
	if err != nil || res.SHA256 != sumOf(data) {
		t.Fatalf("unchecked: %+v, %v", res, err)
	}
	// The right one given.
	if _, err := Pull(context.Background(), h.storage.URL+"/blob/org/repo/resolve/main/m.gguf", Options{Dir: t.TempDir(), SHA256: sumOf(data)}); err != nil {
		t.Fatal(err)
	}
}

func TestResolve(t *testing.T) {
	for _, c := range []struct{ src, url, name, err string }{
		{"hf:org/repo/model.Q4_K_M.gguf", "https://huggingface.co/org/repo/resolve/main/model.Q4_K_M.gguf", "model.Q4_K_M.gguf", ""},
		{"hf:org/repo/sub/dir/m.gguf@v1.0", "https://huggingface.co/org/repo/resolve/v1.0/sub/dir/m.gguf", "m.gguf", ""},
		{"https://example.com/x/m.gguf?download=1", "https://example.com/x/m.gguf?download=1", "m.gguf", ""},
		{"hf:org/repo", "", "", "want hf:ORG/REPO/FILE.gguf"},
		{"hf:org/repo/../../etc/m.gguf", "", "", "not a valid name"},
		{"hf:org/repo/m.bin", "", "", ".gguf file"},
		{"hf:org/repo/m.gguf@../x", "", "", "revision"},
		{"https://user:pw@example.com/m.gguf", "", "", "credentials"},
		{"ftp://example.com/m.gguf", "", "", "http(s) URL"},
		{"https://example.com/", "", "", ".gguf file name"},
		// Only the last segment names the file: it cannot leave the models directory.
		{"https://example.com/..%2F..%2Fetc%2Fm.gguf", "https://example.com/..%2F..%2Fetc%2Fm.gguf", "m.gguf", ""},
	} {
		s, err := Resolve(c.src, "")
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("Resolve(%q) = %+v, %v; want an error with %q", c.src, s, err, c.err)
		case c.err == "" && (err != nil || s.URL != c.url || s.Name != c.name):
			t.Errorf("Resolve(%q) = %+v, %v; want %s as %s", c.src, s, err, c.url, c.name)
		}
	}
	if s, err := Resolve("hf:a/b/c.gguf", "http://127.0.0.1:9/mirror/"); err != nil || s.URL != "http://127.0.0.1:9/mirror/a/b/resolve/main/c.gguf" {
		t.Fatalf("a mirror: %+v, %v", s, err)
	}
}

// TestPullBoundsHostileServers: a body without a size that never ends stops at the
// limit; a body that stalls is resumed; a second pull of the same file is refused
// while one runs; a file of the same name and another content is kept unless forced.
func TestPullBoundsHostileServers(t *testing.T) {
	var stalled atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/endless.gguf":
			if r.Method == http.MethodHead {
				return
			}
			w.WriteHeader(http.StatusOK)
			buf := make([]byte, 64<<10)
			for {
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
		case "/stall.gguf":
			data := bytes.Repeat([]byte("s"), 1<<20)
			if r.Method == http.MethodGet && r.Header.Get("Range") == "" && !stalled.Swap(true) {
				w.Header().Set("Content-Length", fmt.Sprint(len(data)))
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write(data[:1000])
				w.(http.Flusher).Flush()
				<-r.Context().Done() // then nothing
				return
			}
			w.Header().Set("ETag", `"s1"`)
			http.ServeContent(w, r, "s.gguf", time.Unix(1700000000, 0), bytes.NewReader(data))
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	_, err := Pull(context.Background(), srv.URL+"/endless.gguf", Options{Dir: dir, SHA256: SkipVerify, MaxBytes: 4 << 20})
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("an endless body: %v", err)
	}
	res, err := Pull(context.Background(), srv.URL+"/stall.gguf", Options{Dir: dir, SHA256: SkipVerify, Stall: 300 * time.Millisecond})
	if err != nil || !res.Resumed || res.Bytes != 1<<20 {
		t.Fatalf("a stalled body: %+v, %v", res, err)
	}
	// Another content under the same name: kept, unless forced.
	other := bytes.Repeat([]byte("o"), 10)
	if err := os.WriteFile(filepath.Join(dir, "stall.gguf"), other, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(context.Background(), srv.URL+"/stall.gguf", Options{Dir: dir, SHA256: sumOf(bytes.Repeat([]byte("s"), 1<<20))}); err == nil ||
		!strings.Contains(err.Error(), "exists with another content") {
		t.Fatalf("overwriting another file: %v", err)
	}
	if _, err := Pull(context.Background(), srv.URL+"/stall.gguf", Options{Dir: dir, SHA256: sumOf(bytes.Repeat([]byte("s"), 1<<20)), Force: true}); err != nil {
		t.Fatalf("forced: %v", err)
	}
	// One pull of a file at a time.
	unlock, err := lockFile(filepath.Join(dir, "busy.gguf.lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := Pull(context.Background(), srv.URL+"/busy.gguf", Options{Dir: dir, SHA256: SkipVerify}); err == nil || !strings.Contains(err.Error(), "being pulled already") {
		t.Fatalf("a second pull of one file: %v", err)
	}
}

// TestPullerShowsNoSecrets: a pull's source is shown without its query (a token or a
// signature), its error without the models directory's path, and pulls beyond the
// most at once are refused.
func TestPullerShowsNoSecrets(t *testing.T) {
	dir := t.TempDir()
	p := &Puller{Options: Options{Dir: dir}}
	j, err := p.Start("http://127.0.0.1:1/a/m.gguf?token=secret", "")
	if err != nil || strings.Contains(j.Source, "secret") {
		t.Fatalf("Start = %+v, %v", j, err)
	}
	for range 100 {
		if p.Jobs()[0].Status != JobDownloading {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := p.Jobs()[0]; got.Status != JobFailed || strings.Contains(got.Error, dir) || strings.Contains(got.Error, "secret") {
		t.Fatalf("a failed pull: %+v", got)
	}
	// At most maxRunning at once: hold them running on a server that never answers.
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p = &Puller{Options: Options{Dir: dir}, Context: ctx}
	for i := range maxRunning {
		if _, err := p.Start(fmt.Sprintf("%s/m%d.gguf", hang.URL, i), SkipVerify); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Start(hang.URL+"/one-more.gguf", SkipVerify); !errors.Is(err, ErrBusy) {
		t.Fatalf("a pull beyond %d at once: %v", maxRunning, err)
	}
	cancel() // the gateway stops: the pulls end before the directory goes
	for slices.ContainsFunc(p.Jobs(), func(j Job) bool { return j.Status == JobDownloading }) {
		time.Sleep(10 * time.Millisecond)
	}
}
