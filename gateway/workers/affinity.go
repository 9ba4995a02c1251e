package workers

// Prefix affinity: a request whose prompt begins as one a replica was sent recently
// goes back to that replica, whose prompt cache (llama.cpp's slots) likely holds
// that beginning, unless it is busier than the least busy replica by more than
// affinitySlack. The next turn of a conversation (its history), and requests that
// share a system prompt, are computed once instead of on every replica.

import (
	"encoding/binary"
	"hash/maphash"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// prefix is a beginning of a request's prompt: its hash and its size in estimated
// tokens; conversation marks a stored conversation's (it has one replica at a time).
type prefix struct {
	hash         uint64
	tokens       int
	conversation bool
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
	// replica a replica with the longest shared beginning may have, when that
	// beginning is shorter than longAffinityTokens (a longer one is bounded by the
	// replica's capacity only: computing it again elsewhere costs more than sharing
	// the replica).
	affinitySlack      = 2
	longAffinityTokens = 512
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
	field := func(s string) { // length first: fields cannot run into each other
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.WriteString(s)
	}
	// The tools come first: templates write them at the head of the prompt.
	tokens := 0
	for _, t := range req.Tools {
		field(t.Name)
		field(t.Description)
		field(string(t.Parameters))
		tokens += (len(t.Name) + len(t.Description) + len(t.Parameters)) / 4
	}
	for _, m := range req.Messages {
		field(m.Role)
		field(m.Name)
		field(m.Content)
		field(m.ToolCallID)
		for _, c := range m.ToolCalls {
			field(c.ID)
			field(c.Name)
			field(c.Arguments)
			tokens += (len(c.Name) + len(c.Arguments)) / 4
		}
		tokens += len(m.Content)/4 + 8
		out = append(out, prefix{hash: h.Sum64(), tokens: tokens})
	}
	if req.Prompt != "" {
		// (Sum64 does not end the hash: each KiB goes in once.)
		for i := 1024; i <= len(req.Prompt); i += 1024 {
			h.WriteString(req.Prompt[i-1024 : i])
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
		out = append([]prefix{conversationPrefix(conversation)}, out...)
	}
	return out
}

// conversationPrefix is the beginning that stands for a stored conversation's
// history.
func conversationPrefix(conversation string) prefix {
	var h maphash.Hash
	h.SetSeed(prefixSeed)
	h.WriteString("conversation\x00")
	h.WriteString(conversation)
	return prefix{hash: h.Sum64(), tokens: conversationTokens, conversation: true}
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

// drop forgets p (its ring slot is reused when its turn comes).
func (x *prefixIndex) drop(p prefix) { delete(x.held, p.hash) }

// reset forgets everything: a new process holds nothing.
func (x *prefixIndex) reset() { *x = prefixIndex{} }
