package conversation

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/tokens"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// Store is what turns need from the repository (*store.Store implements it).
type Store interface {
	BeginTurn(ctx context.Context, userID, conversationID string, t store.Turn) (store.TurnStarted, error)
	QuestionOf(ctx context.Context, userID, conversationID, answer string) (string, error)
	FinishMessage(ctx context.Context, userID, messageID string, f store.Finish) (store.Message, error)
}

// Request starts a turn.
type Request struct {
	UserID string
	// ConversationID continues that conversation; empty starts a new one.
	ConversationID string
	// Model is the canonical name of the model that answers.
	Model string
	// Messages are the caller's new messages (user turns, usually one). System
	// messages among them replace the conversation's system prompt (joined, in order).
	Messages []sdk.Message
	// ContextLength of the model (0: unknown) and MaxTokens of the answer (0: not
	// set) size the history ([Budget]).
	ContextLength int
	MaxTokens     int
	// Context is text the prompt carries besides the history (retrieved sources, a
	// rag.Context): the history is fitted to what it leaves of the budget.
	Context string
	// Regenerate, the id of the conversation's last answer, answers its question
	// again (Messages has no user or assistant message); see store.Turn.Regenerate.
	Regenerate string
}

// HistoryBudget returns the budget of the request's history in tokens ([Budget] less
// its Context), 0 when the model's context length is unknown.
func (r Request) HistoryBudget() int {
	budget := Budget(r.ContextLength, r.MaxTokens)
	if budget > 0 && r.Context != "" {
		budget = max(budget-tokens.Estimate(r.Context)-perMessageTokens, 1)
	}
	return budget
}

// Turn is a started turn. Observe its generation's events, then Finish it.
type Turn struct {
	turns  *Turns
	userID string
	// answerAfter > 0: the seq of this turn's last message, through which the
	// conversation was held when the turn began (the answer is held when it ends).
	answerAfter int64
	// Conversation is the conversation (created by Begin when the request named none).
	Conversation store.Conversation
	// MessageID is the assistant message being generated.
	MessageID string
	// Prompt is the fitted history to generate from.
	Prompt []sdk.Message
	// Sources, when set, are stored with the answer (the JSON array of its
	// retrieval sources).
	Sources json.RawMessage

	mu         sync.Mutex
	text       strings.Builder
	calls      sdk.ToolCallJoiner
	completion int
	finished   bool
}

// Turns begins the turns of conversations on a store. It holds the final messages
// of the conversations it served last, so that a turn reads from the store only the
// messages it does not hold (see held): one per gateway, shared by its protocols.
type Turns struct {
	st   Store
	held *heldLRU
}

// NewTurns returns Turns on st.
func NewTurns(st Store) *Turns {
	return &Turns{st: st, held: newHeldLRU(heldBytes)}
}

// Forget drops what is held of conversation id (deleted: its next turn would learn
// it from the store anyway).
func (ts *Turns) Forget(id string) { ts.held.drop(heldKey(id)) }

// heldKey is the key of conversation id in what is held: its canonical form, as
// Postgres writes uuids (lower case).
func heldKey(id string) string { return strings.ToLower(id) }

