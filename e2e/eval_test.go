package e2e

import (
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
	if _, err := g.adminCLI("eval", "--kb", "ops", "--qa", qa+".missing"); err == nil {
		t.Fatal("eval with a missing file succeeded")
	}
}
