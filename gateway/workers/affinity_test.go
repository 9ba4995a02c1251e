package workers

import (
	"context"
	"fmt"
	"github.com/ragway/ragway/gateway/config"
	"strings"
	"testing"
	"time"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// The beginnings of a request: its messages from the first to each, longest first; a
// turn of the next request of a conversation shares the whole of the one before.
func TestPrefixesOf(t *testing.T) {
	sys := sdk.Message{Role: "system", Content: strings.Repeat("rules ", 200)}
	turn1 := sdk.GenerateRequest{Messages: []sdk.Message{sys, {Role: "user", Content: "q1"}}}
	turn2 := sdk.GenerateRequest{Messages: append(append([]sdk.Message{}, turn1.Messages...), sdk.Message{Role: "assistant", Content: "a1"}, sdk.Message{Role: "user", Content: "q2"})}
	p1, p2 := prefixesOf(turn1, ""), prefixesOf(turn2, "")
	if len(p1) != 2 || len(p2) != 4 || p2[2] != p1[0] || p2[3] != p1[1] || p1[0].tokens <= p1[1].tokens {
		t.Fatalf("prefixes %v and %v", p1, p2)
	}
	other := sdk.GenerateRequest{Messages: []sdk.Message{{Role: "system", Content: "other"}, {Role: "user", Content: "q1"}}}
	if po := prefixesOf(other, ""); po[0] == p1[0] || po[1] == p1[1] {
		t.Fatalf("another system prompt shares a beginning: %v %v", po, p1)
	}
	c := prefixesOf(sdk.GenerateRequest{Messages: []sdk.Message{{Role: "user", Content: "x"}}}, "u/conv")
	if len(c) != 2 || c[0].tokens != conversationTokens {
		t.Fatalf("a stored conversation's turn: %v", c)
	}
	long := make([]sdk.Message, 500)
	for i := range long {
		long[i] = sdk.Message{Role: "user", Content: "m"}
	}
	if got := prefixesOf(sdk.GenerateRequest{Messages: long}, ""); len(got) != maxRequestPrefixes || got[0].tokens <= got[1].tokens {
		t.Fatalf("%d prefixes of 500 messages", len(got))
	}
	var x prefixIndex
	for i := range maxReplicaPrefixes + 10 {
		x.add([]prefix{{hash: uint64(i), tokens: 1}})
	}
	if len(x.held) != maxReplicaPrefixes || x.match([]prefix{{hash: 0, tokens: 1}}) != 0 || x.match([]prefix{{hash: maxReplicaPrefixes + 9, tokens: 7}}) != 7 {
		t.Fatalf("a full index holds %d", len(x.held))
	}
}

// A request sharing a long beginning with what a replica was sent goes back to that
// replica, even when another has fewer outstanding requests, unless that replica is
// busier than the least busy one by more than affinitySlack.
func TestPrefixAffinity(t *testing.T) {
	mgr, release, _ := newFakeManager(t, fakeModel(2, 8, 16), 5*time.Second)
	defer close(release)
	p, _ := mgr.pool("m")
	ctx := context.Background()
	sys := sdk.Message{Role: "system", Content: strings.Repeat("shared sources ", 100)}
	conv := func(q string) []prefix {
		return prefixesOf(sdk.GenerateRequest{Messages: []sdk.Message{sys, {Role: "user", Content: q}}}, "")
	}
	take := func(ps []prefix) grant {
		t.Helper()
		g, err := p.acquire(ctx, 5*time.Second, false, false, ps)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	first := take(conv("q1"))
	// Same system prompt: the same replica, although the other is idle.
	second := take(conv("q2"))
	if second.r != first.r {
		t.Fatal("a request sharing the system prompt went to the other replica")
	}
	// A short shared beginning is not worth it: the least busy replica, each time.
	short := func(q string) []prefix {
		return prefixesOf(sdk.GenerateRequest{Messages: []sdk.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: q}}}, "")
	}
	s1 := take(short("x")) // (2 outstanding on the first replica, none on the other)
	s2 := take(short("y")) // (2 and 1)
	if s1.r == first.r || s2.r != s1.r {
		t.Fatalf("short beginnings: replicas %d, %d (the long one's: %d); want the least busy each time", s1.r.id, s2.r.id, first.r.id)
	}
	// The affine replica takes more while it is at most affinitySlack busier than
	// the least busy one, then no more.
	var more []grant
	for range affinitySlack + 1 { // (2, 3 and 4 outstanding there, 2 on the other)
		g := take(conv("q3"))
		more = append(more, g)
		if g.r != first.r {
			t.Fatal("the affine replica, within the slack, did not take the request")
		}
	}
	g := take(conv("q4")) // (5 outstanding there, 2 on the other)
	if g.r == first.r {
		t.Fatal("the affine replica, busier by more than the slack, took the request")
	}
	for _, x := range append([]grant{first, second, s1, s2, g}, more...) {
		p.release(x)
	}
	// A new process holds nothing: its beginnings are forgotten.
	p.mu.Lock()
	first.r.prefixes.reset()
	p.mu.Unlock()
	if h := first.r.prefixes.match(conv("q1")); h != 0 {
		t.Fatalf("matched %d after a reset", h)
	}
}