// Begin stores the request's messages and an in-progress assistant message (in a new
// conversation when the request names none), in one statement, and returns the turn
// with its prompt. The store's errors pass through (store.ErrNotFound for a conversation of
// another user, store.ErrUnavailable when Postgres is down).
func (ts *Turns) Begin(ctx context.Context, req Request) (*Turn, error) {
	var system *string
	var msgs []store.NewMessage
	for _, m := range req.Messages {
		if m.Role == store.RoleSystem || m.Role == "developer" {
			s := m.Content
			if system != nil {
				s = *system + "\n\n" + s
			}
			system = &s
			continue
		}
		nm := store.NewMessage{Role: m.Role, Content: m.Content, ToolCallID: m.ToolCallID}
		for _, c := range m.ToolCalls {
			nm.ToolCalls = append(nm.ToolCalls, store.ToolCall(c))
		}
		msgs = append(msgs, nm)
	}
	if len(msgs) == 0 && req.Regenerate == "" {
		return nil, CheckTurn(req.Messages)
	}
	budget := req.HistoryBudget()
	t := store.Turn{Messages: msgs, Model: req.Model, SystemPrompt: system, Budget: budget, Regenerate: req.Regenerate}
	key := heldKey(req.ConversationID)
	var known heldConversation
	if req.Regenerate != "" {
		// What is held ends with the answer being regenerated, which the new prompt
		// leaves out: the history is read again.
		ts.held.drop(key)
	} else if key != "" {
		if h, ok := ts.held.get(key, budget); ok {
			known, t.After, t.AfterID = h, last(h.msgs).Seq, last(h.msgs).ID
		}
	}
	started, err := ts.st.BeginTurn(ctx, req.UserID, req.ConversationID, t)
	if errors.Is(err, store.ErrNotFound) && key != "" {
		ts.held.drop(key)
	}
	if err != nil {
		return nil, err
	}
	holdBudget := budget
	switch {
	case t.After > 0 && started.After == t.After:
		// What is held stays trimmed for the budget of the turn that read the history
		// from the start, which may be larger than this one's (max_tokens varies).
		holdBudget = known.budget
	case t.After > 0:
		// The last message held is gone (Postgres lost turns): the history came
		// whole, and what is held is void.
		ts.held.drop(key)
		known = heldConversation{}
	}
	history := append(known.msgs, started.History...) // known.msgs has no spare capacity: a new array
	turn := &Turn{
		turns:        ts,
		userID:       req.UserID,
		Conversation: started.Conversation,
		MessageID:    started.AssistantMessageID,
		Prompt:       Fit(started.Conversation.SystemPrompt, history, budget),
	}
	// Hold what is now known final: everything before the first answer still in
	// progress, or else the whole history, this turn's messages included (then the
	// answer joins it when it ends).
	if started.Pending > 0 {
		i, _ := slices.BinarySearchFunc(history, started.Pending, func(m store.Message, seq int64) int { return cmp.Compare(m.Seq, seq) })
		history = history[:i]
	} else {
		turn.answerAfter = last(history).Seq
	}
	ts.held.put(started.Conversation.ID, trimFor(history, holdBudget), holdBudget)
	return turn, nil
}

// Question returns the text of the question answer answers in userID's conversation
// id ("" when there is none): what a regeneration of it answers again, and retrieves
// sources for. Another user's conversation is store.ErrNotFound, an answer it does not
// have a *store.FieldError.
func (ts *Turns) Question(ctx context.Context, userID, id, answer string) (string, error) {
	return ts.st.QuestionOf(ctx, userID, id, answer)
}

// CheckTurn reports whether msgs can be a turn of a stored conversation: it needs at
// least one message that is not a system message (*store.FieldError "messages").
// Begin checks it too; a caller checks it first to refuse such a turn before it waits
// for a model.
func CheckTurn(msgs []sdk.Message) error {
	for _, m := range msgs {
		if m.Role != store.RoleSystem && m.Role != "developer" {
			return nil
		}
	}
	return &store.FieldError{Field: "messages", Reason: "a turn of a stored conversation needs at least one message that is not a system message"}
}

// Observe records a generation event: its text and tool calls join the answer.
func (t *Turn) Observe(e sdk.Event) {
	n := tokens.Of(e)
	if e.Text == "" && n == 0 && len(e.ToolCalls) == 0 {
		return
	}
	t.mu.Lock()
	t.text.WriteString(e.Text)
	t.calls.Add(e.ToolCalls)
	t.completion += n
	t.mu.Unlock()
}

// Text returns the answer so far.
func (t *Turn) Text() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.text.String()
}

// Outcome is how a generation ended.
type Outcome struct {
	// Status is store.StatusComplete, StatusCancelled or StatusFailed.
	Status       string
	FinishReason string
	// Error describes a failure (for the stored message; never the plugin's stderr).
	Error string
	// Usage is the backend's final count; zero counts fall back to what was observed.
	Usage   sdk.Usage
	Sources json.RawMessage
}

