package store_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ragway/ragway/gateway/store"
)

func newChunks(n int, prefix string) []store.NewChunk {
	out := make([]store.NewChunk, n)
	for i := range out {
		out[i] = store.NewChunk{Ordinal: i, Heading: "Doc > Part", Content: fmt.Sprintf("%s chunk %d", prefix, i), TokenCount: 3,
			SparseIndices: []uint32{1, 4000000000}, SparseValues: []float32{0.5, float32(i)}}
	}
	out[0].Dense = []float32{0.25, -1, 3.5}
	return out
}

func TestIndexDocument(t *testing.T) {
	s := open(t)
	alice, bob := user(t, s, "alice"), user(t, s, "bob")
	kb, err := s.CreateKnowledgeBase(ctx(t), alice.ID, store.NewKnowledgeBase{Name: "docs"})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := s.CreateDocument(ctx(t), alice.ID, kb.ID, newDoc("a"))
	if err != nil {
		t.Fatal(err)
	}

	stored, err := s.IndexDocument(ctx(t), alice.ID, kb.ID, doc.ID, newChunks(5, "first"))
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 5 || stored[0].ID == stored[1].ID || stored[0].KBID != kb.ID {
		t.Fatalf("stored %+v", stored)
	}
	d, _ := s.Document(ctx(t), alice.ID, kb.ID, doc.ID)
	if d.Status != store.DocIndexed || d.ChunkCount != 5 {
		t.Fatalf("document after indexing: %+v", d)
	}

	// Read back in the order asked, vectors intact; unknown and malformed ids left out.
	ids := []string{stored[3].ID, "nope", stored[0].ID, "00000000-0000-4000-8000-000000000000"}
	got, err := s.Chunks(ctx(t), alice.ID, kb.ID, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != stored[3].ID || got[1].ID != stored[0].ID {
		t.Fatalf("Chunks = %+v", got)
	}
	c := got[1]
	if c.Content != "first chunk 0" || c.DocumentTitle != doc.Title || c.Heading != "Doc > Part" || !slices.Equal(c.Dense, []float32{0.25, -1, 3.5}) ||
		!slices.Equal(c.SparseIndices, []uint32{1, 4000000000}) || !slices.Equal(c.SparseValues, []float32{0.5, 0}) {
		t.Fatalf("chunk read back %+v", c)
	}
	if got[0].Dense != nil {
		t.Fatalf("a chunk stored without a dense vector reads back %v", got[0].Dense)
	}

	// Another user sees none of it.
	if got, err := s.Chunks(ctx(t), bob.ID, kb.ID, ids); err != nil || len(got) != 0 {
		t.Fatalf("bob's Chunks of alice's knowledge base: %v, %v", got, err)
	}
	_, err = s.IndexDocument(ctx(t), bob.ID, kb.ID, doc.ID, newChunks(1, "bob"))
	wantErr(t, "bob's IndexDocument of alice's document", err, store.ErrNotFound)
	wantErr(t, "bob's FailDocument of alice's document", s.FailDocument(ctx(t), bob.ID, kb.ID, doc.ID, "x"), store.ErrNotFound)

	// Indexing again replaces the chunks.
	if _, err := s.IndexDocument(ctx(t), alice.ID, kb.ID, doc.ID, newChunks(2, "second")); err != nil {
		t.Fatal(err)
	}
	var all []store.Chunk
	batches := 0
	err = s.EachKBChunks(ctx(t), kb.ID, 1, func(cs []store.Chunk) error {
		batches++
		all = append(all, cs...)
		return nil
	})
	if err != nil || batches != 2 || len(all) != 2 || all[0].Content != "second chunk 0" || all[1].Ordinal != 1 {
		t.Fatalf("EachKBChunks after reindexing: %d batches %+v, %v", batches, all, err)
	}
	var vecs []store.Chunk
	err = s.EachKBVectors(ctx(t), kb.ID, 10, func(cs []store.Chunk) error {
		vecs = append(vecs, cs...)
		return nil
	})
	if err != nil || len(vecs) != 2 || vecs[0].Content != "" || vecs[0].Heading != "" || vecs[0].ID != all[0].ID ||
		!slices.Equal(vecs[1].SparseIndices, all[1].SparseIndices) || !slices.Equal(vecs[1].Dense, all[1].Dense) {
		t.Fatalf("EachKBVectors: %+v, %v; want the chunks of EachKBChunks without their text", vecs, err)
	}

	if err := s.FailDocument(ctx(t), alice.ID, kb.ID, doc.ID, "the PDF is encrypted"); err != nil {
		t.Fatal(err)
	}
	d, _ = s.Document(ctx(t), alice.ID, kb.ID, doc.ID)
	if d.Status != store.DocFailed || d.Error != "the PDF is encrypted" {
		t.Fatalf("failed document %+v", d)
	}

	kbs, err := s.KnowledgeBaseIDs(ctx(t))
	if err != nil || !slices.Equal(kbs, []string{kb.ID}) {
		t.Fatalf("KnowledgeBaseIDs = %v, %v", kbs, err)
	}

	// Deleting the document deletes its chunks.
	if err := s.DeleteDocument(ctx(t), alice.ID, kb.ID, doc.ID); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, `SELECT count(*) FROM chunks`); n != 0 {
		t.Fatalf("%d chunks left after deleting their document", n)
	}
}
