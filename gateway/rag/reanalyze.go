package rag

import (
	"context"
	"fmt"

	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/vectorstore"
)

// AnalyzerStore is what re-analysing stored chunks reads and writes (*store.Store
// implements it).
type AnalyzerStore interface {
	ChunkScanner
	KnowledgeBasesToReanalyze(ctx context.Context, analyzer int) ([]string, error)
	UpdateSparse(ctx context.Context, kbID string, updates []store.SparseUpdate) error
	SetAnalyzer(ctx context.Context, kbID string, analyzer int) error
}

// Reanalyze brings the sparse vectors of the stored chunks of every knowledge base
// made by older rules (Analyzer) up to date: each chunk's vector is computed again
// from its stored heading and text (ChunkVector), written to Postgres and, when
// vectors is not nil (a persistent index such as Qdrant), to the index; then the
// knowledge base is marked as made by the current rules. Nothing else of a chunk
// changes (its text, its boundaries, its dense vector): those are the document's,
// as it was ingested. Running it twice, or on two gateways at once, writes the same
// vectors. It returns how many knowledge bases and chunks it analysed again.
func Reanalyze(ctx context.Context, src AnalyzerStore, vectors vectorstore.Store) (kbs, chunks int, err error) {
	ids, err := src.KnowledgeBasesToReanalyze(ctx, Analyzer)
	if err != nil {
		return 0, 0, fmt.Errorf("reanalyze: %w", err)
	}
	for _, kb := range ids {
		err := src.EachKBChunks(ctx, kb, 1000, func(cs []store.Chunk) error {
			updates := make([]store.SparseUpdate, len(cs))
			for i := range cs {
				v := ChunkVector(cs[i].Heading, cs[i].Content)
				cs[i].SparseIndices, cs[i].SparseValues = v.Indices, v.Values
				updates[i] = store.SparseUpdate{ChunkID: cs[i].ID, Indices: v.Indices, Values: v.Values}
			}
			if err := src.UpdateSparse(ctx, kb, updates); err != nil {
				return err
			}
			chunks += len(cs)
			if vectors != nil {
				return vectors.Upsert(ctx, Points(cs))
			}
			return nil
		})
		if err == nil {
			err = src.SetAnalyzer(ctx, kb, Analyzer)
		}
		if err != nil {
			return kbs, chunks, fmt.Errorf("reanalyze knowledge base %s: %w", kb, err)
		}
		kbs++
	}
	return kbs, chunks, nil
}
