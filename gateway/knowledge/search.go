package knowledge

import (
	"context"
	"errors"
	"fmt"

	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/vectorstore"
)

// MaxTopK bounds a search's Query.TopK.
const MaxTopK = rag.MaxTopK

// IsID reports whether s has the form of a document's (or a knowledge base's) id.
func IsID(s string) bool { return store.IsID(s) }

// Query is a search of a knowledge base.
type Query struct {
	Text string
	// TopK is the number of hits wanted, 1 to MaxTopK.
	TopK int
	// DocumentIDs, when set, restricts the search to these documents (ids: IsID).
	DocumentIDs []string
	// Settings are the search's own retrieval settings, over the knowledge base's
	// (checked: Settings.CheckSearch).
	Settings Settings
}

// Hit is a chunk that answers a query.
type Hit struct {
	// N numbers the hits from 1, best first.
	N          int
	DocumentID string
	Title      string
	ChunkID    string
	Score      float64
	// Snippet is the start of the chunk's text.
	Snippet string
	// Heading is the chunk's heading path; Text, the whole chunk.
	Heading string
	Text    string
}

// TopK is the number of hits a search returns when asked for none (rag.top_k).
func (s *Service) TopK() int { return s.opts.TopK }

// Search returns the chunks of the user's knowledge base kb (as Base resolved it) that
// answer q, best first, by the knowledge base's retrieval settings (and q's over
// them). A malformed document filter is [ErrInvalidFilter]; settings that are not
// valid, a *SettingsError; other errors are the retrieval's (the index or the
// embedding model failing, a query the model refuses).
func (s *Service) Search(ctx context.Context, userID string, kb Base, q Query) ([]Hit, error) {
	if err := q.Settings.CheckSearch("retrieval"); err != nil {
		return nil, err
	}
	if err := s.checkReranking(q.Settings); err != nil {
		return nil, err
	}
	srcs, err := s.opts.Retriever.Retrieve(ctx, rag.Request{UserID: userID, KBID: kb.ID, Query: q.Text, TopK: q.TopK,
		DocumentIDs: q.DocumentIDs, KB: kb.Retrieval, Search: q.Settings})
	if errors.Is(err, vectorstore.ErrInvalid) {
		return nil, fmt.Errorf("%w: %w", ErrInvalidFilter, err)
	}
	if err != nil {
		return nil, fmt.Errorf("knowledge: search knowledge base %s: %w", kb.ID, err)
	}
	hits := make([]Hit, 0, len(srcs))
	for _, src := range srcs {
		hits = append(hits, Hit{N: src.N, DocumentID: src.DocumentID, Title: src.Title, ChunkID: src.ChunkID, Score: src.Score,
			Snippet: src.Snippet, Heading: src.Heading, Text: src.Text})
	}
	return hits, nil
}
