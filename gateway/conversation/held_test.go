package conversation

import (
	"fmt"
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
	h := newHeld(1 << 20)
	h.put("c", msgs(1, 2, 3), 3, 0)
	// Another turn's put that read less does not replace what ran further.
	h.put("c", msgs(1, 2), 2, 0)
	if got, ok := h.get("c", 0); !ok || got.through != 3 || !slices.Equal(seqs(got.msgs), []int64{1, 2, 3}) {
		t.Fatalf("after a put that ran less: %v through %d (%v), want 1 2 3 through 3", seqs(got.msgs), got.through, ok)
	}
	// An answer after message 5 cannot join what runs through 3: 4 and 5 are not held.
	h.extend("c", 5, msgs(6)[0])
	if got, _ := h.get("c", 0); got.through != 3 {
		t.Fatalf("an answer after an unheld message was held: through %d", got.through)
	}
	// An answer after message 3 joins; one already held does not again.
	h.extend("c", 3, msgs(7)[0])
	h.extend("c", 3, msgs(7)[0])
	if got, _ := h.get("c", 0); got.through != 7 || !slices.Equal(seqs(got.msgs), []int64{1, 2, 3, 7}) {
		t.Fatalf("after the answer: %v through %d, want 1 2 3 7 through 7", seqs(got.msgs), got.through)
	}
	h.drop("c")
	if _, ok := h.get("c", 0); ok {
		t.Fatal("a dropped conversation is still held")
	}
}

func TestHeldServesSmallerBudgetsOnly(t *testing.T) {
	h := newHeld(1 << 20)
	h.put("c", msgs(1, 2), 2, 100)
	for budget, want := range map[int]bool{0: false, 50: true, 100: true, 101: false} {
		if _, ok := h.get("c", budget); ok != want {
			t.Errorf("held for budget 100, asked for %d: %v, want %v", budget, ok, want)
		}
	}
	h.put("d", msgs(1, 2), 2, 0)
	if _, ok := h.get("d", 1000); !ok {
		t.Error("a whole history does not serve a budget")
	}
}

func TestHeldEvictsLeastRecentlyUsed(t *testing.T) {
	one := int64(len("message 1") + messageOverhead)
	h := newHeld(8 * 3 * one) // 8 conversations of 3 messages
	for i := range 9 {
		h.put(fmt.Sprint(i), msgs(1, 2, 3), 3, 0)
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
	h.put("big", big, 1, 0)
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
