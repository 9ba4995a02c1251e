package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync/atomic"

	"github.com/ragway/ragway/gateway/conversation"
	"github.com/ragway/ragway/gateway/oai"
	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/tokens"
	"github.com/ragway/ragway/gateway/workers"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// Backends is what a turn needs of the workers (package workers implements it).
type Backends interface {
	// Generate runs req on model, calling emit with delta events and then one final
	// event; if emit returns an error Generate stops and returns it.
	Generate(ctx context.Context, model string, req sdk.GenerateRequest, emit func(sdk.Event) error) error
}

// Service runs chat turns for every transport.
type Service struct {
	Backends Backends
	// Turns stores conversations; nil: no stored turns (a gateway without a
	// database).
	Turns *conversation.Turns
	// RAG grounds chats in knowledge bases; nil: no retrieval.
	RAG *rag.Service
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (s *Service) log() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// Request is a chat turn as a transport decoded it.
type Request struct {
	// UserID is the caller's.
	UserID string
	// Model is the model that answers, resolved by the transport.
	Model workers.ModelStatus
	// Messages are the request's messages: the whole history of a stateless chat, or
	// the new messages of a stored turn.
	Messages []sdk.Message
	// Stored makes the turn part of a stored conversation: ConversationID ("" for a
	// new one) gets the messages and then the answer.
	Stored         bool
	ConversationID string
	// MaxTokens is the answer's budget (0: unbounded), which the history leaves room
	// for.
	MaxTokens int
	// RAG, when set, grounds the answer in a knowledge base.
	RAG *rag.Params
}

// Turn is a chat turn under way: grounded in its sources, its stored part begun.
type Turn struct {
	svc   *Service
	model string
	// Prompt is what the backend gets: the messages (a stored turn's history fitted
	// to the model's context) with the sources.
	Prompt []sdk.Message
	// Grounding is what retrieval gave (nil without "rag").
	Grounding *rag.Grounding
	// Stored is the stored turn (nil for a stateless chat).
	Stored *conversation.Turn
	// generated counts the tokens the backend produced.
	generated atomic.Int64
}

// Begin grounds r in its knowledge base and begins its stored turn. Its errors are
// the client's to read (*oai.Error): an unknown knowledge base or conversation names
// its param. A stored turn is begun outside ctx's cancellation: once Postgres holds
// it, its end must be stored too.
func (s *Service) Begin(ctx context.Context, r Request) (*Turn, *oai.Error) {
	t := &Turn{svc: s, model: r.Model.Name, Prompt: r.Messages}
	if r.Stored && s.Turns == nil {
		return nil, oai.Unsupported("conversation_id", "this gateway has no database: 'conversation_id' is not available")
	}
	var sourcesPrompt string
	if r.RAG != nil {
		if e := CheckRAG(s.RAG != nil, *r.RAG); e != nil {
			return nil, e
		}
		g, err := s.RAG.Ground(ctx, r.UserID, r.RAG.KnowledgeBase, rag.Question(r.Messages), r.RAG.TopK)
		if err != nil {
			return nil, GroundError(err, r.RAG.KnowledgeBase)
		}
		t.Grounding = &g
		sourcesPrompt = rag.Context(g.Sources)
	}
	if r.Stored {
		st, err := s.Turns.Begin(context.WithoutCancel(ctx), conversation.Request{
			UserID: r.UserID, ConversationID: r.ConversationID, Model: r.Model.Name, Messages: r.Messages,
			ContextLength: r.Model.ContextLength, MaxTokens: r.MaxTokens, Context: sourcesPrompt,
		})
		if err != nil {
			return nil, s.beginError(err, r.ConversationID)
		}
		t.Stored, t.Prompt = st, st.Prompt
		if t.Grounding != nil && len(t.Grounding.Sources) > 0 {
			st.Sources, _ = json.Marshal(t.Grounding.Sources)
		}
	}
	if t.Grounding != nil {
		t.Prompt = rag.Augment(t.Prompt, sourcesPrompt)
	}
	return t, nil
}

// beginError maps an error of beginning the stored turn of conversation id.
func (s *Service) beginError(err error, id string) *oai.Error {
	if errors.Is(err, store.ErrNotFound) {
		return oai.NotFound("conversation", id, "conversation_id")
	}
	e := APIError(err)
	if e.Code == oai.CodeInvalidValue && e.Param == "" {
		e.Param = "messages"
	}
	if e.Status >= http.StatusInternalServerError {
		s.log().Warn("conversation turn not started", "conversation", id, "error", err)
	}
	return e
}

// Generate runs req (whose messages are t.Prompt, or a choice's variant of it) on
// the turn's model. Every event's text is cleaned as it comes out of the backend
// (oai.CleanEmit): what the client reads and what the stored turn keeps are the same
// text. A panic of the backend is an error, not the end of the gateway (generations
// run in their own goroutines). The transport calls Observe for each event it
// delivers.
func (t *Turn) Generate(ctx context.Context, req sdk.GenerateRequest, emit func(sdk.Event) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			t.svc.log().Error("panic in Generate", "model", t.model, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("backend panicked: %v", r)
		}
	}()
	return t.svc.Backends.Generate(ctx, t.model, req, oai.CleanEmit(emit))
}

// Observe records an event the transport delivered: its tokens, and its text for the
// stored turn.
func (t *Turn) Observe(e sdk.Event) {
	t.generated.Add(int64(tokens.Of(e)))
	if t.Stored != nil {
		t.Stored.Observe(e)
	}
}

// Generated is how many tokens the backend was seen to produce: the completion count
// of a generation that ended without a final usage.
func (t *Turn) Generated() int { return int(t.generated.Load()) }

// End stores the end of a stored turn (nothing for a stateless one): err is what the
// generation returned, final its final event, cancelled whether the client went away
// or cancelled. A failure to store it is a NotStored error (5xx), logged here with its
// cause.
func (t *Turn) End(err error, final sdk.Event, cancelled bool) *oai.Error {
	if t.Stored == nil {
		return nil
	}
	if ferr := t.Stored.End(err, final, cancelled, Describe); ferr != nil {
		t.svc.log().Warn("conversation turn not stored", "conversation", t.Stored.Conversation.ID, "message", t.Stored.MessageID, "error", ferr)
		return NotStored(ferr)
	}
	return nil
}
