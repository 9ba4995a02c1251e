package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/ingest/ingesttest"
	"github.com/ragway/ragway/gateway/vectorstore/qdrant/qdranttest"
	"github.com/ragway/ragway/internal/pgtest"
)

type kbDoc struct {
	ID         string `json:"id"`
	Title      string `json:"title"`
	Status     string `json:"status"`
	Error      string `json:"error"`
	ChunkCount int    `json:"chunk_count"`
}

type searchHit struct {
	N          int     `json:"n"`
	DocumentID string  `json:"document_id"`
	Title      string  `json:"title"`
	ChunkID    string  `json:"chunk_id"`
	Score      float64 `json:"score"`
	Text       string  `json:"text"`
}

func decode(t *testing.T, what string, status int, body []byte, want int, v any) {
	t.Helper()
	if status != want {
		t.Fatalf("%s: status %d (%s), want %d", what, status, body, want)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("%s: %v in %s", what, err, body)
		}
	}
}

// upload posts a multipart file to the knowledge base kb and waits for its indexing.
func (g *gateway) upload(t *testing.T, key, kb, name, contentType string, data []byte) (int, []byte) {
	t.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	h := make(map[string][]string)
	h["Content-Disposition"] = []string{`form-data; name="file"; filename="` + name + `"`}
	h["Content-Type"] = []string{contentType}
	part, err := w.CreatePart(h)
	if err != nil {
		t.Fatal(err)
	}
	part.Write(data)
	w.Close()
	req, _ := http.NewRequest("POST", g.URL+"/v1/knowledge-bases/"+kb+"/documents?wait=true", &body)
	req.Header.Set("Content-Type", w.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	out.ReadFrom(resp.Body)
	return resp.StatusCode, out.Bytes()
}

func (g *gateway) search(t *testing.T, key, kb, query string) []searchHit {
	t.Helper()
	var out struct{ Data []searchHit }
	code, body := g.call("POST", "/v1/knowledge-bases/"+kb+"/search", key, `{"query":`+jsonString(query)+`,"top_k":3}`)
	decode(t, "search "+query, code, body, 200, &out)
	return out.Data
}

func jsonString(s string) string { b, _ := json.Marshal(s); return string(b) }

func TestKnowledgeBases(t *testing.T) {
	g := startGateway(t, echoModels)
	bob := g.createKey("bob", "chat,ingest")

	code, body := g.call("POST", "/v1/knowledge-bases", g.Key, `{"name":"docs","description":"ops"}`)
	var kb struct{ ID, Name string }
	decode(t, "create", code, body, 201, &kb)
	code, body = g.call("POST", "/v1/knowledge-bases", g.Key, `{"name":"docs"}`)
	wantAPIError(t, "duplicate name", code, body, 409, "conflict")
	// Bob may use the same name.
	code, body = g.call("POST", "/v1/knowledge-bases", bob, `{"name":"docs"}`)
	decode(t, "bob's docs", code, body, 201, nil)

	md := "# Operations\n\n## Outages\n\nWhen Postgres is down the gateway answers 503 and reconnects by itself.\n\n## Keys\n\nAPI keys are stored as SHA-256 hashes and shown once.\n"
	code, body = g.call("POST", "/v1/knowledge-bases/docs/documents?wait=true", g.Key, `{"title":"Ops guide","format":"markdown","text":`+jsonString(md)+`}`)
	var doc kbDoc
	decode(t, "markdown document", code, body, 201, &doc)
	// Two short sections make one chunk (rag.Split joins sections that fit together).
	if doc.Status != "indexed" || doc.ChunkCount != 1 || doc.Title != "Ops guide" {
		t.Fatalf("document %+v", doc)
	}
	code, body = g.call("POST", "/v1/knowledge-bases/docs/documents", g.Key, `{"format":"markdown","text":`+jsonString(md)+`}`)
	wantAPIError(t, "the same content again", code, body, 409, "duplicate_document")

	html := `<html><head><title>网关手册</title><style>p{}</style><script>var x = "secret";</script></head>
<body><h1>网关</h1><p>数据库不可用时，网关返回503错误。数据库恢复后，网关会自动重新连接。</p></body></html>`
	code, body = g.upload(t, g.Key, kb.ID, "manual.html", "text/html", []byte(html))
	var hdoc kbDoc
	decode(t, "html upload", code, body, 201, &hdoc)
	if hdoc.Status != "indexed" || hdoc.Title != "网关手册" {
		t.Fatalf("html document %+v", hdoc)
	}
	// PDF text is extracted in a child process (a malformed file cannot take the gateway down).
	code, body = g.upload(t, g.Key, kb.ID, "guide.pdf", "application/pdf", ingesttest.PDF("PDF guide", []string{"Quarterly backups are kept for ninety days"}, ""))
	var pdoc kbDoc
	decode(t, "pdf upload", code, body, 201, &pdoc)
	if pdoc.Status != "indexed" || pdoc.Title != "PDF guide" {
		t.Fatalf("pdf document %+v", pdoc)
	}
	if hits := g.search(t, g.Key, "docs", "how long are backups kept"); len(hits) == 0 || hits[0].DocumentID != pdoc.ID {
		t.Fatalf("search for the PDF's text: %+v", hits)
	}
	code, body = g.upload(t, g.Key, kb.ID, "broken.pdf", "application/pdf", []byte("%PDF-1.4\n1 0 obj\n<< /Type /Catalog"))
	wantAPIError(t, "a broken PDF", code, body, 400, "invalid_value")
	code, body = g.upload(t, g.Key, kb.ID, "image.png", "image/png", []byte("\x89PNG\r\n\x1a\n...."))
	wantAPIError(t, "an image", code, body, 415, "unsupported_format")
	code, body = g.upload(t, g.Key, kb.ID, "bad.txt", "text/plain", []byte("ok \xff\xfe bad"))
	wantAPIError(t, "invalid UTF-8", code, body, 400, "invalid_value")
	code, body = g.upload(t, g.Key, kb.ID, "big.txt", "text/plain", bytes.Repeat([]byte("a"), 5<<20))
	if code != 413 {
		t.Fatalf("a 5 MiB upload over the 4 MiB limit: %d %s", code, body)
	}

	hits := g.search(t, g.Key, "docs", "what happens when the database is down?")
	if len(hits) == 0 || hits[0].DocumentID != doc.ID || !strings.Contains(hits[0].Text, "reconnects") {
		t.Fatalf("search: %+v", hits)
	}
	if hits := g.search(t, g.Key, "docs", "数据库恢复后网关会怎样"); len(hits) == 0 || hits[0].DocumentID != hdoc.ID || strings.Contains(hits[0].Text, "secret") {
		t.Fatalf("search in Chinese: %+v", hits)
	}

	// Chat grounded in the knowledge base: HTTP, SSE and WebSocket.
	code, body = g.post("/v1/chat/completions", `{"model":"chat","rag":{"knowledge_base":"docs","top_k":2},"messages":[{"role":"user","content":"is the database down?"}]}`)
	var chat struct {
		Sources []searchHit `json:"sources"`
		Warning string      `json:"warning"`
	}
	decode(t, "chat with rag", code, body, 200, &chat)
	if len(chat.Sources) == 0 || chat.Sources[0].N != 1 || chat.Sources[0].Title == "" {
		t.Fatalf("chat sources %+v (warning %q)", chat.Sources, chat.Warning)
	}
	resp, err := g.send("POST", "/v1/chat/completions", g.Key, `{"model":"chat","stream":true,"rag":{"knowledge_base":"docs"},"messages":[{"role":"user","content":"postgres down"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	events := sseEvents(t, resp.Body)
	resp.Body.Close()
	if n := len(events); n < 2 || events[n-1] != "[DONE]" || !strings.Contains(events[n-2], `"chat.completion.sources"`) {
		t.Fatalf("stream events %q", events)
	}
	conn := dialWSKey(t, g, g.Key, "")
	r := runWSChat(t, conn, map[string]any{"type": "chat", "id": "c1", "model": "chat", "content": "postgres down", "rag": map[string]any{"knowledge_base": "docs"}})
	if r.End.Type != "done" || r.Sources.Type != "sources" || !bytes.Contains(r.Sources.raw, []byte(doc.ID)) {
		t.Fatalf("ws chat with rag: sources %s end %s", r.Sources.raw, r.End.raw)
	}
	// The answer is stored with its sources.
	conv := g.conversation(g.Key, r.Start.ConversationID)
	if last := conv.Messages[len(conv.Messages)-1]; !bytes.Contains(last.Sources, []byte(doc.ID)) {
		t.Fatalf("stored answer without its sources: %+v", last)
	}

	// Bob sees none of it.
	for _, path := range []string{"/v1/knowledge-bases/" + kb.ID, "/v1/knowledge-bases/" + kb.ID + "/documents", "/v1/knowledge-bases/" + kb.ID + "/documents/" + doc.ID} {
		code, body := g.call("GET", path, bob, "")
		wantAPIError(t, "bob GET "+path, code, body, 404, "not_found")
	}
	code, body = g.call("DELETE", "/v1/knowledge-bases/"+kb.ID+"/documents/"+doc.ID, bob, "")
	wantAPIError(t, "bob deletes alice's document", code, body, 404, "not_found")
	code, body = g.call("POST", "/v1/knowledge-bases/"+kb.ID+"/search", bob, `{"query":"postgres"}`)
	wantAPIError(t, "bob searches alice's knowledge base", code, body, 404, "not_found")
	if hits := g.search(t, bob, "docs", "postgres"); len(hits) != 0 {
		t.Fatalf("bob's own empty docs finds %+v", hits)
	}
	code, body = g.post("/v1/chat/completions", `{"model":"chat","rag":{"knowledge_base":"nope"},"messages":[{"role":"user","content":"x"}]}`)
	wantAPIError(t, "unknown knowledge base", code, body, 404, "not_found")

	// Deleting the document removes it from search.
	code, body = g.call("DELETE", "/v1/knowledge-bases/docs/documents/"+doc.ID, g.Key, "")
	decode(t, "delete document", code, body, 200, nil)
	for _, h := range g.search(t, g.Key, "docs", "postgres database down reconnects") {
		if h.DocumentID == doc.ID {
			t.Fatalf("a deleted document is still found: %+v", h)
		}
	}
	code, body = g.call("DELETE", "/v1/knowledge-bases/docs", g.Key, "")
	decode(t, "delete kb", code, body, 200, nil)
	code, body = g.call("GET", "/v1/knowledge-bases/docs", g.Key, "")
	wantAPIError(t, "deleted kb", code, body, 404, "not_found")

}

// TestKnowledgeBaseOnQdrant runs the gateway with vector_store kind qdrant against the
// in-process Qdrant stand-in (no Qdrant server can be installed here; the vector
// store's contract tests also run against a real one when QDRANT_URL is set).
func TestKnowledgeBaseOnQdrant(t *testing.T) {
	addr := qdranttest.Start(t)
	g := launchGatewayConfig(t, pgtest.Database(t), fmt.Sprintf("vector_store: {kind: qdrant, url: %q}", addr), echoModels)
	g.waitReady(20 * time.Second)
	code, body := g.call("POST", "/v1/knowledge-bases", g.Key, `{"name":"docs"}`)
	decode(t, "create", code, body, 201, nil)
	code, body = g.call("POST", "/v1/knowledge-bases/docs/documents?wait=true", g.Key, `{"title":"Ops","text":"When Postgres is down the gateway answers 503."}`)
	var doc kbDoc
	decode(t, "document", code, body, 201, &doc)
	if hits := g.search(t, g.Key, "docs", "postgres down"); len(hits) != 1 || hits[0].DocumentID != doc.ID {
		t.Fatalf("search through Qdrant: %+v", hits)
	}
	code, body = g.call("DELETE", "/v1/knowledge-bases/docs/documents/"+doc.ID, g.Key, "")
	decode(t, "delete", code, body, 200, nil)
	if hits := g.search(t, g.Key, "docs", "postgres down"); len(hits) != 0 {
		t.Fatalf("a deleted document is still found through Qdrant: %+v", hits)
	}
}

// TestKnowledgeBaseWithEmbeddings configures rag.embedding_model: chunks and questions
// are embedded by the llama.cpp plugin, and search fuses dense and sparse results.
func TestKnowledgeBaseWithEmbeddings(t *testing.T) {
	lib, model := llamaFixtures(t)
	g := launchGatewayConfig(t, pgtest.Database(t), "rag: {embedding_model: embed, chunk_tokens: 100, chunk_overlap: 10}", fmt.Sprintf(`
  - {name: chat, backend: echo}
  - {name: embed, backend: llamacpp, embedding: true, options: {model_path: %q, lib_path: %q, threads: 1, parallel: 2, context_length: 512, pooling: mean}}
`, model, lib))
	g.waitReady(60 * time.Second)
	code, body := g.call("POST", "/v1/knowledge-bases", g.Key, `{"name":"docs"}`)
	decode(t, "create", code, body, 201, nil)
	for _, text := range []string{"When Postgres is down the gateway answers 503.", "API keys are stored as SHA-256 hashes."} {
		code, body = g.call("POST", "/v1/knowledge-bases/docs/documents?wait=true", g.Key, `{"text":`+jsonString(text)+`}`)
		var d kbDoc
		decode(t, "document", code, body, 201, &d)
		if d.Status != "indexed" {
			t.Fatalf("document %+v", d)
		}
	}
	if hits := g.search(t, g.Key, "docs", "postgres down"); len(hits) == 0 || !strings.Contains(hits[0].Text, "Postgres") {
		t.Fatalf("hybrid search: %+v", hits)
	}
	// Words found in no chunk: the sparse list is empty, the dense one still ranks
	// every chunk (a sparse-only gateway finds nothing here).
	if hits := g.search(t, g.Key, "docs", "zyxwv qwertz"); len(hits) != 2 {
		t.Fatalf("a question sharing no word with the chunks: %d hits, want both chunks by their embeddings", len(hits))
	}
	// The fusion settings reach the hybrid search: the best of the dense list alone
	// (no shared word) scores 1/(k+1) by rrf, 1 by its normalised score when weighted
	// wholly to it, 0 when weighted wholly to the (empty) sparse list.
	for _, tc := range []struct {
		retrieval string
		score     float64
	}{
		{`{}`, 1.0 / 61},
		{`{"rrf_k": 1}`, 1.0 / 2},
		{`{"fusion": "weighted", "dense_weight": 1}`, 1},
		{`{"fusion": "weighted", "dense_weight": 0}`, 0},
	} {
		var out struct{ Data []searchHit }
		code, body := g.call("POST", "/v1/knowledge-bases/docs/search", g.Key, `{"query":"zyxwv qwertz","retrieval":`+tc.retrieval+`}`)
		decode(t, "search with "+tc.retrieval, code, body, 200, &out)
		if len(out.Data) != 2 || math.Abs(out.Data[0].Score-tc.score) > 1e-6 {
			t.Errorf("retrieval %s: hits %+v, want 2, the first scoring %v", tc.retrieval, out.Data, tc.score)
		}
	}
}
