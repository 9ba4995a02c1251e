package store

import (
	"encoding/json"
	"time"
)

// User is an account: the owner of API keys, conversations and knowledge bases.
type User struct {
	ID        string
	Name      string
	CreatedAt time.Time
	// Admin: the user's website sessions carry the admin scope.
	Admin bool
}

// Scopes of an API key.
const (
	ScopeChat   = "chat"   // the OpenAI routes, /v1/ws, conversations
	ScopeIngest = "ingest" // knowledge bases and documents
	ScopeAdmin  = "admin"  // /admin routes, and /metrics when it needs a key
)

// APIKey is a stored key: never the key itself, only its SHA-256 and visible prefix.
type APIKey struct {
	ID       string
	UserID   string
	UserName string
	// Prefix is the key's visible start ("rgw_" + 8 characters), unique.
	Prefix string
	// Hash is the SHA-256 of the whole key.
	Hash   []byte
	Name   string
	Scopes []string
	// RPMLimit and TPMLimit are requests and tokens per minute; 0 means unlimited.
	RPMLimit   int
	TPMLimit   int
	CreatedAt  time.Time
	LastUsedAt time.Time // zero: never
	RevokedAt  time.Time // zero: active
	// Kind is KindKey or KindSession.
	Kind string
	// ExpiresAt is when the key stops being accepted (zero: never).
	ExpiresAt time.Time
	// DailyTokenQuota and MonthlyTokenQuota are the key's user's token quotas (UTC
	// days and months, over all the user's keys); 0: none.
	DailyTokenQuota   int64
	MonthlyTokenQuota int64
}

// Revoked reports whether the key was revoked.
func (k APIKey) Revoked() bool { return !k.RevokedAt.IsZero() }

// Expired reports whether the key has expired at now.
func (k APIKey) Expired(now time.Time) bool { return !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt) }

// HasScope reports whether the key carries scope s.
func (k APIKey) HasScope(s string) bool {
	for _, x := range k.Scopes {
		if x == s {
			return true
		}
	}
	return false
}

// NewAPIKey is what CreateAPIKey stores.
type NewAPIKey struct {
	UserID   string
	Prefix   string
	Hash     []byte
	Name     string
	Scopes   []string
	RPMLimit int // 0: unlimited
	TPMLimit int // 0: unlimited
	// Kind is KindKey ("" too) or KindSession (a website session).
	Kind string
	// ExpiresAt, when set, is when the key stops being accepted.
	ExpiresAt time.Time
}

// Kinds of API key.
const (
	KindKey     = "key"
	KindSession = "session"
)

