package usage

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/store"
)

// writer is a Writer whose availability the test switches.
type writer struct {
	mu     sync.Mutex
	down   bool
	rows   []store.Usage
	writes chan int
}

func (w *writer) RecordUsage(_ context.Context, rows ...store.Usage) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.down {
		return fmt.Errorf("insert: %w", store.ErrUnavailable)
	}
	w.rows = append(w.rows, rows...)
	select {
	case w.writes <- len(rows):
	default:
	}
	return nil
}

func (w *writer) setDown(d bool) {
	w.mu.Lock()
	w.down = d
	w.mu.Unlock()
}

func (w *writer) stored() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.rows)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestAccountWritesRowsAndSpends(t *testing.T) {
	w := &writer{writes: make(chan int, 16)}
	spent := map[string]int{}
	var mu sync.Mutex
	r := New(w, Options{Logger: quiet, Spend: func(p auth.Principal, n int) {
		mu.Lock()
		spent[p.KeyID] += n
		mu.Unlock()
	}})
	p := auth.Principal{KeyID: "k1", UserID: "u1"}
	r.Account(p, "/v1/chat/completions", "chat", 10, 5)
	r.Account(auth.Principal{}, "/v1/chat/completions", "chat", 10, 5) // no key: not accounted
	select {
	case <-w.writes:
	case <-time.After(5 * time.Second):
		t.Fatal("no row written")
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.stored() != 1 || w.rows[0].APIKeyID != "k1" || w.rows[0].UserID != "u1" || w.rows[0].PromptTokens != 10 || w.rows[0].CompletionTokens != 5 {
		t.Fatalf("rows %+v", w.rows)
	}
	if spent["k1"] != 15 || len(spent) != 1 {
		t.Fatalf("spent %v, want k1: 15", spent)
	}
}

func TestRowsWaitForTheDatabase(t *testing.T) {
	w := &writer{down: true, writes: make(chan int, 16)}
	r := New(w, Options{Logger: quiet, RetryEvery: 10 * time.Millisecond})
	p := auth.Principal{KeyID: "k", UserID: "u"}
	for range 3 {
		r.Account(p, "/v1/ws", "chat", 1, 1)
	}
	if n, _ := r.Pending(); n != 3 {
		t.Fatalf("pending %d, want 3 while the database is down", n)
	}
	w.setDown(false)
	deadline := time.Now().Add(5 * time.Second)
	for w.stored() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("stored %d of 3 rows after the database came back", w.stored())
		}
		<-w.writes
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestPendingIsBounded(t *testing.T) {
	w := &writer{down: true}
	r := New(w, Options{Logger: quiet, MaxPending: 2, RetryEvery: time.Hour})
	p := auth.Principal{KeyID: "k", UserID: "u"}
	for range 5 {
		r.Account(p, "/v1/ws", "chat", 1, 1)
	}
	n, dropped := r.Pending()
	if n != 2 || dropped != 3 {
		t.Fatalf("pending %d dropped %d, want 2 and 3", n, dropped)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Close(ctx); err == nil {
		t.Fatal("Close with rows the database never took: want an error")
	}
}
