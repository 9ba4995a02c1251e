package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// loopbackHub serves files in the Hugging Face resolve layout on loopback: a 302 from
// /{org}/{repo}/resolve/{rev}/{file} with X-Linked-Etag (the SHA-256) to a storage
// path serving ranges, whose first full download drops the connection half-way.
func loopbackHub(t *testing.T, files map[string][]byte) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var ranged atomic.Int64 // resumed downloads (Range requests)
	dropped := map[string]bool{}
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if blob, ok := strings.CutPrefix(r.URL.Path, "/storage"); ok {
			data, ok := files[blob]
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("ETag", `"v1"`)
			if r.Method == http.MethodGet && r.Header.Get("Range") == "" && !dropped[blob] {
				dropped[blob] = true
				w.Header().Set("Content-Length", fmt.Sprint(len(data)))
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write(data[:len(data)/2])
				w.(http.Flusher).Flush()
				if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
					conn.Close()
				}
				return
			}
			if r.Header.Get("Range") != "" {
				ranged.Add(1)
			}
			http.ServeContent(w, r, "f.gguf", time.Unix(1700000000, 0), bytes.NewReader(data))
			return
		}
		data, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		sum := sha256.Sum256(data)
		w.Header().Set("X-Linked-Etag", `"`+hex.EncodeToString(sum[:])+`"`)
		w.Header().Set("X-Linked-Size", fmt.Sprint(len(data)))
		http.Redirect(w, r, srv.URL+"/storage"+r.URL.Path, http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	return srv, &ranged
}

// TestModelsPull: `ragway models pull hf:…` downloads from a Hugging Face mirror
// (HF_ENDPOINT, here on loopback), resumes after a dropped connection, and refuses a
// wrong checksum; POST /admin/models/pull does the same in the gateway, and the
// pulled file serves as a llamacpp model named by its bare name.
func TestModelsPull(t *testing.T) {
	lib, model := llamaFixtures(t)
	gguf, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	hub, ranged := loopbackHub(t, map[string][]byte{
		"/ragway/demo/resolve/main/pulled.gguf": gguf,
		"/ragway/demo/resolve/main/other.gguf":  gguf,
	})
	models := t.TempDir()
	g := startGateway(t, echoModels)

	// The CLI, into a directory of its own.
	env := []string{"HF_ENDPOINT=" + hub.URL}
	cliDir := t.TempDir()
	out, err := g.cliEnv(env, "models", "pull", "hf:ragway/demo/pulled.gguf", "--dir", cliDir)
	if err != nil || !strings.Contains(out, "downloaded (resumed) pulled.gguf") || ranged.Load() != 1 {
		t.Fatalf("models pull: %q, %v (%d resumed downloads)", out, err, ranged.Load())
	}
	if got, _ := os.ReadFile(filepath.Join(cliDir, "pulled.gguf")); !bytes.Equal(got, gguf) {
		t.Fatal("the pulled file differs from the served one")
	}
	_, err = g.cliEnv(env, "models", "pull", "hf:ragway/demo/other.gguf", "--dir", cliDir, "--sha256", strings.Repeat("0", 64))
	if err == nil || !strings.Contains(err.Error(), "is not the one the server publishes") {
		t.Fatalf("a wrong checksum: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cliDir, "other.gguf")); !os.IsNotExist(err) {
		t.Fatal("a refused file is in the models directory")
	}

	// The admin API, into the gateway's models directory.
	// The libraries are the host's (the admin API may not name paths): by environment.
	g2 := startGatewayEnv(t, fmt.Sprintf("models_dir: %q\n", models), echoModels, append(env, "RAGWAY_LLAMA_LIB="+lib))
	code, body := g2.call("POST", "/admin/models/pull", g2.Key, `{"source":"hf:ragway/demo/pulled.gguf"}`)
	if code != http.StatusAccepted {
		t.Fatalf("POST /admin/models/pull: %d %s", code, body)
	}
	var pulls struct {
		Data []struct{ Status, Error, SHA256 string } `json:"data"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		g2.getJSON("/admin/models/pulls", g2.Key, &pulls)
		if len(pulls.Data) == 1 && pulls.Data[0].Status != "downloading" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	sum := sha256.Sum256(gguf)
	if len(pulls.Data) != 1 || pulls.Data[0].Status != "done" || pulls.Data[0].SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("the pull: %+v", pulls.Data)
	}
	code, body = g2.call("POST", "/admin/models/pull", g2.Key, `{"source":"hf:ragway/demo/../x.gguf"}`)
	wantAPIError(t, "a hostile source", code, body, http.StatusBadRequest, "invalid_value")

	entry, _ := json.Marshal(map[string]any{"name": "pulled", "backend": "llamacpp",
		"options": map[string]any{"model_path": "pulled", "threads": 1, "parallel": 1, "context_length": 256}})
	if code, body := g2.call("POST", "/admin/models", g2.Key, string(entry)); code != http.StatusCreated {
		t.Fatalf("adding the pulled model: %d %s", code, body)
	}
	code, body = g2.call("POST", "/v1/chat/completions", g2.Key, `{"model":"pulled","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`)
	if code != http.StatusOK || !strings.Contains(string(body), `"completion_tokens":4`) {
		t.Fatalf("a chat with the pulled model: %d %s", code, body)
	}
}
