package feed_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/feed"
	"github.com/ragway/ragway/gateway/store"
)

// log is a scripted feed: changes, a horizon, wake-ups on demand, failures on demand.
type log struct {
	mu      sync.Mutex
	changes []store.Change
	horizon int64
	fail    error
	wake    chan struct{}
}

func (l *log) Changes(_ context.Context, after int64, limit int) ([]store.Change, int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return nil, 0, l.fail
	}
	var out []store.Change
	for _, c := range l.changes {
		if c.ID > after && len(out) < limit {
			out = append(out, c)
		}
	}
	return out, l.horizon, nil
}

func (l *log) ListenChanges(ctx context.Context) <-chan struct{} { return l.wake }

func (l *log) add(cs ...store.Change) {
	l.mu.Lock()
	l.changes = append(l.changes, cs...)
	l.mu.Unlock()
	l.wake <- struct{}{}
}

// applied records what a follower applied, and lets a test wait for it.
type applied struct {
	mu   sync.Mutex
	ids  []int64
	fail map[int64]int // failures left, by change id
	got  chan struct{}
}

func (a *applied) apply(_ context.Context, c store.Change) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail[c.ID] > 0 {
		a.fail[c.ID]--
		return errors.New("the index is busy")
	}
	a.ids = append(a.ids, c.ID)
	select {
	case a.got <- struct{}{}:
	default:
	}
	return nil
}

func (a *applied) waitFor(t *testing.T, f *feed.Follower, pos int64) []int64 {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for f.Position() < pos {
		select {
		case <-a.got:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("position %d, want %d", f.Position(), pos)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int64(nil), a.ids...)
}

func change(id int64, origin string) store.Change {
	return store.Change{ID: id, Kind: store.ChangeDocumentIndexed, KBID: "kb", DocumentID: fmt.Sprint("d", id), Origin: origin, At: time.Now()}
}

// TestFollowerAppliesInOrder: changes are applied in order from the position on, the
// follower's own skipped, a failed change tried again before any later one, and a
// feed pruned past the position reloads.
func TestFollowerAppliesInOrder(t *testing.T) {
	l := &log{wake: make(chan struct{}, 1)}
	a := &applied{fail: map[int64]int{}, got: make(chan struct{}, 1)}
	reloads := 0
	f := &feed.Follower{Source: l, Origin: "me", Apply: a.apply, Poll: 20 * time.Millisecond,
		Reload: func(context.Context) (int64, error) { reloads++; return 40, nil }}
	l.changes = []store.Change{change(1, ""), change(2, "other")} // before the position: not applied
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx, 2); close(done) }()

	l.add(change(3, "other"), change(4, "me"), change(6, ""))
	if got := a.waitFor(t, f, 6); fmt.Sprint(got) != "[3 6]" {
		t.Fatalf("applied %v, want [3 6] (4 is the follower's own)", got)
	}
	// A change whose apply fails is tried again, and nothing after it goes first.
	l.add(change(7, ""), change(8, ""))
	a.mu.Lock()
	a.fail[7] = 2
	a.mu.Unlock()
	if got := a.waitFor(t, f, 8); fmt.Sprint(got) != "[3 6 7 8]" {
		t.Fatalf("applied %v, want [3 6 7 8]: 7 retried before 8", got)
	}

	// Changes pruned past the position: reload, then read on from where it loaded.
	l.mu.Lock()
	l.changes = []store.Change{change(39, ""), change(40, ""), change(41, "")}
	l.horizon = 39
	l.mu.Unlock()
	l.wake <- struct{}{}
	if got := a.waitFor(t, f, 41); fmt.Sprint(got) != "[3 6 7 8 41]" || reloads != 1 {
		t.Fatalf("after pruning: applied %v with %d reloads, want [3 6 7 8 41] and 1", got, reloads)
	}
	cancel()
	<-done
}

// TestFollowerRetriesWhenTheDatabaseIsAway: a feed that cannot be read is read again
// at the next poll, from the same position.
func TestFollowerRetriesWhenTheDatabaseIsAway(t *testing.T) {
	l := &log{wake: make(chan struct{}, 1), fail: errors.New("database unavailable")}
	a := &applied{got: make(chan struct{}, 1)}
	f := &feed.Follower{Source: l, Apply: a.apply, Poll: 10 * time.Millisecond,
		Reload: func(context.Context) (int64, error) { return 0, nil }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.Run(ctx, 0)
	l.mu.Lock()
	l.changes = []store.Change{change(1, ""), change(2, "")}
	l.mu.Unlock()
	time.Sleep(30 * time.Millisecond)
	if f.Position() != 0 {
		t.Fatalf("position %d while the feed cannot be read", f.Position())
	}
	l.mu.Lock()
	l.fail = nil
	l.mu.Unlock()
	if got := a.waitFor(t, f, 2); fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("applied %v, want [1 2]", got)
	}
}
