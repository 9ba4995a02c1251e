package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/internal/pgtest"
)

// kinds returns the changes' "kind kb doc key origin" lines.
func kinds(cs []store.Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s %s %s %s %s", c.Kind, c.KBID, c.DocumentID, c.KeyPrefix, c.Origin))
	}
	return out
}

// TestChangeFeed: what gateways keep in memory is logged by the database itself, in the
// transaction of the change, whoever makes it: a document indexed (again) or deleted, a
// knowledge base deleted (once, not once per document), a key revoked.
func TestChangeFeed(t *testing.T) {
	url := pgtest.Database(t)
	gw := openURL(t, url, store.Options{Origin: "gateway-a"})
	tool := openURL(t, url, store.Options{})
	alice := user(t, gw, "alice")
	start, err := gw.LastChange(ctx(t))
	if err != nil || start != 0 {
		t.Fatalf("LastChange of a new database: %d, %v", start, err)
	}
	kb, _ := gw.CreateKnowledgeBase(ctx(t), alice.ID, store.NewKnowledgeBase{Name: "docs"})
	d1, _ := gw.CreateDocument(ctx(t), alice.ID, kb.ID, newDoc("one"))
	d2, _ := gw.CreateDocument(ctx(t), alice.ID, kb.ID, newDoc("two"))
	if _, err := gw.IndexDocument(ctx(t), alice.ID, kb.ID, d1.ID, newChunks(3, "one")); err != nil {
		t.Fatal(err)
	}
	if _, err := tool.IndexDocument(ctx(t), alice.ID, kb.ID, d2.ID, newChunks(2, "two")); err != nil {
		t.Fatal(err)
	}
	if err := gw.FailDocument(ctx(t), alice.ID, kb.ID, d2.ID, "nothing to say"); err != nil {
		t.Fatal(err)
	}
	if err := gw.DeleteDocument(ctx(t), alice.ID, kb.ID, d1.ID); err != nil {
		t.Fatal(err)
	}
	if err := gw.DeleteKnowledgeBase(ctx(t), alice.ID, kb.ID); err != nil {
		t.Fatal(err)
	}
	key, err := gw.CreateAPIKey(ctx(t), store.NewAPIKey{UserID: alice.ID, Prefix: "rgw_feedtest", Hash: hash("k"), Name: "k", Scopes: []string{store.ScopeChat}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // revoking twice is one revocation
		if _, err := gw.RevokeAPIKey(ctx(t), key.Prefix); err != nil {
			t.Fatal(err)
		}
	}

	got, horizon, err := tool.Changes(ctx(t), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf("document_indexed %s %s  gateway-a", kb.ID, d1.ID),
		fmt.Sprintf("document_indexed %s %s  ", kb.ID, d2.ID),
		fmt.Sprintf("document_deleted %s %s  gateway-a", kb.ID, d1.ID),
		fmt.Sprintf("kb_deleted %s   gateway-a", kb.ID),
		"key_revoked   rgw_feedtest gateway-a",
	}
	if g := kinds(got); fmt.Sprint(g) != fmt.Sprint(want) || horizon != 0 {
		t.Fatalf("changes (horizon %d):\n%q\nwant\n%q", horizon, g, want)
	}
	for i := 1; i < len(got); i++ {
		if got[i].ID <= got[i-1].ID {
			t.Fatalf("ids out of order: %+v", got)
		}
	}
	last, err := gw.LastChange(ctx(t))
	if err != nil || last != got[len(got)-1].ID {
		t.Fatalf("LastChange = %d, %v; want %d", last, err, got[len(got)-1].ID)
	}
	rest, _, err := gw.Changes(ctx(t), got[1].ID, 2)
	if err != nil || len(rest) != 2 || rest[0].ID != got[2].ID {
		t.Fatalf("Changes after %d, limit 2: %+v, %v", got[1].ID, rest, err)
	}

	// Pruning old changes moves the horizon to the last one pruned.
	if n, err := gw.PruneChanges(ctx(t), time.Hour); err != nil || n != 0 {
		t.Fatalf("pruning nothing old: %d, %v", n, err)
	}
	if _, err := gw.DB().Exec(`UPDATE changes SET at = now() - interval '2 days' WHERE id <= $1`, got[2].ID); err != nil {
		t.Fatal(err)
	}
	if n, err := gw.PruneChanges(ctx(t), 24*time.Hour); err != nil || n != 3 {
		t.Fatalf("pruning 3 old changes: %d, %v", n, err)
	}
	left, horizon, err := gw.Changes(ctx(t), 0, 100)
	if err != nil || len(left) != 2 || horizon != got[2].ID {
		t.Fatalf("after pruning: %d changes, horizon %d (want 2, %d), %v", len(left), horizon, got[2].ID, err)
	}
}

// TestChangesCommitInOrder: a reader of the feed never finds, below a change it has
// read, a change it had not seen (one that committed later with a lower id): readers
// can follow it by position alone. Many writers index documents concurrently while a
// reader reads on from its position.
func TestChangesCommitInOrder(t *testing.T) {
	s := open(t)
	alice := user(t, s, "alice")
	kb, _ := s.CreateKnowledgeBase(ctx(t), alice.ID, store.NewKnowledgeBase{Name: "docs"})
	const writers, each = 6, 15
	docs := make([]string, writers)
	for i := range docs {
		d, err := s.CreateDocument(ctx(t), alice.ID, kb.ID, newDoc(fmt.Sprint("d", i)))
		if err != nil {
			t.Fatal(err)
		}
		docs[i] = d.ID
	}
	var wg sync.WaitGroup
	for _, doc := range docs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := s.IndexDocument(context.Background(), alice.ID, kb.ID, doc, newChunks(2, "x")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var pos int64
	seen := 0
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		cs, _, err := s.Changes(ctx(t), pos, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			pos = c.ID
			seen++
		}
	}
	cs, _, err := s.Changes(ctx(t), pos, 1000)
	if err != nil {
		t.Fatal(err)
	}
	seen += len(cs)
	if seen != writers*each {
		t.Fatalf("a reader following by position saw %d changes of %d: some committed below its position", seen, writers*each)
	}
}

// TestListenChanges: a committed change wakes the listener.
func TestListenChanges(t *testing.T) {
	s := open(t)
	c, cancel := context.WithCancel(context.Background())
	defer cancel()
	wake := s.ListenChanges(c)
	select {
	case <-wake: // connected: the first wake-up
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up when the listener connected")
	}
	alice := user(t, s, "alice")
	kb, _ := s.CreateKnowledgeBase(ctx(t), alice.ID, store.NewKnowledgeBase{Name: "docs"})
	if err := s.DeleteKnowledgeBase(ctx(t), alice.ID, kb.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wake:
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up for a change")
	}
	cancel()
	for range wake { // closed once ctx ends
	}
}

// TestFailOrphaned: an answer in progress names the gateway generating it; once that
// gateway has not been seen for a while, another gateway marks the answer failed,
// text kept. Answers of live gateways are left alone.
func TestFailOrphaned(t *testing.T) {
	url := pgtest.Database(t)
	a := openURL(t, url, store.Options{Origin: "gateway-a"})
	b := openURL(t, url, store.Options{Origin: "gateway-b"})
	u := user(t, a, "alice")
	dead := turn(t, a, u.ID, conversation(t, a, u.ID).ID, userTurn("left hanging"))
	alive := turn(t, b, u.ID, conversation(t, b, u.ID).ID, userTurn("still going"))
	for _, s := range []*store.Store{a, b} {
		if err := s.Heartbeat(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := b.FailOrphaned(ctx(t), 5*time.Second); err != nil || n != 0 {
		t.Fatalf("with both gateways alive: failed %d, %v", n, err)
	}
	// A stops: its heartbeat ages, and so do both answers.
	if _, err := a.DB().Exec(`UPDATE gateways SET seen_at = now() - interval '10 seconds' WHERE origin = 'gateway-a';
		UPDATE messages SET created_at = created_at - interval '10 seconds'`); err != nil {
		t.Fatal(err)
	}
	if err := b.Heartbeat(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if n, err := b.FailOrphaned(ctx(t), 5*time.Second); err != nil || n != 1 {
		t.Fatalf("after A stopped: failed %d, %v; want 1", n, err)
	}
	var status, why string
	if err := a.DB().QueryRow(`SELECT status, coalesce(error, '') FROM messages WHERE id = $1`, dead.AssistantMessageID).Scan(&status, &why); err != nil {
		t.Fatal(err)
	}
	if status != "failed" || why != store.Orphaned {
		t.Fatalf("A's answer: %s %q", status, why)
	}
	if err := a.DB().QueryRow(`SELECT status FROM messages WHERE id = $1`, alive.AssistantMessageID).Scan(&status); err != nil || status != "in_progress" {
		t.Fatalf("B's answer: %s, %v; want still in progress", status, err)
	}
}
