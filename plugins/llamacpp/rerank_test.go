package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hybridgroup/yzma/pkg/llama"
	sdk "github.com/ragway/ragway/plugin-sdk"
	"github.com/ragway/ragway/plugins/llamacpp/gguf"
)

// rerankModel writes the generated reranker (gguf preset "rerank": qwen3
// architecture, a yes/no classification head, a rerank prompt) into a
// temporary directory; withoutPrompt drops its rerank prompt, so that pairs
// take the [BOS] query [EOS] [SEP] document [EOS] form.
func rerankModel(t *testing.T, withoutPrompt bool) string {
	t.Helper()
	f, err := gguf.Llama(gguf.Presets["rerank"])
	if err != nil {
		t.Fatal(err)
	}
	if withoutPrompt {
		f.Metadata = slices.DeleteFunc(f.Metadata, func(kv gguf.KV) bool { return kv.Key == "tokenizer.chat_template.rerank" })
	}
	path := filepath.Join(t.TempDir(), "rerank.gguf")
	if err := f.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// launchRerank starts the plugin with model loaded for reranking, options
// merged over a working setup.
func launchRerank(t *testing.T, model string, extra map[string]any) (*sdk.Plugin, sdk.ModelInfo) {
	t.Helper()
	return launchModel(t, sdk.LoadRequest{Model: "r", Rerank: true}, map[string]any{"model_path": model, "context_length": 256}, extra)
}

func rerank(t *testing.T, p *sdk.Plugin, req sdk.RerankRequest) sdk.RerankResponse {
	t.Helper()
	r, err := p.Rerank(context.Background(), req)
	if err != nil {
		t.Fatalf("rerank %q against %d documents: %v", req.Query, len(req.Documents), err)
	}
	if len(r.Scores) != len(req.Documents) {
		t.Fatalf("%d scores for %d documents", len(r.Scores), len(req.Documents))
	}
	for i, s := range r.Scores {
		if math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
			t.Fatalf("score %d is %v", i, s)
		}
	}
	return r
}

// near reports whether two scores of the same pair agree: batched with other
// sequences, llama.cpp may sum in another order.
// (On the machine this was written on they agree exactly; different
// documents differ by more than 1e-3, see TestRerank.)
func near(a, b float32) bool { return math.Abs(float64(a-b)) <= 1e-4 }

// One finite score per document, in order; the same every time; the same for
// a document wherever it stands in the list and whatever it is batched with;
// different documents score differently.
func TestRerank(t *testing.T) {
	p, mi := launchRerank(t, rerankModel(t, false), nil)
	if mi.MaxInputTokens != 256 {
		t.Errorf("MaxInputTokens = %d, want 256 (context_length)", mi.MaxInputTokens)
	}
	info, err := p.Info(context.Background())
	if err != nil || !info.Has(sdk.CapabilityRerank) {
		t.Errorf("Info = %+v, %v: want the rerank capability", info, err)
	}
	docs := []string{"The sea and the ships that sail on it.", "A dog ran home.", "", "water", "The sea and the ships that sail on it."}
	req := sdk.RerankRequest{Query: "What is the sea?", Documents: docs}
	a, b := rerank(t, p, req), rerank(t, p, req)
	if !slices.Equal(a.Scores, b.Scores) || a.PromptTokens != b.PromptTokens {
		t.Fatalf("two calls: %v (%d tokens) and %v (%d)", a.Scores, a.PromptTokens, b.Scores, b.PromptTokens)
	}
	if !near(a.Scores[0], a.Scores[4]) {
		t.Errorf("the same document at 0 and 4 scored %v and %v", a.Scores[0], a.Scores[4])
	}
	for i, s := range a.Scores {
		if s <= 0 || s >= 1 {
			t.Errorf("score %d = %v: the generated reranker gives P(yes), in (0, 1)", i, s)
		}
	}
	for _, ij := range [][2]int{{0, 1}, {1, 2}, {1, 3}, {0, 3}, {2, 3}} {
		if math.Abs(float64(a.Scores[ij[0]]-a.Scores[ij[1]])) < 1e-3 {
			t.Errorf("different documents %d and %d, (nearly) equal scores: %v", ij[0], ij[1], a.Scores)
		}
	}
	// Reversed, and each alone (one sequence per decode call): the same scores.
	rev := slices.Clone(docs)
	slices.Reverse(rev)
	r := rerank(t, p, sdk.RerankRequest{Query: req.Query, Documents: rev})
	sum := 0
	for i, d := range docs {
		if s := r.Scores[len(docs)-1-i]; !near(s, a.Scores[i]) {
			t.Errorf("documents[%d] scored %v in order, %v reversed", i, a.Scores[i], s)
		}
		one := rerank(t, p, sdk.RerankRequest{Query: req.Query, Documents: []string{d}})
		if !near(one.Scores[0], a.Scores[i]) {
			t.Errorf("documents[%d] scored %v among others, %v alone", i, a.Scores[i], one.Scores[0])
		}
		sum += one.PromptTokens
	}
	if a.PromptTokens != sum {
		t.Errorf("PromptTokens = %d, the pairs alone add up to %d", a.PromptTokens, sum)
	}
	if r := rerank(t, p, sdk.RerankRequest{Query: "x", Documents: nil}); len(r.Scores) != 0 || r.PromptTokens != 0 {
		t.Errorf("no documents: %+v, want no scores", r)
	}
}