// Conversation is a user's chat with server-side history.
type Conversation struct {
	ID     string
	UserID string
	Title  string
	Model  string
	// SystemPrompt is kept first in every request built from the history.
	SystemPrompt string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Message roles.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Message statuses. An assistant message is InProgress while it is generated, then
// Complete, Cancelled (the client cancelled or went away) or Failed (the backend
// failed): the last two keep the partial text.
const (
	StatusInProgress = "in_progress"
	StatusComplete   = "complete"
	StatusCancelled  = "cancelled"
	StatusFailed     = "failed"
	StatusSuperseded = "superseded"
)

// Message is one message of a conversation.
type Message struct {
	ID               string
	ConversationID   string
	Seq              int64 // orders a conversation's messages
	Role             string
	Content          string
	Status           string
	Model            string
	FinishReason     string
	Error            string
	PromptTokens     int
	CompletionTokens int
	// Sources is the JSON array of retrieval sources the answer cited (nil: none).
	Sources json.RawMessage
	// ToolCalls are an assistant message's calls of tools; ToolCallID is, for a tool
	// message, the id of the call it answers.
	ToolCalls   []ToolCall
	ToolCallID  string
	CreatedAt   time.Time
	CompletedAt time.Time // zero while in progress
}

// ToolCall is a call of a tool an assistant message made: the function's name and
// its arguments as JSON text (stored as a JSON array of these objects). Its fields
// are plugin-sdk's ToolCall's, so that the two convert into each other.
type ToolCall struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// NewConversation is what CreateConversation stores.
type NewConversation struct {
	Title        string
	Model        string
	SystemPrompt string
}

// NewMessage is a message a turn adds (user or tool messages, or assistant messages
// a caller supplies as history).
type NewMessage struct {
	Role    string
	Content string
	// ToolCalls (assistant messages) and ToolCallID (tool messages): see Message.
	ToolCalls  []ToolCall
	ToolCallID string
}

// Turn is the start of one chat turn in a conversation: the messages the caller adds
// and the assistant message to generate.
type Turn struct {
	// Messages are stored in order before the assistant message.
	Messages []NewMessage
	// Model is the model that answers (stored on the assistant message and as the
	// conversation's last model).
	Model string
	// SystemPrompt, when non-nil, replaces the conversation's system prompt.
	SystemPrompt *string
	// Budget, when > 0, is the prompt size in tokens the history is for: earlier
	// messages that cannot fit it at any token count the gateway estimates are not
	// returned. 0 returns the whole history.
	Budget int
	// After, when > 0, is the seq of the last message of the conversation the caller
	// holds, AfterID its id: the caller holds every message up to it, and the history
	// starts after it, untrimmed (Budget applies to a history read from the start).
	After   int64
	AfterID string
	// Regenerate, an answer's id, answers that answer's question again: Messages is
	// empty, and the answer must be the conversation's last message (superseded ones
	// aside), finished. It is left out of the new answer's prompt, and superseded
	// when the new answer completes (FinishMessage).
	Regenerate string
}

// TurnStarted is what BeginTurn stored.
type TurnStarted struct {
	Conversation Conversation
	// MessageIDs are the ids of Turn.Messages, in order.
	MessageIDs []string
	// AssistantMessageID is the in-progress assistant message.
	AssistantMessageID string
	// History is every message of the conversation after After and before the
	// assistant message, oldest first, this turn's messages included (in-progress
	// messages of other turns excluded; read from the start with Turn.Budget, the
	// oldest that cannot fit it too). Only this turn's messages carry their times,
	// model, finish reason and prompt tokens.
	History []Message
	// After is Turn.After when message Turn.AfterID still stands there, else 0: the
	// history is read from the start, and what the caller held is void (Postgres
	// lost turns it had not yet written to disk, in a crash, or was restored to an
	// earlier point).
	After int64
	// Pending is the lowest seq of the conversation's messages after After that were
	// still in progress (answers of other turns), 0 when none was: every message
	// before it is final (and final messages never change).
	Pending int64
}

// Finish is how an assistant message ended.
type Finish struct {
	// Status is StatusComplete, StatusCancelled or StatusFailed.
	Status           string
	Content          string
	FinishReason     string
	Error            string
	PromptTokens     int
	CompletionTokens int
	Sources          json.RawMessage
	// ToolCalls are the calls of tools the answer made.
	ToolCalls []ToolCall
}

// Usage is one served request's accounting row.
type Usage struct {
	UserID           string
	APIKeyID         string
	Model            string
	Route            string
	PromptTokens     int
	CompletionTokens int
}

// KnowledgeBase is a user's named collection of documents.
type KnowledgeBase struct {
	ID             string
	UserID         string
	Name           string
	Description    string
	EmbeddingModel string
	// Retrieval is the knowledge base's own retrieval settings, a JSON object
	// (gateway/rag.Settings; "{}": the gateway's).
	Retrieval string
	CreatedAt time.Time
}

// NewKnowledgeBase is what CreateKnowledgeBase stores.
type NewKnowledgeBase struct {
	// Name is unique among the user's knowledge bases (1 to 200 bytes).
	Name        string
	Description string
	// EmbeddingModel is the model its chunks are embedded with ("": none, lexical
	// retrieval only).
	EmbeddingModel string
	// Retrieval is its own retrieval settings, a JSON object; "": none.
	Retrieval string
}

// Document statuses.
const (
	DocPending = "pending"
	DocIndexed = "indexed"
	DocFailed  = "failed"
)

// Document is a file or text ingested into a knowledge base.
type Document struct {
	ID         string
	KBID       string
	Title      string
	Source     string
	MimeType   string
	SHA256     []byte
	Bytes      int64
	Status     string
	Error      string
	ChunkCount int
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// NewDocument is what CreateDocument stores (status pending).
type NewDocument struct {
	Title    string
	Source   string
	MimeType string
	SHA256   []byte
	Bytes    int64
}

// Page bounds a listing: at most Limit rows (default 50, at most 200) after the row
// whose id is After (empty: from the start).
type Page struct {
	Limit int
	After string
}
