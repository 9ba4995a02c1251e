package chat

import (
	"github.com/ragway/ragway/gateway/oai"
	"github.com/ragway/ragway/gateway/rag"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// The retrieval types a transport reads and writes, named here so that transports
// depend on the core, not on retrieval.
type (
	// RAGParams ground a chat in a knowledge base ("rag" of a request).
	RAGParams = rag.Params
	// Grounding is what retrieval gave a turn: its sources, or a warning saying why
	// there are none.
	Grounding = rag.Grounding
	// Source is a chunk an answer may cite as [n].
	Source = rag.Source
)

// Kind says what an Event is.
type Kind uint8

// The events of a turn, in the order they come: Start once, Sources once (with
// "rag"), then each choice's Deltas and its Finish, then one terminal event, Done or
// Error. A turn refused before a replica took it has only its Error.
const (
	// EventStart: a replica took the turn (the first of its choices). A stored turn
	// is stored by then: ConversationID and MessageID name it.
	EventStart Kind = iota + 1
	// EventSources: Grounding is what retrieval gave.
	EventSources
	// EventDelta: Choice's next Text (never empty unless Logprobs or ToolCalls are
	// not), its Logprobs, and pieces of its ToolCalls.
	EventDelta
	// EventFinish: Choice ended; FinishReason (stop, length or tool_calls) and Usage
	// are its.
	EventFinish
	// EventDone (terminal): every choice finished, or the turn was cancelled
	// (FinishReason cancelled). Usage is the turn's: prompt tokens once per prompt,
	// completion tokens of every choice. Err, when set, is a NotStored error: the
	// answer was generated but its stored turn could not be ended; a transport tells
	// the client, with the answer.
	EventDone
	// EventError (terminal): the turn failed; Err is what the client is told.
	EventError
)

// Event is one step of a turn, in the shape every transport reads (see Kind).
type Event struct {
	Kind   Kind
	Choice int
	// ConversationID and MessageID name a stored turn (EventStart).
	ConversationID string
	MessageID      string
	Grounding      *Grounding
	Text           string
	Logprobs       []sdk.TokenLogprob
	// ToolCalls are pieces of the choice's tool calls (EventDelta).
	ToolCalls    []sdk.ToolCallDelta
	FinishReason sdk.FinishReason
	Usage        sdk.Usage
	Err          *oai.Error
}
