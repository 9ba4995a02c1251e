package store_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/internal/pgtest"
)

// open returns a Store over a fresh migrated database, closed when the test ends.
func open(t testing.TB) *store.Store {
	t.Helper()
	return openURL(t, pgtest.Database(t), store.Options{})
}

func openURL(t testing.TB, url string, opts store.Options) *store.Store {
	t.Helper()
	s, err := store.Open(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// ctx is a context for one test step.
func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func user(t testing.TB, s *store.Store, name string) store.User {
	t.Helper()
	u, err := s.EnsureUser(ctx(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func conversation(t testing.TB, s *store.Store, userID string) store.Conversation {
	t.Helper()
	c, err := s.CreateConversation(ctx(t), userID, store.NewConversation{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func turn(t testing.TB, s *store.Store, userID, conversationID string, tr store.Turn) store.TurnStarted {
	t.Helper()
	ts, err := s.BeginTurn(ctx(t), userID, conversationID, tr)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func userTurn(text string) store.Turn {
	return store.Turn{Model: "m1", Messages: []store.NewMessage{{Role: store.RoleUser, Content: text}}}
}

func hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// wantErr fails the test unless errors.Is(err, target).
func wantErr(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want %v", what, err, target)
	}
}

// count returns the number of rows query (a SELECT count(*)) counts.
func count(t testing.TB, s *store.Store, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRowContext(ctx(t), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}