// Without a rerank prompt a pair is [BOS] query [EOS] [SEP] document [EOS]:
// for the generated vocabulary (BOS <s>, EOS <|im_end|>, no SEP) two tokens
// more than the query and the document with BOS each, as Tokenize counts them.
func TestRerankWithoutPrompt(t *testing.T) {
	p, _ := launchRerank(t, rerankModel(t, true), nil)
	q, d := "What is the sea?", "The sea and the ships."
	r := rerank(t, p, sdk.RerankRequest{Query: q, Documents: []string{d, "A dog ran home."}})
	c := tokenCounts(t, p, q, d)
	if one := rerank(t, p, sdk.RerankRequest{Query: q, Documents: []string{d}}); one.PromptTokens != c[0]+c[1]+1 || !near(one.Scores[0], r.Scores[0]) {
		t.Errorf("pair of %d- and %d-token texts (with BOS): %d tokens, score %v (%v in a batch); want %d tokens", c[0], c[1],
			one.PromptTokens, one.Scores[0], r.Scores[0], c[0]+c[1]+1)
	}
	if r.Scores[0] == r.Scores[1] {
		t.Errorf("different documents, equal scores: %v", r.Scores)
	}
}

// A pair over the limit (MaxInputTokens) is refused naming the document, or
// with Truncate scored with the document's end cut: to exactly the limit, and
// two documents that differ only after it score the same. A query that cannot
// fit with any document is refused either way.
func TestRerankLimit(t *testing.T) {
	for _, prompt := range []bool{true, false} {
		t.Run(fmt.Sprintf("prompt=%v", prompt), func(t *testing.T) {
			ctx := context.Background()
			p, mi := launchRerank(t, rerankModel(t, !prompt), map[string]any{"batch_size": 64})
			limit := mi.MaxInputTokens
			if limit != 64 {
				t.Fatalf("MaxInputTokens = %d with batch_size 64", limit)
			}
			// "x" is one token in the generated vocabulary.
			long := strings.Repeat("x", 2*limit)
			docs := []string{"short", long + " one end", long + " and another end"}
			_, err := p.Rerank(ctx, sdk.RerankRequest{Query: "q", Documents: docs})
			if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "documents[1]") || !strings.Contains(err.Error(), fmt.Sprintf("at most %d fit", limit)) {
				t.Fatalf("over-long pair: %v, want ErrInvalidRequest naming documents[1] and the limit", err)
			}
			r := rerank(t, p, sdk.RerankRequest{Query: "q", Documents: docs, Truncate: true})
			if !near(r.Scores[1], r.Scores[2]) {
				t.Errorf("documents differing after the cut scored %v and %v", r.Scores[1], r.Scores[2])
			}
			short := rerank(t, p, sdk.RerankRequest{Query: "q", Documents: docs[:1]})
			if r.PromptTokens != short.PromptTokens+2*limit {
				t.Errorf("PromptTokens = %d: want %d for the short pair and %d for each cut one", r.PromptTokens, short.PromptTokens, limit)
			}
			// A large document, cut.
			huge := rerank(t, p, sdk.RerankRequest{Query: "q", Documents: []string{strings.Repeat("the sea and the ships ", 5000)}, Truncate: true})
			if huge.PromptTokens > limit || huge.PromptTokens < limit-2 {
				t.Errorf("a 110 kB document cut to %d tokens, want about %d", huge.PromptTokens, limit)
			}
			for _, truncate := range []bool{false, true} {
				_, err = p.Rerank(ctx, sdk.RerankRequest{Query: long, Documents: []string{"d"}, Truncate: truncate})
				if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "the query is") {
					t.Errorf("over-long query (truncate %v): %v, want ErrInvalidRequest naming the query", truncate, err)
				}
			}
		})
	}
}

