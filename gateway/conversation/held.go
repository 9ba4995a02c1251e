package conversation

import (
	"container/list"
	"sync"
	"unsafe"

	"github.com/ragway/ragway/gateway/store"
)

// heldBytes bounds the memory a gateway holds for the conversations it served last:
// least recently used conversations go first.
const heldBytes = 64 << 20

// heldMessageSize is what a held message costs besides its text and id: the struct,
// and what the allocator rounds up.
const heldMessageSize = int64(unsafe.Sizeof(store.Message{})) + 16

// heldLRU keeps the final messages of the conversations a gateway served last, so that
// a turn reads from Postgres only the messages it does not hold. It relies on two
// facts of the store: a final message never changes (only an in-progress answer is
// ever updated, once), and the messages of one conversation are inserted one turn at
// a time (under the conversation's row lock), so a message inserted later has a
// higher seq than every message stored before it. What is held of a conversation,
// every message up to the last one held, therefore stays true as long as that last
// message stands: BeginTurn checks it (a Postgres crash may lose the turns not yet on
// disk, and hand their seqs out again), and a deleted conversation is not found.
type heldLRU struct {
	mu   sync.Mutex
	max  int64
	size int64
	lru  *list.List // of *heldConversation, most recently used first
	byID map[string]*list.Element
}

// heldConversation is what is held of one conversation.
type heldConversation struct {
	id string
	// msgs are final messages, in seq order, the last one the anchor: every message
	// of the conversation up to it is final, and those a prompt may need are here
	// (see budget). Only what a prompt and the anchor need is kept of each (seq, id,
	// role, content, completion tokens). A slice once stored is never written to
	// again (updates store new ones), so a reader may use it without the lock.
	msgs []store.Message
	// budget 0: msgs start at the conversation's first message. > 0: the oldest
	// messages that a prompt of that many tokens could not fit are dropped (see
	// trimFor), so msgs serve prompts of at most that budget.
	budget int
	bytes  int64
}

func newHeldLRU(max int64) *heldLRU {
	return &heldLRU{max: max, lru: list.New(), byID: make(map[string]*list.Element)}
}

// get returns what is held of conversation id, if it can serve a prompt of budget
// tokens (0: unbounded).
func (h *heldLRU) get(id string, budget int) (heldConversation, bool) {
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

// put holds msgs (final, in seq order, every message of the conversation up to the
// last one; trimmed for budget) for conversation id, replacing what was held unless
// that ran further (a later turn of the conversation stored it first: either is true,
// the later one serves more).
func (h *heldLRU) put(id string, msgs []store.Message, budget int) {
	if len(msgs) == 0 {
		return
	}
	c := &heldConversation{id: id, msgs: compact(msgs, nil), budget: budget}
	c.bytes = sizeOf(c.msgs)
	h.mu.Lock()
	defer h.mu.Unlock()
	if el, ok := h.byID[id]; ok {
		old := el.Value.(*heldConversation)
		if last(old.msgs).Seq > last(msgs).Seq {
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
	h.evict()
}

// extend appends an answer that has just ended (final now) to what is held of
// conversation id, if what is held ends exactly at after, the seq of the message the
// answer follows (a turn inserts its messages and its answer at once, so nothing of
// its history lies between them; a regeneration's history leaves out the answer it
// replaces, which lies between them and must not be held before it).
func (h *heldLRU) extend(id string, after int64, answer store.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	el, ok := h.byID[id]
	if !ok {
		return
	}
	c := el.Value.(*heldConversation)
	if l := last(c.msgs).Seq; l != after || l >= answer.Seq {
		return
	}
	n := *c
	n.msgs = compact(c.msgs, []store.Message{answer})
	n.bytes = sizeOf(n.msgs)
	h.size += n.bytes - c.bytes
	el.Value = &n
	h.evict()
}

// drop forgets conversation id.
func (h *heldLRU) drop(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if el, ok := h.byID[id]; ok {
		h.remove(el)
	}
}

func (h *heldLRU) evict() {
	for h.size > h.max && h.lru.Len() > 0 {
		h.remove(h.lru.Back())
	}
}

func (h *heldLRU) remove(el *list.Element) {
	c := el.Value.(*heldConversation)
	h.lru.Remove(el)
	delete(h.byID, c.id)
	h.size -= c.bytes
}

// compact returns a and b in a new array of their exact length, with only what a
// prompt and the anchor need of each message (a row read from Postgres carries more).
func compact(a, b []store.Message) []store.Message {
	out := make([]store.Message, 0, len(a)+len(b))
	for _, ms := range [][]store.Message{a, b} {
		for _, m := range ms {
			out = append(out, store.Message{Seq: m.Seq, ID: m.ID, Role: role(m.Role), Content: m.Content, CompletionTokens: m.CompletionTokens,
				ToolCalls: m.ToolCalls, ToolCallID: m.ToolCallID})
		}
	}
	return out
}

// role returns the store's constant for r, so that held messages share it.
func role(r string) string {
	for _, known := range []string{store.RoleUser, store.RoleAssistant, store.RoleSystem, store.RoleTool} {
		if r == known {
			return known
		}
	}
	return r
}

func sizeOf(msgs []store.Message) int64 {
	n := int64(cap(msgs)) * heldMessageSize
	for _, m := range msgs {
		n += int64(len(m.Content) + len(m.ID) + callsLen(m.ToolCalls) + len(m.ToolCallID) + cap(m.ToolCalls)*toolCallSize)
	}
	return n
}

func last(msgs []store.Message) store.Message { return msgs[len(msgs)-1] }

// optimisticTokens is the fewest tokens the store counts for a message (see
// db/migrations/00002_begin_turn.sql): never more than the gateway's own estimate.
func optimisticTokens(m store.Message) int {
	return (len(m.Content)+callsLen(m.ToolCalls))/4 + perMessageTokens
}

// toolCallSize is what a store.ToolCall takes besides its text.
const toolCallSize = int(unsafe.Sizeof(store.ToolCall{}))

// callsLen is the length of the text of calls (their ids, names and arguments): no
// more than the store counts of their JSON.
func callsLen(calls []store.ToolCall) int {
	n := 0
	for _, c := range calls {
		n += len(c.ID) + len(c.Name) + len(c.Arguments)
	}
	return n
}

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
