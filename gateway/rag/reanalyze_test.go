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

// TestReanalyze: chunks stored by older rules (here: vectors of unstemmed words, as
// the first analyzer made them) are analysed again from their stored text, in
// Postgres and in a persistent index, and found by today's questions; a knowledge
// base made now is made by the current rules; a second run has nothing to do.
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
	var analyzer int
	if err := st.DB().QueryRowContext(ctx, `SELECT analyzer FROM knowledge_bases WHERE id = $1`, kb.ID).Scan(&analyzer); err != nil || analyzer != Analyzer {
		t.Fatalf("a new knowledge base is made by analyzer %d (%v), want rag.Analyzer %d: raise the column's default with the rules", analyzer, err, Analyzer)
	}
	sum := sha256.Sum256([]byte("doc"))
	doc, err := st.CreateDocument(ctx, u.ID, kb.ID, store.NewDocument{Title: "Go", SHA256: sum[:]})
	if err != nil {
		t.Fatal(err)
	}
	heading, content := "Go > Goroutines", "Goroutines run functions concurrently."
	old := vectorstore.Sparse{Indices: []uint32{TermID("goroutines")}, Values: []float32{1}} // no stem
	stored, err := st.IndexDocument(ctx, u.ID, kb.ID, doc.ID, []store.NewChunk{{Heading: heading, Content: content,
		SparseIndices: old.Indices, SparseValues: old.Values}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB().ExecContext(ctx, `UPDATE knowledge_bases SET analyzer = 1 WHERE id = $1`, kb.ID); err != nil {
		t.Fatal(err)
	}
	vectors := embedded.New()
	if err := vectors.Upsert(ctx, Points(stored)); err != nil {
		t.Fatal(err)
	}
	find := func() []vectorstore.Hit {
		hits, err := vectors.Search(ctx, vectorstore.Query{KBID: kb.ID, Sparse: QueryVector("goroutine"), TopK: 3})
		if err != nil {
			t.Fatal(err)
		}
		return hits
	}
	if hits := find(); len(hits) != 0 {
		t.Fatalf("the old vector matches today's question: %v", hits)
	}

	kbs, chunks, err := Reanalyze(ctx, st, vectors)
	if err != nil || kbs != 1 || chunks != 1 {
		t.Fatalf("Reanalyze = %d knowledge bases, %d chunks, %v; want 1, 1", kbs, chunks, err)
	}
	want := ChunkVector(heading, content)
	got, err := st.Chunks(ctx, u.ID, kb.ID, []string{stored[0].ID})
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	if !slices.Equal(got[0].SparseIndices, want.Indices) || !slices.Equal(got[0].SparseValues, want.Values) || got[0].Content != content {
		t.Errorf("stored chunk after Reanalyze: %+v, want the vector %v of its text", got[0], want)
	}
	if hits := find(); len(hits) != 1 || hits[0].ChunkID != stored[0].ID {
		t.Errorf("today's question finds %v in the index, want the chunk", hits)
	}
	if err := st.DB().QueryRowContext(ctx, `SELECT analyzer FROM knowledge_bases WHERE id = $1`, kb.ID).Scan(&analyzer); err != nil || analyzer != Analyzer {
		t.Errorf("analyzer %d (%v) after Reanalyze, want %d", analyzer, err, Analyzer)
	}
	if kbs, chunks, err := Reanalyze(ctx, st, vectors); err != nil || kbs != 0 || chunks != 0 {
		t.Errorf("a second Reanalyze: %d, %d, %v; want nothing to do", kbs, chunks, err)
	}
}
