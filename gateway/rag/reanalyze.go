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
	KnowledgeBasesToReanalyze(ctx context.Context, analyzer int) ([]string, error)
	EachChunkToReanalyze(ctx context.Context, kbID, docID string, analyzer, batch int, fn func([]store.Chunk) error) error
	UpdateSparse(ctx context.Context, kbID string, analyzer int, updates []store.SparseUpdate) ([]string, error)
	WithLock(ctx context.Context, key int64, fn func() error) error
}

// reanalyzeLock is the advisory lock gateways take turns re-analysing under.
const reanalyzeLock = 7296847419113734002

// Reanalyze brings the sparse vectors of stored chunks made by older rules
// (Analyzer; every chunk records the rules that made it) up to date: each chunk's
// vector is computed again from its stored heading and text (ChunkVector) and
// written to Postgres with the current rules' number; when vectors is not nil (a
// persistent index such as Qdrant) the chunks changed are written to it too.
// Nothing else of a chunk changes (its text, its boundaries, its dense vector): those
// are the document's, as it was ingested. Gateways starting together take turns (an
// advisory lock): the first does the work, the others find none. A chunk deleted
// meanwhile is not written back. It returns how many knowledge bases and chunks it
// analysed again.
func Reanalyze(ctx context.Context, src AnalyzerStore, vectors vectorstore.Store) (kbs, chunks int, err error) {
	err = src.WithLock(ctx, reanalyzeLock, func() error {
		ids, err := src.KnowledgeBasesToReanalyze(ctx, Analyzer)
		if err != nil {
			return err
		}
		for _, kb := range ids {
			n, err := reanalyze(ctx, src, vectors, kb, "")
			chunks += n
			if err != nil {
				return fmt.Errorf("knowledge base %s: %w", kb, err)
			}
			kbs++
		}
		return nil
	})
	if err != nil {
		return kbs, chunks, fmt.Errorf("reanalyze: %w", err)
	}
	return kbs, chunks, nil
}

// ReanalyzeDocument is Reanalyze for one document: what a gateway does with a
// document another gateway indexed (the change feed), which an older gateway may
// have indexed by older rules. It returns how many chunks it analysed again.
func ReanalyzeDocument(ctx context.Context, src AnalyzerStore, vectors vectorstore.Store, kbID, docID string) (int, error) {
	n, err := reanalyze(ctx, src, vectors, kbID, docID)
	if err != nil {
		return n, fmt.Errorf("reanalyze document %s: %w", docID, err)
	}
	return n, nil
}

// reanalyze analyses again the chunks of knowledge base kb (of document doc only,
// when set) made by older rules.
func reanalyze(ctx context.Context, src AnalyzerStore, vectors vectorstore.Store, kb, doc string) (int, error) {
	n := 0
	err := src.EachChunkToReanalyze(ctx, kb, doc, Analyzer, 1000, func(cs []store.Chunk) error {
		updates := make([]store.SparseUpdate, len(cs))
		for i := range cs {
			v := ChunkVector(cs[i].Heading, cs[i].Content)
			cs[i].SparseIndices, cs[i].SparseValues, cs[i].Analyzer = v.Indices, v.Values, Analyzer
			updates[i] = store.SparseUpdate{ChunkID: cs[i].ID, Indices: v.Indices, Values: v.Values}
		}
		changed, err := src.UpdateSparse(ctx, kb, Analyzer, updates)
		if err != nil {
			return err
		}
		n += len(changed)
		if vectors == nil || len(changed) == 0 {
			return nil
		}
		keep := make(map[string]bool, len(changed))
		for _, id := range changed {
			keep[id] = true
		}
		points := make([]store.Chunk, 0, len(changed))
		for _, c := range cs {
			if keep[c.ID] {
				points = append(points, c)
			}
		}
		return vectors.Upsert(ctx, Points(points))
	})
	return n, err
}
