package apitest

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/vectorstore"
	"github.com/ragway/ragway/gateway/vectorstore/embedded"
)

// The knowledge base KnowledgeBase serves: "docs", with one chunk of one document.
const (
	KBID          = "11111111-1111-4111-8111-111111111111"
	ChunkID       = "22222222-2222-4222-8222-222222222222"
	DocumentID    = "33333333-3333-4333-8333-333333333333"
	DocumentTitle = "Operations guide"
	ChunkText     = "When Postgres is down the gateway answers 503 and reconnects by itself."
)

type kbFixture struct{}

func (kbFixture) KnowledgeBase(_ context.Context, _, idOrName string) (store.KnowledgeBase, error) {
	if idOrName != "docs" && idOrName != KBID {
		return store.KnowledgeBase{}, store.ErrNotFound
	}
	return store.KnowledgeBase{ID: KBID, Name: "docs"}, nil
}

func (kbFixture) Chunks(_ context.Context, _, kbID string, ids []string) ([]store.Chunk, error) {
	var out []store.Chunk
	for _, id := range ids {
		if id == ChunkID && kbID == KBID {
			out = append(out, store.Chunk{ID: ChunkID, DocumentID: DocumentID, DocumentTitle: DocumentTitle, KBID: KBID,
				Heading: DocumentTitle + " > Outages", Content: ChunkText})
		}
	}
	return out, nil
}

// KnowledgeBase returns a rag.Service over a real embedded index holding one knowledge
// base "docs" (of any user) with one chunk about Postgres outages, and the index (close
// it to make retrieval fail).
func KnowledgeBase(t testing.TB) (*rag.Service, *embedded.Store) {
	t.Helper()
	vs := embedded.New()
	t.Cleanup(func() { vs.Close() })
	err := vs.Upsert(context.Background(), []vectorstore.Point{{ChunkID: ChunkID, KBID: KBID, DocumentID: DocumentID,
		Sparse: rag.DocVector("Outages\n" + ChunkText)}})
	if err != nil {
		t.Fatal(err)
	}
	f := kbFixture{}
	return &rag.Service{KBs: f, Retriever: &rag.Retriever{Vectors: vs, Chunks: f}, TopK: 4,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, vs
}
