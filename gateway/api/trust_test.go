package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/api"
	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/knowledge"
	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/vectorstore/embedded"
	"github.com/ragway/ragway/internal/pgtest"
)

// realServer serves the API with the real store, keys and knowledge-base routes
// (sparse retrieval over the embedded index) on a fresh database.
type realServer struct {
	*testServer
	st *store.Store
}

func startReal(t testing.TB, opts api.Options) *realServer {
	t.Helper()
	return startRealWith(t, opts, knowledge.Options{})
}

// startRealWith is startReal with background indexing's Context and Indexing from ko.
func startRealWith(t testing.TB, opts api.Options, ko knowledge.Options) *realServer {
	t.Helper()
	st, err := store.Open(pgtest.Database(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	vs := embedded.New()
	t.Cleanup(func() { vs.Close() })
	opts.Gate = &auth.Gate{Auth: auth.New(st, auth.Options{Logger: quietLogger()}), Limiter: auth.NewLimiter(time.Now)}
	opts = withStore(st, opts)
	ragSvc := &rag.Service{KBs: st, TopK: 4, Logger: quietLogger(), Retriever: &rag.Retriever{Vectors: vs, Chunks: st}}
	opts.Chat.RAG = ragSvc
	maxBytes := opts.MaxBodyBytes // documents are bounded like bodies, as the gateway does
	if maxBytes <= 0 {
		maxBytes = api.DefaultMaxBodyBytes
	}
	opts.Knowledge = knowledge.New(knowledge.Options{Store: st, Indexer: &rag.Indexer{Store: st, Vectors: vs}, Retriever: ragSvc.Retriever,
		TopK: ragSvc.TopK, MaxBytes: int64(maxBytes), Context: ko.Context, Indexing: ko.Indexing, Logger: quietLogger()})
	fake := newFake()
	return &realServer{testServer: startWith(t, fake, fake, opts), st: st}
}

// key creates a user (if new) and an API key of theirs with scopes.
func (s *realServer) key(t testing.TB, user string, scopes ...string) string {
	t.Helper()
	ctx := context.Background()
	u, err := s.st.EnsureUser(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	k, prefix, hash, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.st.CreateAPIKey(ctx, store.NewAPIKey{UserID: u.ID, Prefix: prefix, Hash: hash, Name: "test", Scopes: scopes}); err != nil {
		t.Fatal(err)
	}
	return k
}

// send sends a request with key and returns the response, read.
func (s *realServer) send(t testing.TB, method, path, key, contentType string, body []byte, header ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// upload builds a multipart body with a file and, when title is set, a title field.
func upload(t testing.TB, filename, title, text string) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	if title != "" {
		if err := w.WriteField("title", title); err != nil {
			t.Fatal(err)
		}
	}
	f, err := w.CreateFormFile("file", filename)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(f, text); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.FormDataContentType(), b.Bytes()
}

// TestNothingOfARequestOutlivesIt reproduces the cross-user leak of issue 11: documents
// uploaded without ?wait=true are indexed by a background goroutine, after their
// handler returned, while other users' requests carrying their API keys (in the URL, as
// a WebSocket upgrade's ?api_key= does, and in headers) reuse the server's request
// buffers. Every stored title, heading, source and chunk text must be exactly what
// was sent. Run it with -race too (task test does).
func TestNothingOfARequestOutlivesIt(t *testing.T) {
	s := startReal(t, api.Options{})
	owner := s.key(t, "owner", store.ScopeIngest, store.ScopeChat)
	var others []string
	for i := range 4 {
		others = append(others, s.key(t, fmt.Sprintf("other%d", i), store.ScopeChat))
	}
	if code, b := s.send(t, "POST", "/v1/knowledge-bases", owner, "application/json", []byte(`{"name":"docs"}`)); code != 201 {
		t.Fatalf("create: %d %s", code, b)
	}

	// Other users hammer the server with their keys while the documents are indexed.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, k := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var req *http.Request
				if n%2 == 0 {
					req, _ = http.NewRequest("GET", s.url+"/v1/ws?api_key="+k+"&pad="+strings.Repeat(k, 4), nil)
				} else {
					req, _ = http.NewRequest("GET", s.url+"/v1/models?title="+k+"&q="+strings.Repeat(k, 8), nil)
					req.Header.Set("Authorization", "Bearer "+k)
					req.Header.Set("X-Other", fmt.Sprint(i, strings.Repeat(k, 16)))
				}
				if resp, err := c.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}

	// Documents whose titles come from the query string and from a form field, with
	// enough text that the one-at-a-time indexer has a queue.
	const docs = 24
	want := map[string][3]string{} // document id -> title, file name, text
	body := strings.Repeat("The gateway keeps answering while the database restarts. ", 400)
	for i := range docs {
		title := fmt.Sprintf("Title %02d of the owner, never anyone else's %s", i, strings.Repeat("x", 40))
		file := fmt.Sprintf("owner-%02d.txt", i)
		text := fmt.Sprintf("Document %d.\n\n%s", i, body)
		path := "/v1/knowledge-bases/docs/documents"
		formTitle := title
		if i%2 == 0 {
			path += "?title=" + strings.ReplaceAll(title, " ", "+")
			formTitle = ""
		}
		ct, b := upload(t, file, formTitle, text)
		code, resp := s.send(t, "POST", path, owner, ct, b)
		if code != 202 {
			t.Fatalf("upload %d: %d %s", i, code, resp)
		}
		var d struct{ ID, Title, Source string }
		decodeBytes(t, resp, &d)
		if d.Title != title || d.Source != file {
			t.Fatalf("upload %d answered title %q source %q", i, d.Title, d.Source)
		}
		want[d.ID] = [3]string{title, file, text}
	}
	waitIndexed(t, s, owner, "docs", docs)
	close(stop)
	wg.Wait()

	ctx := context.Background()
	kb, err := s.st.KnowledgeBase(ctx, mustUser(t, s, "owner"), "docs")
	if err != nil {
		t.Fatal(err)
	}
	chunks := 0
	err = s.st.EachKBChunks(ctx, kb.ID, 500, func(cs []store.Chunk) error {
		for _, c := range cs {
			w, ok := want[c.DocumentID]
			if !ok {
				return fmt.Errorf("a chunk of an unknown document %s", c.DocumentID)
			}
			if !strings.HasPrefix(c.Heading, w[0]) {
				return fmt.Errorf("document %s: chunk %d has heading %q; want it to start with the title %q", c.DocumentID, c.Ordinal, c.Heading, w[0])
			}
			if !strings.Contains(collapse(w[2]), collapse(c.Content)) {
				return fmt.Errorf("document %s: chunk %d text is not the document's: %q", c.DocumentID, c.Ordinal, c.Content)
			}
			for _, k := range others {
				if strings.Contains(c.Heading+c.Content, k[4:]) {
					return fmt.Errorf("document %s: chunk %d carries another user's key", c.DocumentID, c.Ordinal)
				}
			}
			chunks++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if chunks < docs {
		t.Fatalf("%d chunks for %d documents", chunks, docs)
	}
	for id, w := range want {
		code, b := s.send(t, "GET", "/v1/knowledge-bases/docs/documents/"+id, owner, "", nil)
		var d struct{ Title, Source, Status string }
		decodeBytes(t, b, &d)
		if code != 200 || d.Title != w[0] || d.Source != w[1] || d.Status != "indexed" {
			t.Fatalf("document %s: %d %+v; want title %q source %q", id, code, d, w[0], w[1])
		}
	}
	// Search answers with the chunks' own titles.
	code, b := s.send(t, "POST", "/v1/knowledge-bases/docs/search", owner, "application/json", []byte(`{"query":"database restarts","top_k":8}`))
	var hits struct {
		Data []struct {
			DocumentID string `json:"document_id"`
			Title      string
			Heading    string
		}
	}
	decodeBytes(t, b, &hits)
	if code != 200 || len(hits.Data) == 0 {
		t.Fatalf("search: %d %s", code, b)
	}
	for _, h := range hits.Data {
		if w := want[h.DocumentID]; h.Title != w[0] || !strings.HasPrefix(h.Heading, w[0]) {
			t.Fatalf("search hit %+v; want title %q", h, w[0])
		}
	}
}

func decodeBytes(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

// collapse joins s's words with single spaces.
func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }

func mustUser(t *testing.T, s *realServer, name string) string {
	t.Helper()
	u, err := s.st.UserByName(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}

// waitIndexed waits until n documents of kb are indexed.
func waitIndexed(t *testing.T, s *realServer, key, kb string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, b := s.send(t, "GET", "/v1/knowledge-bases/"+kb+"/documents?limit=200", key, "", nil)
		var l struct {
			Data []struct{ Status, Error string }
		}
		decodeBytes(t, b, &l)
		indexed := 0
		for _, d := range l.Data {
			switch d.Status {
			case "indexed":
				indexed++
			case "failed":
				t.Fatalf("a document failed to index: %s", d.Error)
			}
		}
		if indexed == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d documents indexed after a minute", indexed, n)
		}
		time.Sleep(50 * time.Millisecond) // polling the API: there is no signal to wait on
	}
}

// TestKnowledgeBaseNamesAndIDs: names are percent-decoded from paths, so any name a
// knowledge base may have is reachable by it; names that URLs cannot carry, or the
// database cannot store, are refused at creation naming the rule; a search filter's
// document ids are checked.
func TestKnowledgeBaseNamesAndIDs(t *testing.T) {
	s := startReal(t, api.Options{})
	key := s.key(t, "names", store.ScopeIngest, store.ScopeChat)
	for _, name := range []string{"my docs", "文档", "a/b", "100% sure?#"} {
		code, b := s.send(t, "POST", "/v1/knowledge-bases", key, "application/json", []byte(`{"name":`+jsonQuote(name)+`}`))
		if code != 201 {
			t.Fatalf("create %q: %d %s", name, code, b)
		}
		path := "/v1/knowledge-bases/" + url.PathEscape(name)
		code, b = s.send(t, "GET", path, key, "", nil)
		var kb struct{ Name string }
		decodeBytes(t, b, &kb)
		if code != 200 || kb.Name != name {
			t.Fatalf("GET %s: %d %s", path, code, b)
		}
		code, b = s.send(t, "POST", path+"/documents?wait=true", key, "application/json", []byte(`{"text":"Lanterns light the harbour."}`))
		if code != 201 {
			t.Fatalf("upload into %q: %d %s", name, code, b)
		}
		code, b = s.send(t, "POST", path+"/search", key, "application/json", []byte(`{"query":"lanterns"}`))
		if code != 200 || !strings.Contains(string(b), "Lanterns") {
			t.Fatalf("search %q: %d %s", name, code, b)
		}
	}
	for _, c := range []struct{ name, param, code string }{
		{"tab\there", "name", "invalid_value"},
		{"line\nbreak", "name", "invalid_value"},
		{"nul\u0000", "name", "invalid_value"},
		{".", "name", "invalid_value"},
		{"..", "name", "invalid_value"},
		{strings.Repeat("名", 201), "name", "invalid_value"},
	} {
		code, b := s.send(t, "POST", "/v1/knowledge-bases", key, "application/json", []byte(`{"name":`+jsonQuote(c.name)+`}`))
		checkErrorBody(t, b, "application/json", "invalid_request_error", c.code, c.param)
		if code != 400 {
			t.Fatalf("create %q: %d %s", c.name, code, b)
		}
	}
	// (net/http will not send a bad escape.)
	_, r := rawRequest(t, s.url, "GET /v1/knowledge-bases/bad%zzescape HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+key+"\r\n")
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkError(t, resp, 400, "invalid_request_error", "invalid_value", "kb")
	code, b := s.send(t, "POST", "/v1/knowledge-bases/"+url.PathEscape("my docs")+"/search", key, "application/json",
		[]byte(`{"query":"lanterns","filter":{"document_ids":["not-an-id"]}}`))
	checkErrorBody(t, b, "application/json", "invalid_request_error", "invalid_value", "filter.document_ids[0]")
	if code != 400 {
		t.Fatalf("a document id that is not one: %d %s", code, b)
	}
}

func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestBackgroundIndexingStopsWithTheGateway: a document uploaded without ?wait=true
// once the gateway's indexing context has ended is marked failed with a reason to
// upload it again, never left pending, and its goroutine is counted until it is done.
func TestBackgroundIndexingStopsWithTheGateway(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	var indexing sync.WaitGroup
	s := startRealWith(t, api.Options{}, knowledge.Options{Context: ctx, Indexing: &indexing})
	key := s.key(t, "owner", store.ScopeIngest)
	if code, b := s.send(t, "POST", "/v1/knowledge-bases", key, "application/json", []byte(`{"name":"docs"}`)); code != 201 {
		t.Fatalf("create: %d %s", code, b)
	}
	stop() // the gateway is stopping
	code, b := s.send(t, "POST", "/v1/knowledge-bases/docs/documents", key, "application/json", []byte(`{"text":"Late words."}`))
	if code != 202 {
		t.Fatalf("upload: %d %s", code, b)
	}
	var d struct{ ID string }
	decodeBytes(t, b, &d)
	indexing.Wait()
	_, b = s.send(t, "GET", "/v1/knowledge-bases/docs/documents/"+d.ID, key, "", nil)
	var got struct{ Status, Error string }
	decodeBytes(t, b, &got)
	if got.Status != "failed" || !strings.Contains(got.Error, "upload it again") {
		t.Fatalf("a document uploaded as the gateway stops: %+v", got)
	}
}
