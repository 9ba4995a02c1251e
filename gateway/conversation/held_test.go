package conversation

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ragway/ragway/gateway/store"
)

func msgs(seqs ...int64) []store.Message {
	out := make([]store.Message, len(seqs))
	for i, s := range seqs {
		out[i] = store.Message{Seq: s, Role: store.RoleUser, Content: fmt.Sprintf("message %d", s)}
	}
	return out
}

func seqs(ms []store.Message) []int64 {
	var out []int64
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

func TestHeldExtendsOnlyWithoutGap(t *testing.T) {
	h := newHeldLRU(1 << 20)
	h.put("c", msgs(1, 2, 3), 0)
	// Another turn's put that read less does not replace what ran further.
	h.put("c", msgs(1, 2), 0)
	if got, ok := h.get("c", 0); !ok || !slices.Equal(seqs(got.msgs), []int64{1, 2, 3}) {
		t.Fatalf("after a put that ran less: %v (%v), want 1 2 3", seqs(got.msgs), ok)
	}
	// An answer after message 5 cannot join what runs through 3: 4 and 5 are not held.
	h.extend("c", 5, msgs(6)[0])
	if got, _ := h.get("c", 0); last(got.msgs).Seq != 3 {
		t.Fatalf("an answer after an unheld message was held: %v", seqs(got.msgs))
	}
	// An answer after message 3 joins; one already held does not again.
	h.extend("c", 3, msgs(7)[0])
	h.extend("c", 3, msgs(7)[0])
	if got, _ := h.get("c", 0); !slices.Equal(seqs(got.msgs), []int64{1, 2, 3, 7}) {
		t.Fatalf("after the answer: %v, want 1 2 3 7", seqs(got.msgs))
	}
	// What is held runs past the message an answer follows (a regeneration's answer
	// follows its question, and the answer it replaces, held by a late extend, lies
	// between them): the answer does not join, or both would be in later prompts.
	h.put("r", msgs(1, 2), 0)
	h.extend("r", 2, msgs(3)[0]) // the old answer, ended late
	h.extend("r", 2, msgs(4)[0]) // the regenerated answer to message 2
	if got, _ := h.get("r", 0); !slices.Equal(seqs(got.msgs), []int64{1, 2, 3}) {
		t.Fatalf("an answer after message 2 joined what runs through 3: %v", seqs(got.msgs))
	}
	h.drop("c")
	if _, ok := h.get("c", 0); ok {
		t.Fatal("a dropped conversation is still held")
	}
}

// What is held of a message is what a prompt and the anchor need, in an array of
// its own, and counted.
func TestHeldKeepsLittleAndCountsIt(t *testing.T) {
	h := newHeldLRU(1 << 20)
	row := store.Message{Seq: 1, ID: "0190a5c4-7e1b-7c3d-8f00-123456789abc", Role: "user", Content: "hello",
		Status: store.StatusComplete, Model: "m", Sources: []byte(`[{"n":1}]`), CompletionTokens: 3}
	rows := append(make([]store.Message, 0, 64), row)
	h.put("c", rows, 0)
	got, _ := h.get("c", 0)
	want := store.Message{Seq: 1, ID: row.ID, Role: store.RoleUser, Content: "hello", CompletionTokens: 3}
	if len(got.msgs) != 1 || cap(got.msgs) != 1 || !reflect.DeepEqual(got.msgs[0], want) {
		t.Fatalf("held %+v (cap %d), want %+v", got.msgs, cap(got.msgs), want)
	}
	if wantSize := heldMessageSize + int64(len("hello")+len(row.ID)); h.size != wantSize || got.bytes != wantSize {
		t.Fatalf("counted %d (%d), want %d", h.size, got.bytes, wantSize)
	}
	h.extend("c", 1, store.Message{Seq: 2, ID: "x", Role: store.RoleAssistant, Content: "hi", Sources: []byte("[]")})
	if got, _ := h.get("c", 0); cap(got.msgs) != 2 || got.msgs[1].Sources != nil || h.size != got.bytes {
		t.Fatalf("after extend: %+v (cap %d), %d counted, %d held", got.msgs, cap(got.msgs), h.size, got.bytes)
	}
}

func TestHeldServesSmallerBudgetsOnly(t *testing.T) {
	h := newHeldLRU(1 << 20)
	h.put("c", msgs(1, 2), 100)
	for budget, want := range map[int]bool{0: false, 50: true, 100: true, 101: false} {
		if _, ok := h.get("c", budget); ok != want {
			t.Errorf("held for budget 100, asked for %d: %v, want %v", budget, ok, want)
		}
	}
	h.put("d", msgs(1, 2), 0)
	if _, ok := h.get("d", 1000); !ok {
		t.Error("a whole history does not serve a budget")
	}
}

func TestHeldEvictsLeastRecentlyUsed(t *testing.T) {
	h := newHeldLRU(8 * sizeOf(msgs(1, 2, 3))) // 8 conversations of 3 messages
	for i := range 9 {
		h.put(fmt.Sprint(i), msgs(1, 2, 3), 0)
		if i == 7 {
			h.get("0", 0) // 0 is used again: 1 is the least recently used
		}
	}
	if _, ok := h.get("1", 0); ok {
		t.Error("the least recently used conversation is still held")
	}
	for _, id := range []string{"0", "2", "8"} {
		if _, ok := h.get(id, 0); !ok {
			t.Errorf("conversation %s was evicted", id)
		}
	}
	if h.size > h.max || h.lru.Len() != 8 {
		t.Errorf("%d conversations, %d bytes held; bound %d", h.lru.Len(), h.size, h.max)
	}
	// One conversation larger than an eighth of the bound is not held.
	big := []store.Message{{Seq: 1, Content: strings.Repeat("x", int(h.max/8))}}
	h.put("big", big, 0)
	if _, ok := h.get("big", 0); ok {
		t.Error("a conversation of more than an eighth of the bound is held")
	}
}

func TestTrimForDropsWhatNoPromptCanHold(t *testing.T) {
	// Each message costs len/4 + 8 = 10 tokens at the optimistic count.
	ms := msgs(1, 2, 3, 4, 5)
	cases := []struct {
		budget int
		want   []int64
	}{
		{0, []int64{1, 2, 3, 4, 5}},
		{40, []int64{1, 2, 3, 4, 5}}, // 1 stays: the 40 tokens after it fit
		{39, []int64{2, 3, 4, 5}},
		{10, []int64{4, 5}},
		{1, []int64{5}}, // the last always stays
	}
	for _, c := range cases {
		if got := seqs(trimFor(ms, c.budget)); !slices.Equal(got, c.want) {
			t.Errorf("budget %d: %v, want %v", c.budget, got, c.want)
		}
	}
}

// What trimFor drops for a budget is never part of a prompt of that budget or less,
// whatever messages follow: Fit over what is held and later messages is Fit over the
// whole history.
func TestTrimForKeepsWhatFitNeeds(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 9))
	words := []string{"a", "bb", "数据库", "é", "hello world", "x y z", strings.Repeat("q", 50)}
	text := func(n int) string {
		var b strings.Builder
		for range rng.IntN(n) {
			b.WriteString(words[rng.IntN(len(words))])
		}
		return b.String()
	}
	for range 20000 {
		var history []store.Message
		for i := range 1 + rng.IntN(12) {
			m := store.Message{Seq: int64(i + 1), Role: []string{store.RoleUser, store.RoleAssistant}[rng.IntN(2)], Content: text(6)}
			if m.Role == store.RoleAssistant && rng.IntN(2) == 0 {
				m.CompletionTokens = rng.IntN(80)
			}
			history = append(history, m)
		}
		system := []string{"", "be brief", strings.Repeat("s", rng.IntN(100))}[rng.IntN(3)]
		held := 1 + rng.IntN(120)
		kept := trimFor(history, held)
		for range rng.IntN(3) {
			later := store.Message{Seq: last(history).Seq + 1, Role: store.RoleUser, Content: text(3)}
			history = append(history, later)
			kept = append(slices.Clip(kept), later)
		}
		for budget := 1; budget <= held; budget++ {
			if want, got := Fit(system, history, budget), Fit(system, kept, budget); !reflect.DeepEqual(got, want) {
				t.Fatalf("held for %d, prompt for %d: %v from what is held, want %v", held, budget, got, want)
			}
		}
	}
}
