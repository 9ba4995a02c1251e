package rag

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// RerankModel scores texts against a question: the reranker as retrieval uses it
// (*ModelReranker serves rag.rerank_model over the gateway's workers).
type RerankModel interface {
	// Rerank returns one score per text, in order; higher is more relevant. A
	// question-text pair over the model's limit is cut to fit.
	Rerank(ctx context.Context, query string, texts []string) ([]float32, error)
}

// Rerankers is what ModelReranker needs of the workers (*workers.Manager implements
// it).
type Rerankers interface {
	Rerank(ctx context.Context, model string, req sdk.RerankRequest) (sdk.RerankResponse, error)
}

// ModelReranker is the rerank model Name (rag.rerank_model) served by Models.
type ModelReranker struct {
	Models Rerankers
	Name   string
}

var _ RerankModel = (*ModelReranker)(nil)

// Rerank implements RerankModel.
func (m *ModelReranker) Rerank(ctx context.Context, query string, texts []string) ([]float32, error) {
	resp, err := m.Models.Rerank(ctx, m.Name, sdk.RerankRequest{Query: query, Documents: texts, Truncate: true})
	if err != nil {
		return nil, err
	}
	if len(resp.Scores) != len(texts) {
		return nil, fmt.Errorf("rerank model %q returned %d scores for %d texts", m.Name, len(resp.Scores), len(texts))
	}
	return resp.Scores, nil
}

// Reranking defaults and bounds.
const (
	// DefaultRerankCandidates is how many hits the reranker re-scores when no
	// setting says (rag.rerank_candidates' default).
	DefaultRerankCandidates = 20
	// MaxRerankCandidates bounds Settings.RerankCandidates.
	MaxRerankCandidates = 200
)

// rerank re-scores srcs (best first, by the index) with the reranker: the
// sources come back ordered by its scores, each with its score, equal scores in
// the index's order. The text scored is the heading path and the chunk, as they
// were embedded.
func (r *Retriever) rerank(ctx context.Context, query string, srcs []Source) ([]Source, error) {
	texts := make([]string, len(srcs))
	for i, s := range srcs {
		texts[i] = embedText(Chunk{Heading: s.Heading, Text: s.Text})
	}
	scores, err := r.Reranker.Rerank(ctx, query, texts)
	if err != nil {
		return nil, err
	}
	out := slices.Clone(srcs)
	for i := range out {
		out[i].Score = float64(scores[i])
	}
	slices.SortStableFunc(out, func(a, b Source) int { return cmp.Compare(b.Score, a.Score) })
	return out, nil
}