// storedCalls are the calls of an answer that ended with status that its
// conversation keeps: those of a complete answer that have a name and a JSON object
// of arguments.
// A call cut short (a cancelled or failed answer) or malformed would be given back to
// the model with every later turn, which could not render it.
func storedCalls(calls []sdk.ToolCall, status string) []store.ToolCall {
	if status != store.StatusComplete {
		return nil
	}
	var out []store.ToolCall
	for _, c := range calls {
		if args := strings.TrimSpace(c.Arguments); c.Name != "" && strings.HasPrefix(args, "{") && json.Valid([]byte(args)) {
			out = append(out, store.ToolCall(c))
		}
	}
	return out
}

// finishTimeout bounds storing the end of a turn, which may run after the request's
// own context ended (a cancelled chat is still stored).
const finishTimeout = 10 * time.Second

// Finish stores the assistant message with the text observed so far. It is done once;
// later calls return nil. It does not use the request's context: a turn whose client
// went away is still stored.
func (t *Turn) Finish(o Outcome) (store.Message, error) {
	t.mu.Lock()
	if t.finished {
		t.mu.Unlock()
		return store.Message{}, nil
	}
	t.finished = true
	text, completion := t.text.String(), t.completion
	calls := storedCalls(t.calls.Calls(), o.Status)
	t.mu.Unlock()
	if o.Usage.CompletionTokens > 0 {
		completion = o.Usage.CompletionTokens
	}
	ctx, cancel := context.WithTimeout(context.Background(), finishTimeout)
	defer cancel()
	m, err := t.turns.st.FinishMessage(ctx, t.userID, t.MessageID, store.Finish{
		Status:           o.Status,
		Content:          text,
		FinishReason:     o.FinishReason,
		Error:            o.Error,
		PromptTokens:     o.Usage.PromptTokens,
		CompletionTokens: completion,
		Sources:          o.Sources,
		ToolCalls:        calls,
	})
	if err != nil {
		return m, fmt.Errorf("store the answer: %w", err)
	}
	if t.answerAfter > 0 && m.Status != store.StatusSuperseded {
		// (A regeneration that did not complete is superseded: in no history.)
		t.turns.held.extend(t.Conversation.ID, t.answerAfter, m)
	}
	return m, nil
}

// End stores the end of the turn's generation (see OutcomeOf); describe turns a
// generation error into the text stored with the answer (what the client was told:
// clients read it back with the conversation, so a backend's own words, a final event's
// error included, are never stored). It returns the error of storing it.
func (t *Turn) End(err error, final sdk.Event, cancelled bool, describe func(error) string) error {
	o := OutcomeOf(err, final, cancelled)
	if o.Status == store.StatusFailed {
		if err == nil {
			err = errors.New(o.Error)
		}
		o.Error = describe(err)
	}
	o.Sources = t.Sources
	_, ferr := t.Finish(o)
	return ferr
}

// OutcomeOf classifies the end of a generation: err is what Generate returned, final
// its final event (if one came), cancelled whether the client cancelled or went away.
func OutcomeOf(err error, final sdk.Event, cancelled bool) Outcome {
	o := Outcome{FinishReason: string(final.FinishReason)}
	if final.Usage != nil {
		o.Usage = *final.Usage
	}
	switch {
	case cancelled || errors.Is(err, context.Canceled):
		o.Status, o.FinishReason = store.StatusCancelled, string(sdk.FinishCancelled)
	case err != nil:
		o.Status, o.FinishReason, o.Error = store.StatusFailed, string(sdk.FinishError), err.Error()
	case final.FinishReason == sdk.FinishError:
		o.Status, o.Error = store.StatusFailed, final.Error
	default:
		o.Status = store.StatusComplete
		if o.FinishReason == "" {
			o.FinishReason = string(sdk.FinishStop)
		}
	}
	return o
}