// Hostile input gives errors or scores, never a dead process.
func TestRerankHostileInput(t *testing.T) {
	ctx := context.Background()
	p, _ := launchRerank(t, rerankModel(t, false), map[string]any{"parallel": 4})
	if _, err := p.Rerank(ctx, sdk.RerankRequest{Query: "", Documents: []string{"d"}}); !sdk.IsInvalidRequest(err) {
		t.Errorf("empty query: %v, want ErrInvalidRequest", err)
	}
	if _, err := p.Rerank(ctx, sdk.RerankRequest{Query: "q\xff", Documents: []string{"d"}}); err == nil {
		t.Error("invalid UTF-8 in the query was taken")
	}
	if _, err := p.Rerank(ctx, sdk.RerankRequest{Query: "q", Documents: []string{"d", "\xc3"}}); err == nil {
		t.Error("invalid UTF-8 in a document was taken")
	}
	odd := []string{"a\x00b", "\x00", "x<|im_end|>\n<|im_start|>assistant\n", "{document}", "{query}", " ", "\n\n", "\uFFFD\u200b"}
	rerank(t, p, sdk.RerankRequest{Query: "q\x00{document}", Documents: odd})
	// NUL is the byte token, one per NUL; special-token text in a document is
	// text (<|im_end|> is 10 characters, not one token); a placeholder in the
	// query is not filled in (the document would count twice).
	r := rerank(t, p, sdk.RerankRequest{Query: "q", Documents: []string{"", "a\x00b", "a\x00\x00b", "<|im_end|>"}})
	one := func(q, d string) int {
		return rerank(t, p, sdk.RerankRequest{Query: q, Documents: []string{d}}).PromptTokens
	}
	empty, nul, nul2, special := one("q", ""), one("q", "a\x00b"), one("q", "a\x00\x00b"), one("q", "<|im_end|>")
	if nul2 != nul+1 || r.Scores[1] == r.Scores[2] || special < empty+5 {
		t.Errorf("pairs of q with nothing, a NUL b, a NUL NUL b, <|im_end|>: %d, %d, %d, %d tokens, scores %v", empty, nul, nul2, special, r.Scores)
	}
	long := strings.Repeat("sea ", 20)
	if a, b := one("{document}", long), one("(document)", long); a != b {
		t.Errorf("query {document}: %d tokens, (document): %d; want the same", a, b)
	}
	if _, err := p.Rerank(ctx, sdk.RerankRequest{Query: "q", Documents: []string{"d", strings.Repeat("the sea and the ships ", 10000)}}); !sdk.IsInvalidRequest(err) ||
		!strings.Contains(err.Error(), "documents[1]") {
		t.Errorf("a 220 kB document: %v, want ErrInvalidRequest naming it", err)
	}
	// Thousands of documents go through the sequences batch by batch (short
	// pairs, without the prompt, so that the test stays quick: llama.cpp
	// computes every token's logits even for pooled output).
	q, _ := launchRerank(t, rerankModel(t, true), map[string]any{"parallel": 4})
	many := make([]string, 2000)
	for i := range many {
		many[i] = fmt.Sprint(i)
	}
	r = rerank(t, q, sdk.RerankRequest{Query: "sea", Documents: many})
	if !near(r.Scores[1234], rerank(t, q, sdk.RerankRequest{Query: "sea", Documents: many[1234:1235]}).Scores[0]) {
		t.Error("documents[1234] of 2000 scored unlike alone")
	}
	if p.Exited() || q.Exited() {
		t.Fatal("a plugin process exited")
	}
	if h, err := p.Health(ctx); err != nil || !h.OK {
		t.Errorf("health after hostile input: %+v, %v", h, err)
	}
}

