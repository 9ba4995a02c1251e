package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ragway/ragway/internal/pgtest"
	"github.com/ragway/ragway/internal/testbin"
)

// TestRetrievalSettings: a knowledge base's own retrieval settings, set at creation
// and replaced with PATCH, chunk its documents and reach its searches; a search may
// try its own; settings that are not valid are a 400 naming the setting; the admin
// eval route runs a question set twice to compare.
func TestRetrievalSettings(t *testing.T) {
	g := startGateway(t, echoModels)
	code, body := g.call("POST", "/v1/knowledge-bases", g.Key, `{"name":"small","retrieval":{"chunk_tokens":40,"fusion":"weighted"}}`)
	var kb struct {
		ID        string          `json:"id"`
		Retrieval json.RawMessage `json:"retrieval"`
	}
	decode(t, "create with settings", code, body, http.StatusCreated, &kb)
	if string(kb.Retrieval) != `{"fusion":"weighted","chunk_tokens":40}` {
		t.Fatalf("created with retrieval %s", kb.Retrieval)
	}
	code, body = g.call("POST", "/v1/knowledge-bases", g.Key, `{"name":"plain"}`)
	decode(t, "create without", code, body, http.StatusCreated, nil)

	var text strings.Builder
	for _, s := range []string{"The gateway reconnects to Postgres by itself.", "Keys are stored as SHA-256 hashes.",
		"Backups are kept for ninety days.", "The index is loaded from the database at start.", "Chunks keep their heading path."} {
		text.WriteString(s + " " + strings.Repeat("More words about it follow here. ", 6) + "\n\n")
	}
	doc := `{"title":"Ops","format":"markdown","text":` + jsonString(text.String()) + `}`
	chunks := map[string]int{}
	for _, name := range []string{"small", "plain"} {
		code, body = g.call("POST", "/v1/knowledge-bases/"+name+"/documents?wait=true", g.Key, doc)
		var d kbDoc
		decode(t, "document in "+name, code, body, http.StatusCreated, &d)
		chunks[name] = d.ChunkCount
	}
	if chunks["plain"] != 1 || chunks["small"] < 5 {
		t.Fatalf("chunks: %v; want the document whole with the gateway's 800 tokens, in pieces of 40 with the knowledge base's", chunks)
	}
	if hits := g.search(t, g.Key, "small", "how long are backups kept"); len(hits) == 0 || !strings.Contains(hits[0].Text, "ninety days") {
		t.Fatalf("search in the small-chunked knowledge base: %+v", hits)
	}

	code, body = g.call("PATCH", "/v1/knowledge-bases/small", g.Key, `{"retrieval":{"rrf_k":10}}`)
	decode(t, "patch", code, body, http.StatusOK, &kb)
	if string(kb.Retrieval) != `{"rrf_k":10}` {
		t.Fatalf("patched retrieval %s", kb.Retrieval)
	}
	code, body = g.call("GET", "/v1/knowledge-bases/small", g.Key, "")
	decode(t, "get", code, body, http.StatusOK, &kb)
	if string(kb.Retrieval) != `{"rrf_k":10}` {
		t.Fatalf("stored retrieval %s", kb.Retrieval)
	}
	code, body = g.call("POST", "/v1/knowledge-bases/small/search", g.Key, `{"query":"backups","retrieval":{"fusion":"weighted","dense_weight":0.3}}`)
	decode(t, "search with its own settings", code, body, http.StatusOK, nil)

	for _, tc := range []struct {
		what, method, path, body, param string
	}{
		{"unknown fusion", "POST", "/v1/knowledge-bases", `{"name":"x","retrieval":{"fusion":"max"}}`, "retrieval.fusion"},
		{"unknown setting", "POST", "/v1/knowledge-bases", `{"name":"x","retrieval":{"top_k":3}}`, "retrieval.top_k"},
		{"weight out of range", "PATCH", "/v1/knowledge-bases/small", `{"retrieval":{"dense_weight":2}}`, "retrieval.dense_weight"},
		{"wrong type", "PATCH", "/v1/knowledge-bases/small", `{"retrieval":{"rrf_k":"ten"}}`, "retrieval.rrf_k"},
		{"not an object", "PATCH", "/v1/knowledge-bases/small", `{"retrieval":[1]}`, "retrieval"},
		{"no settings", "PATCH", "/v1/knowledge-bases/small", `{}`, "retrieval"},
		{"overlap over size", "PATCH", "/v1/knowledge-bases/small", `{"retrieval":{"chunk_tokens":50,"chunk_overlap":50}}`, "retrieval.chunk_overlap"},
		{"chunking in a search", "POST", "/v1/knowledge-bases/small/search", `{"query":"q","retrieval":{"chunk_tokens":100}}`, "retrieval.chunk_tokens"},
		{"chunking in an eval", "POST", "/admin/knowledge-bases/small/eval", `{"questions":"{\"q\":\"a\",\"docs\":[\"b\"]}","compare":{"chunk_overlap":1}}`, "compare.chunk_overlap"},
		{"a misspelt field", "POST", "/v1/knowledge-bases", `{"name":"x","retreival":{"fusion":"rrf"}}`, "retreival"},
		{"another field in a patch", "PATCH", "/v1/knowledge-bases/small", `{"retrieval":{},"name":"renamed"}`, "name"},
		{"a setting's name in capitals", "PATCH", "/v1/knowledge-bases/small", `{"retrieval":{"FUSION":"rrf"}}`, "retrieval.FUSION"},
		{"an overlap over half the gateway's chunks", "PATCH", "/v1/knowledge-bases/small", `{"retrieval":{"chunk_overlap":401}}`, "retrieval.chunk_overlap"},
	} {
		code, body := g.call(tc.method, tc.path, g.Key, tc.body)
		if code != http.StatusBadRequest || apiErrorBody(t, body).Param != tc.param {
			t.Errorf("%s: %d %s, want a 400 naming %s", tc.what, code, body, tc.param)
		}
	}

	code, body = g.call("PATCH", "/v1/knowledge-bases/small", g.Key, `{"retrieval":null}`)
	decode(t, "patch with null", code, body, http.StatusOK, &kb)
	if string(kb.Retrieval) != `{}` {
		t.Fatalf("retrieval after a patch with null: %s, want {}", kb.Retrieval)
	}

	qs := `{"q":"how long are backups kept","expect":["ninety days"],"kind":"lexical"}` + "\n" +
		`{"q":"where do chunks keep their headings","expect":["heading path"]}`
	code, body = g.call("POST", "/admin/knowledge-bases/small/eval", g.Key,
		`{"questions":`+jsonString(qs)+`,"compare":{"fusion":"weighted","dense_weight":0.5}}`)
	var report struct {
		Retrieval json.RawMessage `json:"retrieval"`
		Overall   struct {
			Questions int     `json:"questions"`
			Recall10  float64 `json:"recall_at_10"`
		} `json:"overall"`
		Compare *struct {
			Retrieval json.RawMessage `json:"retrieval"`
			Overall   struct {
				Questions int `json:"questions"`
			} `json:"overall"`
		} `json:"compare"`
	}
	decode(t, "eval with compare", code, body, http.StatusOK, &report)
	if report.Overall.Questions != 2 || report.Overall.Recall10 != 1 || report.Compare == nil || report.Compare.Overall.Questions != 2 ||
		string(report.Compare.Retrieval) != `{"fusion":"weighted","dense_weight":0.5}` {
		t.Fatalf("eval report %s", body)
	}
}

