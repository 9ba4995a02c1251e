package rag

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"

	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/vectorstore"
)

// ChunkReader reads chunks back from Postgres (*store.Store implements it).
type ChunkReader interface {
	Chunks(ctx context.Context, userID, kbID string, ids []string) ([]store.Chunk, error)
}

// Retriever finds the chunks of a knowledge base that answer a question: hybrid search
// (sparse always, dense when an embedding model is set) in the vector store, then the
// chunks' texts and titles from Postgres.
type Retriever struct {
	Vectors vectorstore.Store
	Chunks  ChunkReader
	// Embedding, when set, embeds the question for the dense side of the search. A
	// question over the model's limit per input is truncated for it (the sparse side
	// has the whole question).
	Embedding EmbeddingModel
	// Reranker, when set (rag.rerank_model), re-scores the best hits before the
	// top ones are kept (Settings.Rerank, Settings.RerankCandidates). A reranker
	// that fails leaves the index's order, logged.
	Reranker RerankModel
	// Defaults are the gateway's retrieval settings (its rag block).
	Defaults Settings
	// Logger gets what is worth knowing of retrievals (a reranker that failed);
	// nil: slog.Default().
	Logger *slog.Logger
}

// Request is one retrieval: up to TopK sources for Query in user UserID's knowledge
// base KBID (in documents DocumentIDs only, when given).
type Request struct {
	UserID, KBID, Query string
	TopK                int
	DocumentIDs         []string
	// KB is the knowledge base's own settings and Search the search's own (checked:
	// Settings.CheckSearch): each over the one before, over Retriever.Defaults.
	KB, Search Settings
}

// Retrieve returns the sources of req, numbered from 1 in rank order. The caller has
// checked that the knowledge base is the user's; chunks of other users' knowledge
// bases are never read (ChunkReader is user-scoped).
func (r *Retriever) Retrieve(ctx context.Context, req Request) ([]Source, error) {
	userID, kbID, query := req.UserID, req.KBID, req.Query
	if req.Search.Rerank != nil && *req.Search.Rerank && r.Reranker == nil {
		return nil, &SettingsError{Field: "retrieval.rerank", Reason: "this gateway has no rerank model (rag.rerank_model)"}
	}
	set := req.Search.Over(req.KB).Over(r.Defaults)
	rerank := r.Reranker != nil && (set.Rerank == nil || *set.Rerank)
	want := req.TopK
	if rerank {
		want = max(want, cmp.Or(set.RerankCandidates, DefaultRerankCandidates))
	}
	q := vectorstore.Query{KBID: kbID, Sparse: QueryVector(query), TopK: want, DocumentIDs: req.DocumentIDs,
		Fusion: set.VectorFusion()}
	if r.Embedding != nil {
		vecs, err := r.Embedding.Embed(ctx, []string{query}, true)
		if err != nil {
			return nil, fmt.Errorf("retrieve: embed the question: %w", err)
		}
		if len(vecs) == 1 {
			q.Dense = vecs[0]
		}
	}
	if len(q.Sparse.Indices) == 0 && q.Dense == nil {
		return nil, nil // nothing to look for (a question of stopwords and punctuation)
	}
	hits, err := r.Vectors.Search(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("retrieve: %w", err)
	}
	if len(hits) == 0 {
		return nil, nil
	}
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.ChunkID
	}
	chunks, err := r.Chunks.Chunks(ctx, userID, kbID, ids)
	if err != nil {
		return nil, fmt.Errorf("retrieve: read the chunks: %w", err)
	}
	byID := make(map[string]store.Chunk, len(chunks))
	for _, c := range chunks {
		byID[c.ID] = c
	}
	var out []Source
	for _, h := range hits {
		c, ok := byID[h.ChunkID]
		if !ok {
			continue // deleted since it was indexed
		}
		out = append(out, Source{N: len(out) + 1, DocumentID: c.DocumentID, Title: c.DocumentTitle, ChunkID: c.ID,
			Score: h.Score, Snippet: Snippet(c.Content), Heading: c.Heading, Text: c.Content})
	}
	if rerank && len(out) > 0 { // one source too: its score is then always the reranker's
		ranked, err := r.rerank(ctx, query, out)
		if err != nil {
			// The index's order is still an answer: sources are not lost for it.
			r.logger().Warn("reranking failed: the sources keep the index's order", "kb", kbID, "error", err)
		} else {
			out = ranked
		}
	}
	if len(out) > req.TopK {
		out = out[:req.TopK]
	}
	for i := range out {
		out[i].N = i + 1
	}
	return out, nil
}

func (r *Retriever) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.Default()
	}
	return r.Logger
}