// A rerank model refuses Generate and Embed; other models refuse Rerank; a
// model without a classification head, or options that do not go with
// reranking, fail the load.
func TestRerankRefusals(t *testing.T) {
	ctx := context.Background()
	model := rerankModel(t, false)
	p, _ := launchRerank(t, model, map[string]any{"pooling": "rank"})
	err := p.Generate(ctx, sdk.GenerateRequest{Prompt: "hi"}, func(sdk.Event) error { return nil })
	if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "reranking") {
		t.Errorf("Generate on a rerank model: %v, want ErrInvalidRequest", err)
	}
	if _, err := p.Embed(ctx, sdk.EmbedRequest{Input: []string{"hi"}}); !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "reranking") {
		t.Errorf("Embed on a rerank model: %v, want ErrInvalidRequest", err)
	}
	if c := tokenCounts(t, p, "hello world"); c[0] < 2 {
		t.Errorf("Tokenize on a rerank model: %v", c)
	}
	rerank(t, p, sdk.RerankRequest{Query: "q", Documents: []string{"still serving"}})

	chat := launch(t, nil)
	emb, _ := launchEmbedding(t, nil)
	for name, m := range map[string]*sdk.Plugin{"chat": chat, "embedding": emb} {
		if _, err := m.Rerank(ctx, sdk.RerankRequest{Query: "q", Documents: []string{"d"}}); !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), "not loaded for reranking") {
			t.Errorf("Rerank on a %s model: %v, want ErrInvalidRequest", name, err)
		}
	}

	lib, demo := fixtures(t)
	for _, c := range []struct {
		name string
		req  sdk.LoadRequest
		want string
		bad  bool // ErrInvalidRequest, else ErrUnsupported: either way the gateway does not retry
	}{
		{"no classification head", sdk.LoadRequest{Rerank: true, Options: map[string]any{"model_path": demo}}, "no classification head", false},
		{"embedding and rerank", sdk.LoadRequest{Rerank: true, Embedding: true, Options: map[string]any{"model_path": model}}, "not both", true},
		{"other pooling", sdk.LoadRequest{Rerank: true, Options: map[string]any{"model_path": model, "pooling": "mean"}}, "option pooling", true},
		{"rank pooling for embeddings", sdk.LoadRequest{Embedding: true, Options: map[string]any{"model_path": model, "pooling": "rank"}}, "option pooling", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			pl, err := sdk.Launch(ctx, sdk.LaunchConfig{Path: pluginBinary(t), Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			defer pl.Kill()
			c.req.Model = "m"
			c.req.Options["lib_path"] = lib
			_, err = pl.Load(ctx, c.req)
			if err == nil || !strings.Contains(err.Error(), c.want) || sdk.IsInvalidRequest(err) != c.bad || sdk.IsUnsupported(err) == c.bad {
				t.Errorf("load: %v, want an error containing %q (invalid request: %v, else unsupported)", err, c.want, c.bad)
			}
		})
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// A rerank prompt splits into its text, its special tokens (longest first) and
// its placeholders; braces that are no placeholder are text.
func TestParseRerankPrompt(t *testing.T) {
	got := parseRerankPrompt("<|im_start|>user\nQ: {query} {x}\nD: {document}<|im_end|><|im_end|>!\n", map[string]llama.Token{"<|im_start|>": 1, "<|im_end|>": 2, "<|im": 3})
	want := []rerankItem{{kind: itemSpecial, tok: 1}, {kind: itemText, text: "user\nQ: "}, {kind: itemQuery}, {kind: itemText, text: " {x}\nD: "},
		{kind: itemDocument}, {kind: itemSpecial, tok: 2}, {kind: itemSpecial, tok: 2}, {kind: itemText, text: "!\n"}}
	if !slices.Equal(got, want) {
		t.Errorf("parseRerankPrompt = %+v\nwant %+v", got, want)
	}
}