// TestRerank runs a rerank model (the echo plugin loaded with rerank: true: it scores a
// document by the distinct words of the query it holds) behind /v1/rerank and as
// rag.rerank_model: searches and chats cite the reranker's order, a knowledge base or
// a search may turn it off, and models of the wrong kind are refused.
func TestRerank(t *testing.T) {
	g := launchGatewayConfig(t, pgtest.Database(t), "rag: {rerank_model: rank, rerank_candidates: 10}", `
  - {name: chat, backend: echo}
  - {name: rank, backend: echo, rerank: true}
`)
	g.waitReady(20 * time.Second)

	code, body := g.call("POST", "/v1/rerank", g.Key, `{"model":"rank","query":"postgres outage","documents":["keys are hashed","a postgres outage","postgres"]}`)
	var rr struct {
		Results []struct {
			Index int     `json:"index"`
			Score float64 `json:"relevance_score"`
		} `json:"results"`
		Usage struct {
			TotalTokens int `json:"total_tokens"`
		} `json:"usage"`
	}
	decode(t, "rerank", code, body, http.StatusOK, &rr)
	if len(rr.Results) != 3 || rr.Results[0].Index != 1 || rr.Results[0].Score != 2 || rr.Results[1].Index != 2 || rr.Usage.TotalTokens == 0 {
		t.Fatalf("rerank: %s", body)
	}
	code, body = g.call("POST", "/v1/rerank", g.Key, `{"model":"chat","query":"q","documents":["a"]}`)
	wantAPIError(t, "rerank with a chat model", code, body, http.StatusBadRequest, "invalid_value")
	code, body = g.call("POST", "/v1/chat/completions", g.Key, chatBody("rank", "hello", false))
	wantAPIError(t, "chat with a rerank model", code, body, http.StatusBadRequest, "invalid_value")

	code, body = g.call("POST", "/v1/knowledge-bases", g.Key, `{"name":"docs"}`)
	decode(t, "create", code, body, http.StatusCreated, nil)
	// BM25 puts the first document first (two of the query's words, many times, in
	// few words); the reranker counts distinct words: the second, long, holds all three.
	for _, text := range []string{"# Failover\n\nFailover replica, failover replica, failover replica.",
		"# Runbook\n\n" + strings.Repeat("Steps to follow during an incident are written down here. ", 30) + "When the primary fails, failover to the replica.",
		"# Keys\n\nThe primary key of a table is hashed."} {
		code, body = g.call("POST", "/v1/knowledge-bases/docs/documents?wait=true", g.Key, `{"format":"markdown","text":`+jsonString(text)+`}`)
		decode(t, "document", code, body, http.StatusCreated, nil)
	}
	search := func(retrieval string) []searchHit {
		var out struct{ Data []searchHit }
		code, body := g.call("POST", "/v1/knowledge-bases/docs/search", g.Key, `{"query":"failover replica primary","top_k":2,"retrieval":`+retrieval+`}`)
		decode(t, "search "+retrieval, code, body, http.StatusOK, &out)
		return out.Data
	}
	if hits := search(`{}`); len(hits) != 2 || !strings.Contains(hits[0].Text, "When the primary fails") || hits[0].Score != 3 {
		t.Fatalf("reranked search: %+v", hits)
	}
	if hits := search(`{"rerank":false}`); len(hits) != 2 || !strings.Contains(hits[0].Text, "Failover replica") {
		t.Fatalf("search without the reranker: %+v", hits)
	}
	code, body = g.call("PATCH", "/v1/knowledge-bases/docs", g.Key, `{"retrieval":{"rerank":false}}`)
	decode(t, "turn reranking off", code, body, http.StatusOK, nil)
	if hits := search(`{}`); len(hits) != 2 || !strings.Contains(hits[0].Text, "Failover replica") {
		t.Fatalf("search in a knowledge base without reranking: %+v", hits)
	}
	if hits := search(`{"rerank":true}`); len(hits) != 2 || hits[0].Score != 3 {
		t.Fatalf("a search asking for the reranker: %+v", hits)
	}
	code, body = g.call("PATCH", "/v1/knowledge-bases/docs", g.Key, `{"retrieval":{}}`)
	decode(t, "reranking back on", code, body, http.StatusOK, nil)
	// The reranker is shared: no search or knowledge base has it score more than the
	// gateway's rerank_candidates.
	code, body = g.call("POST", "/v1/knowledge-bases/docs/search", g.Key, `{"query":"q","retrieval":{"rerank_candidates":11}}`)
	if code != http.StatusBadRequest || apiErrorBody(t, body).Param != "retrieval.rerank_candidates" {
		t.Fatalf("a search asking for more candidates than the gateway allows: %d %s", code, body)
	}
	code, body = g.call("PATCH", "/v1/knowledge-bases/docs", g.Key, `{"retrieval":{"rerank_candidates":11}}`)
	if code != http.StatusBadRequest || apiErrorBody(t, body).Param != "retrieval.rerank_candidates" {
		t.Fatalf("a knowledge base asking for more candidates than the gateway allows: %d %s", code, body)
	}

	// A chat cites the reranker's order.
	code, body = g.call("POST", "/v1/chat/completions", g.Key, `{"model":"chat","rag":{"knowledge_base":"docs","top_k":1},"messages":[{"role":"user","content":"failover replica primary"}]}`)
	var chat struct{ Sources []searchHit }
	decode(t, "chat", code, body, http.StatusOK, &chat)
	if len(chat.Sources) != 1 || chat.Sources[0].Score != 3 {
		t.Fatalf("chat sources %+v", chat.Sources)
	}
}

