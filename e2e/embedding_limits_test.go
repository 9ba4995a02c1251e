package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ragway/ragway/internal/pgtest"
)

// longParagraphDoc is Markdown of long Chinese and English paragraphs: a chunk of the
// default size (400 estimated tokens) is far over 512 tokens of the demo model's
// tokenizer (such chunks used to fail: "input is 1197 tokens; at most 512").
func longParagraphDoc() string {
	var b strings.Builder
	b.WriteString("# 运维指南\n\n")
	topics := []string{"副本重启", "数据库故障", "密钥轮换", "索引重建"}
	for i, topic := range topics {
		fmt.Fprintf(&b, "## 第%d部分：%s\n\n", i+1, topic)
		for p := range 2 {
			for s := range 16 {
				fmt.Fprintf(&b, "段落%d.%d第%d句：在%s期间，网关继续提供服务，运维人员按照%s的流程检查指标，并为下一班记录发生的事情。The gateway keeps serving during %d.%d. ", i+1, p+1, s+1, topic, topic, i+1, p+1)
			}
			b.WriteString("\n\n")
		}
	}
	return b.String()
}

// TestEmbeddingModelLimits runs the README's llama.cpp embedding model (at most 512
// tokens per input) as rag.embedding_model with the default chunk size: a document
// of long paragraphs is indexed with dense vectors (its chunks are split to fit the
// model), and a search whose query is far over the limit answers 200 with dense hits
// (the query is truncated for embedding; it shares no word with the document, so
// every hit comes from the dense side).
func TestEmbeddingModelLimits(t *testing.T) {
	lib, model := llamaFixtures(t)
	g := launchGatewayConfig(t, pgtest.Database(t), "rag: {embedding_model: embed}", fmt.Sprintf(`
  - {name: chat, backend: echo}
  - {name: embed, backend: llamacpp, embedding: true, options: {model_path: %q, lib_path: %q, threads: 1, pooling: mean}}
`, model, lib))
	g.waitReady(60 * time.Second)
	code, body := g.call("POST", "/v1/knowledge-bases", g.Key, `{"name":"ops"}`)
	decode(t, "create", code, body, 201, nil)

	doc := longParagraphDoc()
	code, body = g.call("POST", "/v1/knowledge-bases/ops/documents?wait=true", g.Key,
		`{"title":"Operations","format":"markdown","text":`+jsonString(doc)+`}`)
	var d kbDoc
	decode(t, "document of long paragraphs", code, body, 201, &d)
	if d.Status != "indexed" || d.ChunkCount < 8 {
		t.Fatalf("document of long paragraphs: %+v, want indexed in at least 8 chunks (its 8 paragraphs, each split)", d)
	}

	query := strings.TrimSpace(strings.Repeat("zyxwv qwertz plonk ", 400))
	code, body = g.call("POST", "/v1/knowledge-bases/ops/search", g.Key, `{"query":`+jsonString(query)+`,"top_k":3}`)
	var out struct{ Data []searchHit }
	decode(t, "search with a query far over the embedding model's limit", code, body, 200, &out)
	t.Logf("%d chunks; dense hits for a query of %d bytes: %+v", d.ChunkCount, len(query), out.Data)
	if len(out.Data) != 3 {
		t.Fatalf("search with a long query sharing no word with the document: %d hits, want 3 from the dense side", len(out.Data))
	}
	for _, h := range out.Data {
		if h.DocumentID != d.ID || h.Text == "" || !strings.Contains(doc, h.Text) {
			t.Fatalf("dense hit %+v is not a chunk of the document", h)
		}
	}

	// A chat question as long goes through retrieval too: its answer has sources,
	// and no warning that the index is unavailable.
	code, body = g.call("POST", "/v1/chat/completions", g.Key, `{"model":"chat","messages":[{"role":"user","content":`+jsonString(query)+`}],"rag":{"knowledge_base":"ops","top_k":2}}`)
	if code != 200 || !strings.Contains(string(body), `"sources"`) || strings.Contains(string(body), "unavailable") {
		t.Fatalf("chat with a long question: %d %.400s; want 200 with sources", code, body)
	}
}

// TestHostileInputsKeepTheEmbeddingModelUp sends what used to kill the shared llama.cpp
// embedding model (any text holding NUL: each crash was retried on fresh replicas, four
// deaths from one search) through every path that embeds: /v1/embeddings, a
// knowledge-base search and a grounded chat. Each is answered, and the model's process
// is the one that started.
func TestHostileInputsKeepTheEmbeddingModelUp(t *testing.T) {
	lib, model := llamaFixtures(t)
	g := launchGatewayConfig(t, pgtest.Database(t), "rag: {embedding_model: embed}", fmt.Sprintf(`
  - {name: chat, backend: echo}
  - {name: embed, backend: llamacpp, embedding: true, options: {model_path: %q, lib_path: %q, threads: 1, pooling: mean}}
`, model, lib))
	before := pids(g.waitReady(60*time.Second), "embed")
	code, body := g.call("POST", "/v1/knowledge-bases", g.Key, `{"name":"ops"}`)
	decode(t, "create", code, body, 201, nil)
	code, body = g.call("POST", "/v1/knowledge-bases/ops/documents?wait=true", g.Key, `{"title":"Ops","text":"The gateway keeps serving while a replica restarts."}`)
	decode(t, "document", code, body, 201, nil)

	for _, c := range []struct{ what, path, body string }{
		{"embedding of x NUL", "/v1/embeddings", `{"model":"embed","input":"x\u0000"}`},
		{"embedding of NULs only", "/v1/embeddings", `{"model":"embed","input":["\u0000\u0000","","   ","ok"]}`},
		{"search with NUL", "/v1/knowledge-bases/ops/search", `{"query":"replica\u0000restarts"}`},
		{"grounded chat with NUL", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"gateway\u0000serving"}],"rag":{"knowledge_base":"ops"}}`},
	} {
		code, body := g.call("POST", c.path, g.Key, c.body)
		if code >= 500 {
			t.Errorf("%s: %d %.300s", c.what, code, body)
		}
		if strings.Contains(string(body), "unavailable") {
			t.Errorf("%s: %.300s; the embedding model should have answered", c.what, body)
		}
	}
	_, r := g.readyz()
	for _, m := range r.Models {
		if m.Name != "embed" {
			continue
		}
		for _, rep := range m.Replicas {
			if rep.Restarts != 0 || len(before) != 1 || rep.Pid != before[0] {
				t.Fatalf("the embedding model's replica after hostile inputs: %+v (pid before %v)", rep, before)
			}
		}
	}
}
