package apitest

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/internal/pgtest"
)

// LastMessage returns the content and status of a stored conversation's last message.
func LastMessage(t testing.TB, st *store.Store, conversationID string) (content, status string) {
	t.Helper()
	if err := st.DB().QueryRow(`SELECT content, status FROM messages WHERE conversation_id = $1 ORDER BY seq DESC LIMIT 1`,
		conversationID).Scan(&content, &status); err != nil {
		t.Fatal(err)
	}
	return content, status
}

// NoInternals fails the test if a client-facing message (what names it) carries
// Postgres's words, driver prefixes or the store's.
func NoInternals(t testing.TB, what, msg string) {
	t.Helper()
	for _, bad := range []string{"store:", "UTF8", "invalid byte sequence", "deadlock", "constraint", "pq:", "0x00", "connection"} {
		if strings.Contains(msg, bad) {
			t.Errorf("%s: message %q carries %q", what, msg, bad)
		}
	}
}

// StoreWithUser opens a real store on a fresh database (closed when the test ends) with
// one user, alice, and returns it and her principal.
func StoreWithUser(t testing.TB) (*store.Store, auth.Principal) {
	t.Helper()
	st, err := store.Open(pgtest.Database(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, err := st.EnsureUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	return st, auth.Principal{UserID: u.ID, UserName: u.Name}
}

// SyncBuffer is a bytes.Buffer that a logger (or any writer) may write while a test
// reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