// TestRerankSettingsNeedAReranker: without rag.rerank_model, asking a knowledge base
// or a search for reranking is a 400 naming the setting.
func TestRerankSettingsNeedAReranker(t *testing.T) {
	g := startGateway(t, echoModels)
	code, body := g.call("POST", "/v1/knowledge-bases", g.Key, `{"name":"docs","retrieval":{"rerank":true}}`)
	if code != http.StatusBadRequest || apiErrorBody(t, body).Param != "retrieval.rerank" {
		t.Fatalf("a knowledge base asking for a reranker: %d %s", code, body)
	}
	code, body = g.call("POST", "/v1/knowledge-bases", g.Key, `{"name":"docs"}`)
	decode(t, "create", code, body, http.StatusCreated, nil)
	code, body = g.call("POST", "/v1/knowledge-bases/docs/search", g.Key, `{"query":"q","retrieval":{"rerank":true}}`)
	if code != http.StatusBadRequest || apiErrorBody(t, body).Param != "retrieval.rerank" {
		t.Fatalf("a search asking for a reranker: %d %s", code, body)
	}
	code, body = g.call("POST", "/admin/knowledge-bases/docs/eval", g.Key, `{"questions":"{\"q\":\"a\",\"docs\":[\"b\"]}","retrieval":{"rerank":true}}`)
	if code != http.StatusBadRequest || apiErrorBody(t, body).Param != "retrieval.rerank" {
		t.Fatalf("an evaluation asking for a reranker: %d %s", code, body)
	}
}

