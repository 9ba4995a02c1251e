package conversations

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ragway/ragway/gateway/store"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// ErrNotFound: no such conversation for this user (another user's is reported the same
// way), or a page's After that is none of theirs. It is the store's class:
// chat.APIError maps it.
var ErrNotFound = store.ErrNotFound

// Store is what the service needs of the repository (*store.Store implements it).
type Store interface {
	CreateConversation(ctx context.Context, userID string, c store.NewConversation) (store.Conversation, error)
	ListConversations(ctx context.Context, userID string, p store.Page) ([]store.Conversation, error)
	GetConversation(ctx context.Context, userID, id string) (store.Conversation, error)
	DeleteConversation(ctx context.Context, userID, id string) error
	RenameConversation(ctx context.Context, userID, id, title string) (store.Conversation, error)
	ListMessages(ctx context.Context, userID, conversationID string) ([]store.Message, error)
	AnswerConversation(ctx context.Context, userID, answer string) (string, bool, error)
}

// Held is what the gateway holds of conversations' histories (*conversation.Turns
// implements it).
type Held interface {
	// Forget drops what is held of conversation id.
	Forget(id string)
}

// Service manages users' conversations. Every method acts for one user: another
// user's conversations do not exist for it. Its methods are safe for concurrent use.
type Service struct {
	store Store
	held  Held
}

// New returns a Service over st; held (may be nil) is what the chat core holds of
// histories, forgotten when a conversation is deleted.
func New(st Store, held Held) *Service {
	return &Service{store: st, held: held}
}

// Conversation is a user's chat with its history stored by the gateway.
type Conversation struct {
	ID    string
	Title string
	// Model is the model that answered last (or the one it was created for).
	Model string
	// SystemPrompt is kept first in every request built from the history.
	SystemPrompt string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Message is one message of a conversation.
type Message struct {
	ID string
	// Role is system, user, assistant or tool.
	Role    string
	Content string
	// Status is in_progress while an answer is generated, then complete, cancelled or
	// failed (the last two keep the partial text), or superseded: an answer a
	// regeneration replaced, or a regeneration that did not complete (kept, in no
	// later prompt).
	Status           string
	Model            string
	FinishReason     string
	Error            string
	PromptTokens     int
	CompletionTokens int
	// Sources is the JSON array of the retrieval sources an answer cited (nil: none).
	Sources json.RawMessage
	// ToolCalls are an assistant message's calls of tools; ToolCallID is, for a tool
	// message, the id of the call it answers.
	ToolCalls  []sdk.ToolCall
	ToolCallID string
	CreatedAt  time.Time
}

// NewConversation is what Create creates.
type NewConversation struct {
	Title        string
	SystemPrompt string
	// Model is a model's canonical name, or empty.
	Model string
}

// MaxPageLimit is the most conversations one page lists.
const MaxPageLimit = store.MaxPageLimit

// Page bounds a listing: at most Limit conversations (0: the default of 50; at most
// MaxPageLimit) after the one whose id is After (empty: from the start).
type Page struct {
	Limit int
	After string
}

// Listing is one page of a user's conversations.
type Listing struct {
	Conversations []Conversation
	// HasMore reports that the page is full: more may follow.
	HasMore bool
}

func toConversation(c store.Conversation) Conversation {
	return Conversation{ID: c.ID, Title: c.Title, Model: c.Model, SystemPrompt: c.SystemPrompt, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
}

func toMessage(m store.Message) Message {
	out := Message{ID: m.ID, Role: m.Role, Content: m.Content, Status: m.Status, Model: m.Model, FinishReason: m.FinishReason,
		Error: m.Error, PromptTokens: m.PromptTokens, CompletionTokens: m.CompletionTokens, Sources: m.Sources,
		ToolCallID: m.ToolCallID, CreatedAt: m.CreatedAt}
	for _, c := range m.ToolCalls {
		out.ToolCalls = append(out.ToolCalls, sdk.ToolCall(c))
	}
	return out
}

// Create creates a conversation without messages.
func (s *Service) Create(ctx context.Context, userID string, c NewConversation) (Conversation, error) {
	cv, err := s.store.CreateConversation(ctx, userID, store.NewConversation{Title: c.Title, Model: c.Model, SystemPrompt: c.SystemPrompt})
	if err != nil {
		return Conversation{}, fmt.Errorf("conversations: create: %w", err)
	}
	return toConversation(cv), nil
}

// List returns a page of the user's conversations.
func (s *Service) List(ctx context.Context, userID string, p Page) (Listing, error) {
	sp := store.Page(p)
	convs, err := s.store.ListConversations(ctx, userID, sp)
	if err != nil {
		return Listing{}, fmt.Errorf("conversations: list: %w", err)
	}
	out := Listing{Conversations: make([]Conversation, 0, len(convs)), HasMore: len(convs) == sp.Size()}
	for _, c := range convs {
		out.Conversations = append(out.Conversations, toConversation(c))
	}
	return out, nil
}

// Get returns the user's conversation id and its messages, oldest first, or
// ErrNotFound.
func (s *Service) Get(ctx context.Context, userID, id string) (Conversation, []Message, error) {
	cv, err := s.store.GetConversation(ctx, userID, id)
	if err != nil {
		return Conversation{}, nil, fmt.Errorf("conversations: get %s: %w", id, err)
	}
	msgs, err := s.store.ListMessages(ctx, userID, id)
	if err != nil {
		return Conversation{}, nil, fmt.Errorf("conversations: messages of %s: %w", id, err)
	}
	out := make([]Message, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, toMessage(m))
	}
	return toConversation(cv), out, nil
}

// AnswerConversation returns the conversation of the user's answer (an assistant
// message id) and whether the answer is its last message (ErrNotFound when the user
// has no such answer).
func (s *Service) AnswerConversation(ctx context.Context, userID, answer string) (string, bool, error) {
	id, last, err := s.store.AnswerConversation(ctx, userID, answer)
	if err != nil {
		return "", false, fmt.Errorf("conversations: answer %s: %w", answer, err)
	}
	return id, last, nil
}

// Rename sets the title of the user's conversation id (ErrNotFound when there is
// none; a title that is not valid is a *store.FieldError naming "title").
func (s *Service) Rename(ctx context.Context, userID, id, title string) (Conversation, error) {
	cv, err := s.store.RenameConversation(ctx, userID, id, title)
	if err != nil {
		return Conversation{}, fmt.Errorf("conversations: rename %s: %w", id, err)
	}
	return toConversation(cv), nil
}

// Delete deletes the user's conversation id with its messages (ErrNotFound when there
// is none) and forgets what is held of it.
func (s *Service) Delete(ctx context.Context, userID, id string) error {
	if err := s.store.DeleteConversation(ctx, userID, id); err != nil {
		return fmt.Errorf("conversations: delete %s: %w", id, err)
	}
	if s.held != nil {
		s.held.Forget(id)
	}
	return nil
}
