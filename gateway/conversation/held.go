package conversation

import (
	"container/list"
	"slices"
	"sync"

	"github.com/ragway/ragway/gateway/store"
)

// heldBytes bounds the text a gateway holds for the conversations it served last
// (message overhead included): least recently used conversations go first.
const heldBytes = 64 << 20

// messageOverhead is what a held message costs besides its text.
const messageOverhead = 160

// held keeps the final messages of the conversations a gateway served last, so that
// a turn reads from Postgres only the messages it does not hold. It relies on two
// facts of the store: a final message never changes (only an in-progress answer is
// ever updated, once), and the messages of one conversation are inserted one turn at
// a time (under the conversation's row lock), so a message inserted later has a
// higher seq than every message stored before it. What is held about a conversation
// therefore stays true until the conversation is deleted, which the next turn learns
// from the store (not found) and which drops it.
type held struct {
	mu   sync.Mutex
	max  int64
	size int64
	lru  *list.List // of *heldConversation, most recently used first
	byID map[string]*list.Element
}

// heldConversation is what is held about one conversation.
type heldConversation struct {
	id string
	// msgs are final messages, in seq order. A slice once stored is never written
	// to again (updates store new ones), so a reader may use it without the lock.
	msgs []store.Message
	// through: every message of the conversation with a seq up to through is final,
	// and those a prompt may need are in msgs (see budget).
	through int64
	// budget 0: msgs start at the conversation's first message. > 0: the oldest
	// messages that a prompt of that many tokens could not fit are dropped (see
	// trimFor), so msgs serve prompts of at most that budget.
	budget int
	bytes  int64
}

func newHeld(max int64) *held {
	return &held{max: max, lru: list.New(), byID: make(map[string]*list.Element)}
}

// get returns what is held of conversation id, if it can serve a prompt of budget
// tokens (0: unbounded).
func (h *held) get(id string, budget int) (heldConversation, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	el, ok := h.byID[id]
	if !ok {
		return heldConversation{}, false
	}
	c := el.Value.(*heldConversation)
	if c.budget > 0 && (budget <= 0 || budget > c.budget) {
		return heldConversation{}, false
	}
	h.lru.MoveToFront(el)
	return *c, true
}

// put holds msgs (final, in seq order, complete through seq through; trimmed for
// budget) for conversation id, replacing what was held unless that ran further (a
// later turn of the conversation stored it first: either is true, the later one
// serves more).
func (h *held) put(id string, msgs []store.Message, through int64, budget int) {
	c := &heldConversation{id: id, msgs: slices.Clip(msgs), through: through, budget: budget}
	for _, m := range msgs {
		c.bytes += int64(len(m.Content)) + messageOverhead
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if el, ok := h.byID[id]; ok {
		old := el.Value.(*heldConversation)
		if old.through > through {
			h.lru.MoveToFront(el)
			return
		}
		h.remove(el)
	}
	if c.bytes > h.max/8 {
		return // one conversation may not take over what is held
	}
	h.byID[id] = h.lru.PushFront(c)
	h.size += c.bytes
	for h.size > h.max {
		h.remove(h.lru.Back())
	}
}

// extend appends an answer that has just ended (final now) to what is held for
// conversation id, if what is held runs through after, the seq of the message the
// answer follows (nothing of the conversation lies between them: a turn inserts its
// messages and its answer at once).
func (h *held) extend(id string, after int64, answer store.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	el, ok := h.byID[id]
	if !ok {
		return
	}
	c := el.Value.(*heldConversation)
	if c.through < after || c.through >= answer.Seq {
		return
	}
	n := *c
	// What a prompt needs of it; c.msgs is clipped: a new array.
	n.msgs = append(c.msgs, store.Message{Seq: answer.Seq, Role: answer.Role, Content: answer.Content, CompletionTokens: answer.CompletionTokens})
	n.msgs = slices.Clip(n.msgs)
	n.through = answer.Seq
	n.bytes += int64(len(answer.Content)) + messageOverhead
	h.size += n.bytes - c.bytes
	el.Value = &n
	for h.size > h.max && h.lru.Len() > 0 {
		h.remove(h.lru.Back())
	}
}

// drop forgets conversation id.
func (h *held) drop(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if el, ok := h.byID[id]; ok {
		h.remove(el)
	}
}

func (h *held) remove(el *list.Element) {
	c := el.Value.(*heldConversation)
	h.lru.Remove(el)
	delete(h.byID, c.id)
	h.size -= c.bytes
}

// optimisticTokens is the fewest tokens the store counts for a message (see
// db/migrations/00002_begin_turn.sql): never more than the gateway's own estimate.
func optimisticTokens(m store.Message) int { return len(m.Content)/4 + perMessageTokens }

// trimFor drops the oldest of msgs that no prompt of budget tokens (0: unbounded)
// built from msgs and later messages can hold, even at the store's most optimistic
// count (what BeginTurn leaves out for that budget): a message goes when the
// messages after it alone exceed the budget. The last message always stays.
func trimFor(msgs []store.Message, budget int) []store.Message {
	if budget <= 0 {
		return msgs
	}
	newer := 0
	for i := len(msgs) - 1; i >= 0; i-- {
		if newer > budget {
			return msgs[i+1:]
		}
		newer += optimisticTokens(msgs[i])
	}
	return msgs
}
