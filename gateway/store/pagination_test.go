package store_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ragway/ragway/gateway/store"
)

// pages reads a whole listing limit rows at a time.
func pages[T any](t *testing.T, limit int, list func(store.Page) ([]T, error), id func(T) string) [][]T {
	t.Helper()
	var out [][]T
	p := store.Page{Limit: limit}
	for range 100 {
		page, err := list(p)
		if err != nil {
			t.Fatalf("page after %q: %v", p.After, err)
		}
		if len(page) > limit {
			t.Fatalf("page of %d rows, limit %d", len(page), limit)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page)
		p.After = id(page[len(page)-1])
	}
	t.Fatal("the listing does not end")
	return nil
}

func TestListConversationsPages(t *testing.T) {
	s := open(t)
	alice, bob := user(t, s, "alice"), user(t, s, "bob")
	conversation(t, s, bob.ID)
	for range 7 {
		conversation(t, s, alice.ID)
	}
	// Ties: three conversations updated at the same instant are ordered by id.
	if _, err := s.DB().ExecContext(ctx(t), `UPDATE conversations SET updated_at = '2020-01-01Z'
		WHERE id IN (SELECT id FROM conversations WHERE user_id = $1 ORDER BY id LIMIT 3)`, alice.ID); err != nil {
		t.Fatal(err)
	}
	all, err := s.ListConversations(ctx(t), alice.ID, store.Page{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 7 {
		t.Fatalf("%d conversations listed, want 7", len(all))
	}
	for i := 1; i < len(all); i++ {
		a, b := all[i-1], all[i]
		if a.UserID != alice.ID || a.UpdatedAt.Before(b.UpdatedAt) || (a.UpdatedAt.Equal(b.UpdatedAt) && a.ID < b.ID) {
			t.Errorf("listed %s (%v) before %s (%v)", a.ID, a.UpdatedAt, b.ID, b.UpdatedAt)
		}
	}
	ps := pages(t, 3, func(p store.Page) ([]store.Conversation, error) { return s.ListConversations(ctx(t), alice.ID, p) },
		func(c store.Conversation) string { return c.ID })
	if len(ps) != 3 || len(ps[0]) != 3 || len(ps[2]) != 1 {
		t.Errorf("pages of 3: %d pages", len(ps))
	}
	if got := slices.Concat(ps...); !slices.Equal(got, all) {
		t.Errorf("the pages concatenated differ from the whole listing")
	}

	// A turn moves its conversation to the top.
	oldest := all[len(all)-1]
	turn(t, s, alice.ID, oldest.ID, userTurn("hi"))
	if top, err := s.ListConversations(ctx(t), alice.ID, store.Page{Limit: 1}); err != nil || len(top) != 1 || top[0].ID != oldest.ID {
		t.Errorf("after a turn the first conversation is %v, %v; want %s", top, err, oldest.ID)
	}

	_, err = s.ListConversations(ctx(t), alice.ID, store.Page{After: "00000000-0000-0000-0000-000000000000"})
	wantErr(t, "a page after an unknown conversation", err, store.ErrNotFound)
	_, err = s.ListConversations(ctx(t), alice.ID, store.Page{After: "abc"})
	wantErr(t, "a page after a malformed id", err, store.ErrNotFound)
	// The last row of the listing is a valid cursor: an empty page.
	fresh, err := s.ListConversations(ctx(t), alice.ID, store.Page{})
	if err != nil {
		t.Fatal(err)
	}
	if rest, err := s.ListConversations(ctx(t), alice.ID, store.Page{After: fresh[len(fresh)-1].ID}); err != nil || len(rest) != 0 {
		t.Errorf("the page after the last conversation: %v, %v", rest, err)
	}
}

func TestPageLimits(t *testing.T) {
	s := open(t)
	u := user(t, s, "alice")
	if _, err := s.DB().ExecContext(ctx(t), `INSERT INTO conversations (user_id) SELECT $1 FROM generate_series(1, 205)`, u.ID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ limit, want int }{{0, 50}, {-1, 50}, {1, 1}, {200, 200}, {1000, 200}} {
		got, err := s.ListConversations(ctx(t), u.ID, store.Page{Limit: tc.limit})
		if err != nil || len(got) != tc.want {
			t.Errorf("Limit %d: %d conversations, %v; want %d", tc.limit, len(got), err, tc.want)
		}
	}
}

func TestListDocumentsPages(t *testing.T) {
	s := open(t)
	u := user(t, s, "alice")
	kb, err := s.CreateKnowledgeBase(ctx(t), u.ID, store.NewKnowledgeBase{Name: "kb"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.CreateKnowledgeBase(ctx(t), u.ID, store.NewKnowledgeBase{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if docs, err := s.ListDocuments(ctx(t), u.ID, kb.ID, store.Page{}); err != nil || len(docs) != 0 {
		t.Fatalf("the documents of an empty knowledge base: %v, %v", docs, err)
	}
	otherDoc, err := s.CreateDocument(ctx(t), u.ID, other.ID, newDoc("elsewhere"))
	if err != nil {
		t.Fatal(err)
	}
	var created []string
	for i := range 5 {
		d, err := s.CreateDocument(ctx(t), u.ID, kb.ID, newDoc(fmt.Sprint("doc", i)))
		if err != nil {
			t.Fatal(err)
		}
		created = append(created, d.ID)
	}
	all, err := s.ListDocuments(ctx(t), u.ID, kb.ID, store.Page{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range all {
		ids = append(ids, d.ID)
	}
	slices.Reverse(created)
	if !slices.Equal(ids, created) {
		t.Errorf("ListDocuments = %v, want newest first %v", ids, created)
	}
	ps := pages(t, 2, func(p store.Page) ([]store.Document, error) { return s.ListDocuments(ctx(t), u.ID, kb.ID, p) },
		func(d store.Document) string { return d.ID })
	if got := slices.Concat(ps...); len(ps) != 3 || !slices.EqualFunc(got, all, func(a, b store.Document) bool { return a.ID == b.ID }) {
		t.Errorf("pages of 2: %d pages, %d documents", len(ps), len(got))
	}
	_, err = s.ListDocuments(ctx(t), u.ID, kb.ID, store.Page{After: otherDoc.ID})
	wantErr(t, "a page after another knowledge base's document", err, store.ErrNotFound)
}
