package rag

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/ragway/ragway/gateway/vectorstore/embedded"
)

// fakeReranker scores a text by a score given per word it contains (the highest),
// and records what it was asked.
type fakeReranker struct {
	scores map[string]float32
	texts  [][]string
	err    error
}

func (f *fakeReranker) Rerank(_ context.Context, _ string, texts []string) ([]float32, error) {
	f.texts = append(f.texts, texts)
	if f.err != nil {
		return nil, f.err
	}
	out := make([]float32, len(texts))
	for i, t := range texts {
		for w, s := range f.scores {
			if strings.Contains(t, w) {
				out[i] = max(out[i], s)
			}
		}
	}
	return out, nil
}

// TestRetrieveReranks: the reranker re-scores the best RerankCandidates hits (not
// only top_k) and its order is kept; a knowledge base or a search may turn it off;
// a reranker that fails leaves the index's order; a search asking for a reranker the
// gateway lacks is a settings error.
func TestRetrieveReranks(t *testing.T) {
	ctx := context.Background()
	mem := newMemChunks("alice")
	vs := embedded.New()
	defer vs.Close()
	x := &Indexer{Store: mem, Vectors: vs, Options: Options{ChunkTokens: 30, Overlap: -1}}
	text := "# Alpha\n\nThe database is down in alpha.\n\n# Beta\n\nThe database is down in beta, the database is down again.\n\n# Gamma\n\nThe database gamma."
	if _, err := x.Index(ctx, "alice", kbA, docX, Document{Text: text, Markdown: true}, Settings{}); err != nil {
		t.Fatal(err)
	}
	rr := &fakeReranker{scores: map[string]float32{"gamma": 3, "alpha": 2}}
	r := &Retriever{Vectors: vs, Chunks: mem, Reranker: rr, Defaults: Settings{RerankCandidates: 3}, Logger: slog.New(slog.DiscardHandler)}
	heads := func(srcs []Source) string {
		var h []string
		for i, s := range srcs {
			if s.N != i+1 {
				t.Errorf("source %d numbered %d", i, s.N)
			}
			h = append(h, s.Heading)
		}
		return strings.Join(h, ",")
	}

	srcs, err := r.Retrieve(ctx, Request{UserID: "alice", KBID: kbA, Query: "database down", TopK: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := heads(srcs); got != "Gamma,Alpha" || srcs[0].Score != 3 {
		t.Errorf("reranked: %s (%+v), want Gamma,Alpha", got, srcs)
	}
	if len(rr.texts) != 1 || len(rr.texts[0]) != 3 || !strings.HasPrefix(rr.texts[0][0], "Beta\n") {
		t.Errorf("the reranker was asked %q; want the 3 candidates, heading first, in the index's order", rr.texts)
	}

	off := false
	srcs, _ = r.Retrieve(ctx, Request{UserID: "alice", KBID: kbA, Query: "database down", TopK: 2, KB: Settings{Rerank: &off}})
	if got := heads(srcs); got != "Beta,Alpha" || len(rr.texts) != 1 {
		t.Errorf("a knowledge base without reranking: %s, reranker called %d times", got, len(rr.texts))
	}

	rr.err = errors.New("model unavailable")
	srcs, err = r.Retrieve(ctx, Request{UserID: "alice", KBID: kbA, Query: "database down", TopK: 2})
	if err != nil || heads(srcs) != "Beta,Alpha" {
		t.Errorf("a failing reranker: %s, %v; want the index's order", heads(srcs), err)
	}

	on := true
	plain := &Retriever{Vectors: vs, Chunks: mem}
	_, err = plain.Retrieve(ctx, Request{UserID: "alice", KBID: kbA, Query: "database down", TopK: 2, Search: Settings{Rerank: &on}})
	var se *SettingsError
	if !errors.As(err, &se) || se.Field != "retrieval.rerank" {
		t.Errorf("a search asking for a reranker the gateway lacks: %v", err)
	}
}
