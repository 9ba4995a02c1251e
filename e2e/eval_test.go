package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEvalReportsRecall: `ragway eval` runs a question file through the gateway's
// search and prints recall@1/5/10, MRR@10 and nDCG@10 per kind, and the misses.
func TestEvalReportsRecall(t *testing.T) {
	g := startGateway(t, echoModels)
	if code, body := g.call("POST", "/v1/knowledge-bases", g.Key, `{"name":"ops"}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	for _, md := range []string{
		"# Outages\n\nWhen Postgres is down the gateway answers 503 and reconnects by itself.\n",
		"# Keys\n\nAPI keys are stored as SHA-256 hashes and shown once.\n",
		"# 网关\n\n数据库不可用时，网关返回503错误。\n",
	} {
		if code, body := g.call("POST", "/v1/knowledge-bases/ops/documents?wait=true", g.Key, `{"format":"markdown","text":`+jsonString(md)+`}`); code != 201 {
			t.Fatalf("ingest: %d %s", code, body)
		}
	}
	qa := filepath.Join(t.TempDir(), "qa.jsonl")
	if err := os.WriteFile(qa, []byte(`{"q": "what happens when postgres is down", "expect": ["reconnects by itself"], "kind": "lexical"}
{"q": "how are api keys stored", "expect": ["SHA-256 hashes"], "kind": "lexical"}
{"q": "数据库不可用", "expect": ["返回503"], "kind": "chinese"}
{"q": "zebra migration patterns", "expect": ["zebras"], "kind": "needle"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := g.adminCLI("eval", "--kb", "ops", "--qa", qa)
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 7 {
			lines[f[0]] = l
		}
	}
	// kind questions recall@1 recall@5 recall@10 MRR@10 nDCG@10
	want := map[string]string{
		"lexical": "2 1.000 1.000 1.000 1.000",
		"chinese": "1 1.000 1.000 1.000 1.000",
		"needle":  "1 0.000 0.000 0.000 0.000",
		"all":     "4 0.750 0.750 0.750 0.750",
	}
	for kind, figures := range want {
		if f := strings.Fields(lines[kind]); len(f) != 7 || strings.Join(f[1:6], " ") != figures {
			t.Fatalf("eval's %s row %q, want %s:\n%s", kind, lines[kind], figures, out)
		}
	}
	if !strings.Contains(out, "line 4 [needle] zebra migration patterns") {
		t.Fatalf("the miss is not listed:\n%s", out)
	}
	// The same through the admin API.
	data, err := os.ReadFile(qa)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Overall struct {
			Questions int     `json:"questions"`
			Recall5   float64 `json:"recall_at_5"`
			MRR10     float64 `json:"mrr_at_10"`
		} `json:"overall"`
		ByKind map[string]struct {
			Recall1 float64 `json:"recall_at_1"`
		} `json:"by_kind"`
		Misses []struct {
			Line int    `json:"line"`
			Kind string `json:"kind"`
		} `json:"misses"`
	}
	code, body := g.call("POST", "/admin/knowledge-bases/ops/eval", g.Key, `{"questions":`+jsonString(string(data))+`}`)
	if code != 200 || json.Unmarshal(body, &rep) != nil || rep.Overall.Questions != 4 || rep.Overall.Recall5 != 0.75 || rep.Overall.MRR10 != 0.75 ||
		rep.ByKind["needle"].Recall1 != 0 || rep.ByKind["lexical"].Recall1 != 1 || len(rep.Misses) != 1 || rep.Misses[0].Line != 4 {
		t.Fatalf("POST /admin/knowledge-bases/ops/eval: %d %s", code, body)
	}
	code, body = g.call("POST", "/admin/knowledge-bases/ops/eval", g.Key, `{"questions":"{\"q\": \"x\"}"}`)
	wantAPIError(t, "a question without expectations", code, body, 400, "invalid_value")
	code, body = g.call("POST", "/admin/knowledge-bases/ops/eval", g.createKey("someone", "chat"), `{"questions":"x"}`)
	wantAPIError(t, "a chat key", code, body, 403, "insufficient_scope")
	if _, err := g.adminCLI("eval", "--kb", "ops", "--qa", qa+".missing"); err == nil {
		t.Fatal("eval with a missing file succeeded")
	}
}
