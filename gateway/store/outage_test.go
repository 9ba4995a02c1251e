package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/internal/pgtest"
)

// warm makes the store's pool hold n connections (n operations at once).
func warm(t *testing.T, s *store.Store, n int) {
	t.Helper()
	conns := make([]interface{ Close() error }, 0, n)
	for range n {
		c, err := s.DB().Conn(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
	if idle := s.DB().Stats().Idle; idle < n {
		t.Fatalf("%d idle connections, want %d", idle, n)
	}
}

func TestOutage(t *testing.T) {
	c := pgtest.NewCluster(t)
	s := openURL(t, c.Database(), store.Options{}) // QueryTimeout 5s
	u := user(t, s, "alice")
	conv := conversation(t, s, u.ID)
	started := turn(t, s, u.ID, conv.ID, userTurn("before the outage"))
	warm(t, s, 5)

	c.Stop()
	ops := map[string]func(ctx context.Context) error{
		"Ping": s.Ping,
		"GetConversation": func(ctx context.Context) error {
			_, err := s.GetConversation(ctx, u.ID, conv.ID)
			return err
		},
		"BeginTurn": func(ctx context.Context) error {
			_, err := s.BeginTurn(ctx, u.ID, conv.ID, userTurn("during the outage"))
			return err
		},
		"FinishMessage": func(ctx context.Context) error {
			_, err := s.FinishMessage(ctx, u.ID, started.AssistantMessageID, store.Finish{Status: store.StatusComplete})
			return err
		},
		"EnsureUser": func(ctx context.Context) error {
			_, err := s.EnsureUser(ctx, "bob")
			return err
		},
		"ListConversations": func(ctx context.Context) error {
			_, err := s.ListConversations(ctx, u.ID, store.Page{})
			return err
		},
	}
	// Several at once too: every pooled connection is dead.
	var wg sync.WaitGroup
	for name, op := range ops {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				err := op(ctx(t))
				wantErr(t, name+" while Postgres is down", err, store.ErrUnavailable)
				if !store.IsUnavailable(err) {
					t.Errorf("IsUnavailable(%v) = false", err)
				}
				if d := time.Since(start); d > time.Second {
					t.Errorf("%s took %v to fail", name, d)
				}
			}()
		}
	}
	wg.Wait()

	c.Start()
	// The same Store works at once: the first call succeeds.
	got, err := s.GetConversation(ctx(t), u.ID, conv.ID)
	if err != nil {
		t.Fatalf("the first call after Postgres is back: %v", err)
	}
	if got.ID != conv.ID {
		t.Fatalf("got conversation %s, want %s", got.ID, conv.ID)
	}
	msgs, err := s.ListMessages(ctx(t), u.ID, conv.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].Content != "before the outage" {
		t.Fatalf("the rows committed before the outage: %+v", msgs)
	}
	if _, err := s.FinishMessage(ctx(t), u.ID, started.AssistantMessageID, store.Finish{Status: store.StatusComplete, Content: "after"}); err != nil {
		t.Fatal(err)
	}
}

// TestRestartBetweenCalls: Postgres restarts while the pool's connections are idle and
// no call sees it down: every pooled connection is dead, and still every call after
// the restart succeeds.
func TestRestartBetweenCalls(t *testing.T) {
	c := pgtest.NewCluster(t)
	s := openURL(t, c.Database(), store.Options{})
	u := user(t, s, "alice")
	for round := range 3 {
		warm(t, s, 8)
		c.Stop()
		c.Start()
		for i := range 10 {
			if _, err := s.ListConversations(ctx(t), u.ID, store.Page{}); err != nil {
				t.Fatalf("round %d, call %d after the restart: %v", round, i, err)
			}
		}
	}
}
