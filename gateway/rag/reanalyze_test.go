package rag

import (
	"context"
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/vectorstore"
	"github.com/ragway/ragway/gateway/vectorstore/embedded"
	"github.com/ragway/ragway/internal/pgtest"
)

// deletingStore deletes a document in the middle of re-analysis: after its chunks
// were read, before they are written.
type deletingStore struct {
	*store.Store
	user, kb, doc string
}

func (d deletingStore) EachChunkToReanalyze(ctx context.Context, kbID, docID string, analyzer, batch int, fn func([]store.Chunk) error) error {
	return d.Store.EachChunkToReanalyze(ctx, kbID, docID, analyzer, batch, func(cs []store.Chunk) error {
		if err := d.Store.DeleteDocument(ctx, d.user, d.kb, d.doc); err != nil {
			return err
		}
		return fn(cs)
	})
}

// TestReanalyze: chunks stored by older rules (here: vectors of unstemmed words, as
// the first rules made them, written as an older gateway writes them, without saying
// its rules) are analysed again from their stored text, in Postgres and in a
// persistent index, and found by today's questions; chunks of the current rules are
// left alone; a second run has nothing to do; a document deleted meanwhile does not
// come back into the index.
func TestReanalyze(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(pgtest.Database(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	u, err := st.EnsureUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	kb, err := st.CreateKnowledgeBase(ctx, u.ID, store.NewKnowledgeBase{Name: "old"})
	if err != nil {
		t.Fatal(err)
	}
	document := func(title string) string {
		sum := sha256.Sum256([]byte(title))
		d, err := st.CreateDocument(ctx, u.ID, kb.ID, store.NewDocument{Title: title, SHA256: sum[:]})
		if err != nil {
			t.Fatal(err)
		}
		return d.ID
	}
	vectors := embedded.New()
	index := func(doc string, chunks ...store.NewChunk) []store.Chunk {
		stored, err := st.IndexDocument(ctx, u.ID, kb.ID, doc, chunks)
		if err != nil {
			t.Fatal(err)
		}
		if err := vectors.Upsert(ctx, Points(stored)); err != nil {
			t.Fatal(err)
		}
		return stored
	}
	heading, content := "Go > Goroutines", "Goroutines run functions concurrently."
	old := vectorstore.Sparse{Indices: []uint32{TermID("goroutines")}, Values: []float32{1}} // no stem
	stale := index(document("Go"), store.NewChunk{Heading: heading, Content: content, SparseIndices: old.Indices, SparseValues: old.Values})
	cur := ChunkVector("Current", "Current rules.")
	index(document("Current"), store.NewChunk{Heading: "Current", Content: "Current rules.", SparseIndices: cur.Indices,
		SparseValues: cur.Values, Analyzer: Analyzer})
	find := func(q string) []vectorstore.Hit {
		hits, err := vectors.Search(ctx, vectorstore.Query{KBID: kb.ID, Sparse: QueryVector(q), TopK: 3})
		if err != nil {
			t.Fatal(err)
		}
		return hits
	}
	if hits := find("goroutine"); len(hits) != 0 {
		t.Fatalf("the old vector matches today's question: %v", hits)
	}

	kbs, chunks, err := Reanalyze(ctx, st, vectors)
	if err != nil || kbs != 1 || chunks != 1 {
		t.Fatalf("Reanalyze = %d knowledge bases, %d chunks, %v; want 1, 1 (the chunk of the current rules left alone)", kbs, chunks, err)
	}
	want := ChunkVector(heading, content)
	got, err := st.Chunks(ctx, u.ID, kb.ID, []string{stale[0].ID})
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	if !slices.Equal(got[0].SparseIndices, want.Indices) || !slices.Equal(got[0].SparseValues, want.Values) ||
		got[0].Content != content || got[0].Analyzer != Analyzer {
		t.Errorf("stored chunk after Reanalyze: %+v, want the vector %v of its text, analyzer %d", got[0], want, Analyzer)
	}
	if hits := find("goroutine"); len(hits) != 1 || hits[0].ChunkID != stale[0].ID {
		t.Errorf("today's question finds %v in the index, want the chunk", hits)
	}
	if kbs, chunks, err := Reanalyze(ctx, st, vectors); err != nil || kbs != 0 || chunks != 0 {
		t.Errorf("a second Reanalyze: %d, %d, %v; want nothing to do", kbs, chunks, err)
	}

	// An older gateway indexes a document while this one runs: the change feed's
	// ReanalyzeDocument brings it up to date.
	late := document("Late")
	index(late, store.NewChunk{Heading: heading, Content: content, SparseIndices: old.Indices, SparseValues: old.Values})
	if n, err := ReanalyzeDocument(ctx, st, vectors, kb.ID, late); err != nil || n != 1 {
		t.Errorf("ReanalyzeDocument = %d, %v; want 1", n, err)
	}

	// A document deleted while its chunks are analysed again stays out of the index.
	gone := document("Gone")
	doomed := index(gone, store.NewChunk{Heading: "Gone", Content: "Ephemeral words.", SparseIndices: old.Indices, SparseValues: old.Values})
	if err := vectors.DeleteDocument(ctx, kb.ID, gone); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Reanalyze(ctx, deletingStore{st, u.ID, kb.ID, gone}, vectors); err != nil {
		t.Fatal(err)
	}
	for _, h := range find("ephemeral goroutine") {
		if h.ChunkID == doomed[0].ID {
			t.Errorf("the deleted document's chunk came back into the index")
		}
	}
}
