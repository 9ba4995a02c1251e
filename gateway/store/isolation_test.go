package store_test

import (
	"strings"
	"testing"

	"github.com/ragway/ragway/gateway/store"
)

// TestIsolation: every method reading, changing or deleting a user's rows answers
// ErrNotFound to another user, and to ids that are not UUIDs.
func TestIsolation(t *testing.T) {
	s := open(t)
	alice, bob := user(t, s, "alice"), user(t, s, "bob")
	conv := conversation(t, s, alice.ID)
	started := turn(t, s, alice.ID, conv.ID, userTurn("secret question"))
	kb, err := s.CreateKnowledgeBase(ctx(t), alice.ID, store.NewKnowledgeBase{Name: "private"})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := s.CreateDocument(ctx(t), alice.ID, kb.ID, newDoc("secret"))
	if err != nil {
		t.Fatal(err)
	}

	type call struct {
		name string
		fn   func(userID, convID, msgID, kbID, kbName, docID string) error
	}
	calls := []call{
		{"GetConversation", func(u, c, _, _, _, _ string) error { _, err := s.GetConversation(ctx(t), u, c); return err }},
		{"ListMessages", func(u, c, _, _, _, _ string) error { _, err := s.ListMessages(ctx(t), u, c); return err }},
		{"ListConversations after", func(u, c, _, _, _, _ string) error {
			_, err := s.ListConversations(ctx(t), u, store.Page{After: c})
			return err
		}},
		{"BeginTurn", func(u, c, _, _, _, _ string) error { _, err := s.BeginTurn(ctx(t), u, c, userTurn("x")); return err }},
		{"FinishMessage", func(u, _, m, _, _, _ string) error {
			_, err := s.FinishMessage(ctx(t), u, m, store.Finish{Status: store.StatusComplete, Content: "stolen"})
			return err
		}},
		{"DeleteConversation", func(u, c, _, _, _, _ string) error { return s.DeleteConversation(ctx(t), u, c) }},
		{"KnowledgeBase by id", func(u, _, _, k, _, _ string) error { _, err := s.KnowledgeBase(ctx(t), u, k); return err }},
		{"KnowledgeBase by name", func(u, _, _, _, n, _ string) error { _, err := s.KnowledgeBase(ctx(t), u, n); return err }},
		{"CreateDocument", func(u, _, _, k, _, _ string) error { _, err := s.CreateDocument(ctx(t), u, k, newDoc("b")); return err }},
		{"CreateDocument duplicate", func(u, _, _, k, _, _ string) error {
			_, err := s.CreateDocument(ctx(t), u, k, newDoc("secret"))
			return err
		}},
		{"ListDocuments", func(u, _, _, k, _, _ string) error { _, err := s.ListDocuments(ctx(t), u, k, store.Page{}); return err }},
		{"ListDocuments after", func(u, _, _, k, _, d string) error {
			_, err := s.ListDocuments(ctx(t), u, k, store.Page{After: d})
			return err
		}},
		{"Document", func(u, _, _, k, _, d string) error { _, err := s.Document(ctx(t), u, k, d); return err }},
		{"DeleteDocument", func(u, _, _, k, _, d string) error { return s.DeleteDocument(ctx(t), u, k, d) }},
		{"DeleteKnowledgeBase", func(u, _, _, k, _, _ string) error { return s.DeleteKnowledgeBase(ctx(t), u, k) }},
	}
	for _, c := range calls {
		wantErr(t, "bob's "+c.name+" of alice's rows", c.fn(bob.ID, conv.ID, started.AssistantMessageID, kb.ID, kb.Name, doc.ID), store.ErrNotFound)
		for _, bad := range []string{"abc", "", conv.ID + "x", "'; DROP TABLE users; --"} {
			if bad == "" && (strings.HasSuffix(c.name, " after") || c.name == "BeginTurn") {
				continue // Page{After: ""}: from the start; BeginTurn in "": a new conversation
			}
			wantErr(t, c.name+" with id "+bad, c.fn(alice.ID, bad, bad, bad, bad, bad), store.ErrNotFound)
			wantErr(t, c.name+" with user id "+bad, c.fn(bad, conv.ID, started.AssistantMessageID, kb.ID, kb.Name, doc.ID), store.ErrNotFound)
		}
	}

	// Bob's own listings show nothing of alice's.
	if list, err := s.ListConversations(ctx(t), bob.ID, store.Page{}); err != nil || len(list) != 0 {
		t.Errorf("bob's conversations: %v, %v", list, err)
	}
	if list, err := s.ListKnowledgeBases(ctx(t), bob.ID); err != nil || len(list) != 0 {
		t.Errorf("bob's knowledge bases: %v, %v", list, err)
	}

	// Alice's rows are untouched.
	msgs, err := s.ListMessages(ctx(t), alice.ID, conv.ID)
	if err != nil || len(msgs) != 2 || msgs[1].Status != store.StatusInProgress || msgs[1].Content != "" {
		t.Fatalf("alice's messages: %+v, %v", msgs, err)
	}
	if got, err := s.GetConversation(ctx(t), alice.ID, conv.ID); err != nil || !got.UpdatedAt.Equal(started.Conversation.UpdatedAt) {
		t.Errorf("alice's conversation: %+v, %v", got, err)
	}
	if docs, err := s.ListDocuments(ctx(t), alice.ID, kb.ID, store.Page{}); err != nil || len(docs) != 1 || docs[0].ID != doc.ID {
		t.Errorf("alice's documents: %+v, %v", docs, err)
	}
	if _, err := s.FinishMessage(ctx(t), alice.ID, started.AssistantMessageID, store.Finish{Status: store.StatusComplete}); err != nil {
		t.Errorf("alice finishing her message: %v", err)
	}
}
