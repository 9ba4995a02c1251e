package store_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/ragway/ragway/gateway/store"
)

func newDoc(content string) store.NewDocument {
	return store.NewDocument{Title: content + ".txt", Source: "upload", MimeType: "text/plain", SHA256: hash(content), Bytes: int64(len(content))}
}

func TestKnowledgeBases(t *testing.T) {
	s := open(t)
	alice, bob := user(t, s, "alice"), user(t, s, "bob")

	kb, err := s.CreateKnowledgeBase(ctx(t), alice.ID, store.NewKnowledgeBase{Name: "docs", Description: "d", EmbeddingModel: "e5"})
	if err != nil {
		t.Fatal(err)
	}
	if kb.ID == "" || kb.UserID != alice.ID || kb.Name != "docs" || kb.Description != "d" || kb.EmbeddingModel != "e5" || kb.CreatedAt.IsZero() {
		t.Fatalf("CreateKnowledgeBase = %+v", kb)
	}
	_, err = s.CreateKnowledgeBase(ctx(t), alice.ID, store.NewKnowledgeBase{Name: "docs"})
	wantErr(t, "a second knowledge base named docs", err, store.ErrConflict)
	bobs, err := s.CreateKnowledgeBase(ctx(t), bob.ID, store.NewKnowledgeBase{Name: "docs"})
	if err != nil {
		t.Fatalf("another user's knowledge base named docs: %v", err)
	}
	_, err = s.CreateKnowledgeBase(ctx(t), alice.ID, store.NewKnowledgeBase{Name: ""})
	wantErr(t, "a knowledge base without a name", err, store.ErrInvalid)
	_, err = s.CreateKnowledgeBase(ctx(t), "00000000-0000-0000-0000-000000000000", store.NewKnowledgeBase{Name: "x"})
	wantErr(t, "a knowledge base of an unknown user", err, store.ErrNotFound)
	notes, err := s.CreateKnowledgeBase(ctx(t), alice.ID, store.NewKnowledgeBase{Name: "alpha notes"})
	if err != nil {
		t.Fatal(err)
	}
	if notes.EmbeddingModel != "" {
		t.Errorf("EmbeddingModel %q, want none", notes.EmbeddingModel)
	}

	list, err := s.ListKnowledgeBases(ctx(t), alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != notes.ID || list[1] != kb {
		t.Errorf("ListKnowledgeBases = %+v, want [alpha notes, docs]", list)
	}
	for _, key := range []string{kb.ID, "docs"} {
		if got, err := s.KnowledgeBase(ctx(t), alice.ID, key); err != nil || got != kb {
			t.Errorf("KnowledgeBase(%q) = %+v, %v; want %+v", key, got, err, kb)
		}
	}
	if got, err := s.KnowledgeBase(ctx(t), bob.ID, "docs"); err != nil || got.ID != bobs.ID {
		t.Errorf("bob's KnowledgeBase(docs) = %+v, %v; want his own", got, err)
	}

	// Documents; a duplicate carries the stored document.
	d1, err := s.CreateDocument(ctx(t), alice.ID, kb.ID, newDoc("one"))
	if err != nil {
		t.Fatal(err)
	}
	if d1.ID == "" || d1.KBID != kb.ID || d1.Title != "one.txt" || d1.Source != "upload" || d1.MimeType != "text/plain" ||
		!bytes.Equal(d1.SHA256, hash("one")) || d1.Bytes != 3 || d1.Status != store.DocPending || d1.ChunkCount != 0 || d1.CreatedAt.IsZero() {
		t.Fatalf("CreateDocument = %+v", d1)
	}
	dup := newDoc("one")
	dup.Title = "copy.txt"
	_, err = s.CreateDocument(ctx(t), alice.ID, kb.ID, dup)
	wantErr(t, "the same content twice", err, store.ErrConflict)
	var de *store.DuplicateError
	if !errors.As(err, &de) || de.Existing.ID != d1.ID || de.Existing.Title != "one.txt" {
		t.Errorf("the duplicate's error %v does not carry the stored document %s", err, d1.ID)
	}
	if _, err := s.CreateDocument(ctx(t), alice.ID, notes.ID, newDoc("one")); err != nil {
		t.Errorf("the same content in another knowledge base: %v", err)
	}
	bad := newDoc("x")
	bad.SHA256 = []byte("short")
	_, err = s.CreateDocument(ctx(t), alice.ID, kb.ID, bad)
	wantErr(t, "a document with a short sha256", err, store.ErrInvalid)

	if got, err := s.Document(ctx(t), alice.ID, kb.ID, d1.ID); err != nil || got.ID != d1.ID || !bytes.Equal(got.SHA256, d1.SHA256) {
		t.Errorf("Document = %+v, %v", got, err)
	}
	_, err = s.Document(ctx(t), alice.ID, notes.ID, d1.ID)
	wantErr(t, "a document through the wrong knowledge base", err, store.ErrNotFound)

	// Deleting a document deletes its chunks.
	d2, err := s.CreateDocument(ctx(t), alice.ID, kb.ID, newDoc("two"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []store.Document{d1, d2} {
		if _, err := s.DB().ExecContext(ctx(t), `INSERT INTO chunks (document_id, kb_id, ordinal, content) VALUES ($1, $2, 0, 'c')`, d.ID, kb.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteDocument(ctx(t), alice.ID, kb.ID, d1.ID); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, `SELECT count(*) FROM chunks WHERE document_id = $1`, d1.ID); n != 0 {
		t.Errorf("%d chunks left of a deleted document", n)
	}
	if n := count(t, s, `SELECT count(*) FROM chunks WHERE document_id = $1`, d2.ID); n != 1 {
		t.Errorf("deleting a document deleted another's chunks")
	}
	wantErr(t, "deleting a document twice", s.DeleteDocument(ctx(t), alice.ID, kb.ID, d1.ID), store.ErrNotFound)
	if _, err := s.CreateDocument(ctx(t), alice.ID, kb.ID, newDoc("one")); err != nil {
		t.Errorf("content again after its document was deleted: %v", err)
	}

	// Deleting a knowledge base deletes its documents and chunks.
	if err := s.DeleteKnowledgeBase(ctx(t), alice.ID, kb.ID); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, `SELECT count(*) FROM documents WHERE kb_id = $1`, kb.ID) + count(t, s, `SELECT count(*) FROM chunks WHERE kb_id = $1`, kb.ID); n != 0 {
		t.Errorf("%d documents and chunks left of a deleted knowledge base", n)
	}
	_, err = s.KnowledgeBase(ctx(t), alice.ID, kb.ID)
	wantErr(t, "a deleted knowledge base", err, store.ErrNotFound)
	_, err = s.ListDocuments(ctx(t), alice.ID, kb.ID, store.Page{})
	wantErr(t, "the documents of a deleted knowledge base", err, store.ErrNotFound)
	wantErr(t, "deleting a knowledge base twice", s.DeleteKnowledgeBase(ctx(t), alice.ID, kb.ID), store.ErrNotFound)
	if docs, err := s.ListDocuments(ctx(t), alice.ID, notes.ID, store.Page{}); err != nil || len(docs) != 1 {
		t.Errorf("another knowledge base's documents: %v, %v", docs, err)
	}
	if list, _ := s.ListKnowledgeBases(ctx(t), alice.ID); len(list) != 1 || list[0].ID != notes.ID {
		t.Errorf("knowledge bases after the delete: %+v", list)
	}
	if list, _ := s.ListKnowledgeBases(ctx(t), bob.ID); !slices.Equal(list, []store.KnowledgeBase{bobs}) {
		t.Errorf("bob's knowledge bases: %+v", list)
	}
}