// TestLlamaReranker serves the generated reranker GGUF (task models:rerank: random
// weights, so its scores say nothing about relevance) through the llama.cpp plugin
// as rag.rerank_model: /v1/rerank answers with one probability per document, the same
// twice, and a search cites the reranker's scores, most relevant first.
func TestLlamaReranker(t *testing.T) {
	lib, _ := llamaFixtures(t)
	model := filepath.Join(testbin.Root(), ".data", "models", "rerank.gguf")
	if _, err := os.Stat(model); err != nil {
		t.Fatalf("reranker model missing: run `task models:rerank` (%v)", err)
	}
	g := launchGatewayConfig(t, pgtest.Database(t), "rag: {rerank_model: rank, rerank_candidates: 5}", fmt.Sprintf(`
  - {name: chat, backend: echo}
  - {name: rank, backend: llamacpp, rerank: true, options: {model_path: %q, lib_path: %q, threads: 1, parallel: 2, context_length: 512}}
`, model, lib))
	g.waitReady(60 * time.Second)

	type result struct {
		Index int     `json:"index"`
		Score float64 `json:"relevance_score"`
	}
	rerank := func() []result {
		var out struct{ Results []result }
		code, body := g.call("POST", "/v1/rerank", g.Key, `{"model":"rank","query":"how do I restart the gateway?","documents":["Restart it with systemctl restart ragway.","Keys are hashed.","The index is loaded at start."]}`)
		decode(t, "rerank", code, body, http.StatusOK, &out)
		return out.Results
	}
	first, second := rerank(), rerank()
	if len(first) != 3 || !reflect.DeepEqual(first, second) {
		t.Fatalf("rerank twice: %+v then %+v", first, second)
	}
	for i, r := range first {
		if r.Score < 0 || r.Score > 1 || (i > 0 && r.Score > first[i-1].Score) {
			t.Fatalf("scores %+v: want probabilities, most relevant first", first)
		}
	}

	code, body := g.call("POST", "/v1/knowledge-bases", g.Key, `{"name":"docs"}`)
	decode(t, "create", code, body, http.StatusCreated, nil)
	for _, text := range []string{"# Restart\n\nRestart the gateway with systemctl.", "# Keys\n\nKeys are hashed with SHA-256.", "# Index\n\nThe gateway loads its index at start."} {
		code, body = g.call("POST", "/v1/knowledge-bases/docs/documents?wait=true", g.Key, `{"format":"markdown","text":`+jsonString(text)+`}`)
		decode(t, "document", code, body, http.StatusCreated, nil)
	}
	var out struct{ Data []searchHit }
	code, body = g.call("POST", "/v1/knowledge-bases/docs/search", g.Key, `{"query":"gateway restart","top_k":2}`)
	decode(t, "reranked search", code, body, http.StatusOK, &out)
	if len(out.Data) != 2 || out.Data[0].Score < out.Data[1].Score || out.Data[0].Score > 1 || out.Data[1].Score < 0 {
		t.Fatalf("reranked search: %+v", out.Data)
	}
}