// dispatch: least_loaded leaves the shared beginnings aside.
func TestLeastLoadedDispatch(t *testing.T) {
	m := fakeModel(2, 8, 16)
	m.Dispatch = config.DispatchLeastLoaded
	mgr, release, _ := newFakeManager(t, m, 5*time.Second)
	defer close(release)
	p, _ := mgr.pool("m")
	ps := prefixesOf(sdk.GenerateRequest{Messages: []sdk.Message{{Role: "system", Content: strings.Repeat("shared ", 200)}}}, "")
	a, err := p.acquire(context.Background(), time.Second, false, false, ps)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.acquire(context.Background(), time.Second, false, false, ps)
	if err != nil {
		t.Fatal(err)
	}
	if a.r == b.r {
		t.Fatal("least_loaded sent both to the replica of the shared beginning")
	}
	p.release(a)
	p.release(b)
}

// The beginnings of a raw prompt are hashed as it goes (each KiB once): a longer
// prompt shares the beginnings of a shorter one it begins with. The tools come
// first: the same messages with other tools share nothing.
func TestPrefixesOfPromptsAndTools(t *testing.T) {
	short := strings.Repeat("abcdefgh", 3*128) // 3 KiB
	a := prefixesOf(sdk.GenerateRequest{Prompt: short}, "")
	b := prefixesOf(sdk.GenerateRequest{Prompt: short + strings.Repeat("z", 5000)}, "")
	if len(a) != 3 || len(b) != 7 || b[4] != a[0] || b[6] != a[2] {
		t.Fatalf("prompt prefixes %v and %v", a, b)
	}
	msgs := []sdk.Message{{Role: "user", Content: "weather?"}}
	x := prefixesOf(sdk.GenerateRequest{Messages: msgs, Tools: []sdk.Tool{{Name: "get_weather"}}}, "")
	y := prefixesOf(sdk.GenerateRequest{Messages: msgs, Tools: []sdk.Tool{{Name: "get_time"}}}, "")
	if x[0] == y[0] {
		t.Fatal("other tools, the same beginning")
	}
	// Fields cannot run into each other.
	if prefixesOf(sdk.GenerateRequest{Messages: []sdk.Message{{Role: "user", Content: "ab"}}}, "")[0] ==
		prefixesOf(sdk.GenerateRequest{Messages: []sdk.Message{{Role: "usera", Content: "b"}}}, "")[0] {
		t.Fatal("role and content ran into each other")
	}
}

// A stored conversation's history is held by the replica that served its last turn:
// the others forget it, so that its turns do not go back to one that no longer holds
// it.
func TestConversationMovesWithItsLastTurn(t *testing.T) {
	mgr, release, _ := newFakeManager(t, fakeModel(2, 8, 16), 5*time.Second)
	defer close(release)
	p, _ := mgr.pool("m")
	ps := prefixesOf(sdk.GenerateRequest{Messages: []sdk.Message{{Role: "user", Content: "x"}}}, "u/c1")
	p.mu.Lock()
	a, b := p.replicas[0], p.replicas[1]
	p.rememberLocked(a, ps)
	p.rememberLocked(b, ps) // (a turn went to b: a was too busy)
	held := a.prefixes.match(ps[:1]) == 0 && b.prefixes.match(ps[:1]) == conversationTokens
	p.mu.Unlock()
	if !held {
		t.Fatal("the conversation is still held by the replica that served its turn before")
	}
}

// A long shared beginning keeps its replica until that one is full: computing it
// again elsewhere costs more than sharing the replica.
func TestLongBeginningBoundedByCapacity(t *testing.T) {
	mgr, release, _ := newFakeManager(t, fakeModel(2, 4, 16), 5*time.Second)
	defer close(release)
	p, _ := mgr.pool("m")
	sys := sdk.Message{Role: "system", Content: strings.Repeat("long sources ", 400)} // ~1,300 tokens
	var gs []grant
	for i := range 5 {
		ps := prefixesOf(sdk.GenerateRequest{Messages: []sdk.Message{sys, {Role: "user", Content: fmt.Sprint("q", i)}}}, "")
		g, err := p.acquire(context.Background(), time.Second, false, false, ps)
		if err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	for i, g := range gs[:4] {
		if g.r != gs[0].r {
			t.Fatalf("request %d left the replica of the long beginning while it had room", i)
		}
	}
	if gs[4].r == gs[0].r {
		t.Fatal("a full replica took a fifth request")
	}
	for _, g := range gs {
		p.release(g)
	}
}
