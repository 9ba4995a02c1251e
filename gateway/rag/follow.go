package rag

import (
	"context"
	"fmt"

	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/vectorstore"
)

// ChangeSource is what a gateway's own vector index is loaded and kept in step from
// (*store.Store implements it).
type ChangeSource interface {
	ChunkScanner
	// EachDocumentChunks calls fn with a document's chunks, batch at a time.
	EachDocumentChunks(ctx context.Context, kbID, docID string, batch int, fn func([]store.Chunk) error) error
	// KnowledgeBaseIDs returns every knowledge base's id.
	KnowledgeBaseIDs(ctx context.Context) ([]string, error)
}

// ApplyChange applies a change of the feed (package feed) to vectors, a gateway's own
// index (the embedded one; a shared index is changed once, by whoever made the
// change): a document indexed elsewhere is read from Postgres and replaces what the
// index held of it, a deleted document or knowledge base leaves the index. Other
// changes are not the index's. Applying a change twice leaves the same index.
func ApplyChange(ctx context.Context, src ChangeSource, vectors vectorstore.Store, c store.Change) error {
	switch c.Kind {
	case store.ChangeDocumentIndexed:
		if err := vectors.DeleteDocument(ctx, c.KBID, c.DocumentID); err != nil {
			return fmt.Errorf("replace document %s: %w", c.DocumentID, err)
		}
		// What Postgres holds now: a document deleted meanwhile has no chunks, and its
		// deletion is a later change.
		err := src.EachDocumentChunks(ctx, c.KBID, c.DocumentID, 1000, func(cs []store.Chunk) error {
			return vectors.Upsert(ctx, Points(cs))
		})
		if err != nil {
			return fmt.Errorf("index document %s: %w", c.DocumentID, err)
		}
	case store.ChangeDocumentDeleted:
		if err := vectors.DeleteDocument(ctx, c.KBID, c.DocumentID); err != nil {
			return fmt.Errorf("delete document %s: %w", c.DocumentID, err)
		}
	case store.ChangeKBDeleted:
		if err := vectors.DeleteKB(ctx, c.KBID); err != nil {
			return fmt.Errorf("delete knowledge base %s: %w", c.KBID, err)
		}
	}
	return nil
}

// LoadAll makes vectors hold exactly what Postgres holds: every knowledge base is
// rebuilt from its chunks (Rebuild), and a knowledge base the index holds that Postgres
// no longer has is dropped (when the index can list them, vectorstore.KBLister). It
// returns how many knowledge bases and chunks it loaded.
func LoadAll(ctx context.Context, src ChangeSource, vectors vectorstore.Store) (kbs, chunks int, err error) {
	ids, err := src.KnowledgeBaseIDs(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("load the index: %w", err)
	}
	if l, ok := vectors.(vectorstore.KBLister); ok {
		keep := make(map[string]bool, len(ids))
		for _, id := range ids {
			keep[id] = true
		}
		for _, id := range l.KBIDs() {
			if !keep[id] {
				if err := vectors.DeleteKB(ctx, id); err != nil {
					return 0, 0, fmt.Errorf("load the index: drop knowledge base %s: %w", id, err)
				}
			}
		}
	}
	for _, id := range ids {
		n, err := Rebuild(ctx, src, vectors, id)
		chunks += n
		if err != nil {
			return len(ids), chunks, fmt.Errorf("load the index: %w", err)
		}
	}
	return len(ids), chunks, nil
}
