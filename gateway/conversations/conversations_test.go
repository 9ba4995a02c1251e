package conversations

import (
	"context"
	"errors"
	"testing"

	"github.com/ragway/ragway/gateway/store"
)

// fakeStore holds one user's conversations.
type fakeStore struct {
	Store // methods not overridden panic
	convs map[string]store.Conversation
}

func (f *fakeStore) DeleteConversation(_ context.Context, _, id string) error {
	if _, ok := f.convs[id]; !ok {
		return store.ErrNotFound
	}
	delete(f.convs, id)
	return nil
}

func (f *fakeStore) ListConversations(_ context.Context, _ string, p store.Page) ([]store.Conversation, error) {
	var out []store.Conversation
	for _, c := range f.convs {
		if len(out) == p.Size() {
			break
		}
		out = append(out, c)
	}
	return out, nil
}

type held []string

func (h *held) Forget(id string) { *h = append(*h, id) }

func TestDeleteForgetsWhatIsHeld(t *testing.T) {
	st := &fakeStore{convs: map[string]store.Conversation{"a": {ID: "a"}}}
	var h held
	s := New(st, &h)
	if err := s.Delete(context.Background(), "u", "a"); err != nil {
		t.Fatal(err)
	}
	if len(h) != 1 || h[0] != "a" {
		t.Fatalf("forgot %v, want [a]", h)
	}
	// A conversation that is not there is ErrNotFound, and nothing else is forgotten.
	if err := s.Delete(context.Background(), "u", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	if len(h) != 1 {
		t.Fatalf("forgot %v", h)
	}
	if err := New(st, nil).Delete(context.Background(), "u", "b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("without Held: %v", err)
	}
}

func TestListSaysWhetherMoreMayFollow(t *testing.T) {
	st := &fakeStore{convs: map[string]store.Conversation{"a": {ID: "a"}, "b": {ID: "b"}, "c": {ID: "c"}}}
	s := New(st, nil)
	for _, c := range []struct {
		limit int
		n     int
		more  bool
	}{{2, 2, true}, {3, 3, true}, {4, 3, false}, {0, 3, false}} {
		l, err := s.List(context.Background(), "u", Page{Limit: c.limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Conversations) != c.n || l.HasMore != c.more {
			t.Errorf("limit %d: %d conversations, more %v; want %d, %v", c.limit, len(l.Conversations), l.HasMore, c.n, c.more)
		}
	}
}
