package workers

// Prefix affinity: a request whose prompt begins as one a replica was sent recently
// goes back to that replica, whose prompt cache (llama.cpp's slots) likely holds
// that beginning, unless it is busier than the least busy replica by more than
// affinitySlack. The next turn of a conversation (its history), and requests that
// share a system prompt, are computed once instead of on every replica.

import (
	"hash/maphash"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// prefix is a beginning of a request's prompt: its hash and its size in estimated
// tokens.
type prefix struct {
	hash   uint64
	tokens int
}

// Bounds of the affinity's bookkeeping.
const (
	// maxRequestPrefixes bounds the beginnings of one request looked up (the
	// longest ones).
	maxRequestPrefixes = 64
	// maxReplicaPrefixes bounds the beginnings remembered per replica.
	maxReplicaPrefixes = 4096
	// minAffinityTokens is the shortest shared beginning worth a replica busier
	// than the least busy one.
	minAffinityTokens = 64
	// affinitySlack is how many more outstanding requests than the least busy
	// replica a replica with the longest shared beginning may have.
	affinitySlack = 2
	// conversationTokens weighs a stored conversation's turn: its history, which the
	// replica that served its last turn holds, outweighs any other beginning.
	conversationTokens = 1 << 30
)

// prefixSeed hashes the beginnings of this process's requests.
var prefixSeed = maphash.MakeSeed()

// prefixesOf returns the beginnings of req worth looking up, longest first: its
// messages from the first to each one (hashed in chain), or its raw prompt at every
// KiB; and for a turn of a stored conversation (conversation, the caller's key of
// it; "" for none), the conversation.
func prefixesOf(req sdk.GenerateRequest, conversation string) []prefix {
	var out []prefix
	var h maphash.Hash
	h.SetSeed(prefixSeed)
	tokens := 0
	for _, m := range req.Messages {
		h.WriteString(m.Role)
		h.WriteByte(0)
		h.WriteString(m.Content)
		h.WriteByte(0)
		h.WriteString(m.ToolCallID)
		for _, c := range m.ToolCalls {
			h.WriteString(c.ID)
			h.WriteString(c.Name)
			h.WriteString(c.Arguments)
			tokens += (len(c.Name) + len(c.Arguments)) / 4
		}
		h.WriteByte(1)
		tokens += len(m.Content)/4 + 8
		out = append(out, prefix{hash: h.Sum64(), tokens: tokens})
	}
	if req.Prompt != "" {
		for i := 1024; i <= len(req.Prompt); i += 1024 {
			h.Reset()
			h.WriteString(req.Prompt[:i])
			out = append(out, prefix{hash: h.Sum64(), tokens: i / 4})
		}
	}
	if len(out) > maxRequestPrefixes {
		out = out[len(out)-maxRequestPrefixes:]
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	if conversation != "" {
		h.Reset()
		h.WriteString("conversation\x00")
		h.WriteString(conversation)
		out = append([]prefix{{hash: h.Sum64(), tokens: conversationTokens}}, out...)
	}
	return out
}

// prefixIndex is what a replica was sent recently: the hashes of the beginnings of
// its last requests (at most maxReplicaPrefixes, the oldest forgotten first).
type prefixIndex struct {
	held  map[uint64]struct{}
	order []uint64 // a ring, next is where the next one goes
	next  int
}

// add remembers ps.
func (x *prefixIndex) add(ps []prefix) {
	if x.held == nil {
		x.held = make(map[uint64]struct{}, len(ps))
	}
	for _, p := range ps {
		if _, ok := x.held[p.hash]; ok {
			continue
		}
		if len(x.order) < maxReplicaPrefixes {
			x.order = append(x.order, p.hash)
		} else {
			delete(x.held, x.order[x.next])
			x.order[x.next] = p.hash
			x.next = (x.next + 1) % maxReplicaPrefixes
		}
		x.held[p.hash] = struct{}{}
	}
}

// match is the size of the longest of ps the replica was sent (ps longest first).
func (x *prefixIndex) match(ps []prefix) int {
	for _, p := range ps {
		if _, ok := x.held[p.hash]; ok {
			return p.tokens
		}
	}
	return 0
}

// reset forgets everything: a new process holds nothing.
func (x *prefixIndex) reset() { *x = prefixIndex{} }
