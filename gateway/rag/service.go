package rag

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ragway/ragway/gateway/store"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// KBLookup finds a user's knowledge base by id or name (*store.Store implements it).
type KBLookup interface {
	KnowledgeBase(ctx context.Context, userID, idOrName string) (store.KnowledgeBase, error)
}

// Service grounds chat requests: the HTTP and WebSocket layers ask it for the sources
// of a question in a knowledge base.
type Service struct {
	KBs       KBLookup
	Retriever *Retriever
	// TopK is the default number of sources (rag.top_k).
	TopK int
	// Timeout bounds a retrieval (default 5s): a slow index never holds an answer up.
	Timeout time.Duration
	// Logger gets the causes of failed retrievals (clients get a warning without
	// them); nil: slog.Default().
	Logger *slog.Logger
}

// MaxTopK bounds a request's top_k.
const MaxTopK = 50

// Grounding is what retrieval gave an answer: its sources, or a warning saying why it
// has none.
type Grounding struct {
	Sources []Source
	Warning string
}

// Ground resolves kb (an id or a name) among userID's knowledge bases and retrieves the
// sources of query: topK of them (0: the default). A knowledge base that is not the
// user's is store.ErrNotFound. A retrieval that fails (the vector store is down or
// slow) is not an error: the answer proceeds without context, and Warning says so.
func (s *Service) Ground(ctx context.Context, userID, kb, query string, topK int) (Grounding, error) {
	if topK <= 0 {
		topK = s.TopK
	}
	if topK <= 0 {
		topK = 4
	}
	topK = min(topK, MaxTopK)
	k, err := s.KBs.KnowledgeBase(ctx, userID, kb)
	if err != nil {
		return Grounding{}, err
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	srcs, err := s.Retriever.Retrieve(rctx, Request{UserID: userID, KBID: k.ID, Query: query, TopK: topK, KB: StoredSettings(k, s.logger())})
	switch {
	case err == nil && len(srcs) == 0:
		return Grounding{Warning: fmt.Sprintf("nothing in the knowledge base %q matched the question: the answer has no sources", k.Name)}, nil
	case err == nil:
		return Grounding{Sources: srcs}, nil
	case ctx.Err() != nil:
		return Grounding{}, ctx.Err()
	}
	s.logger().Warn("retrieval failed: answering without the knowledge base", "kb", k.ID, "error", err)
	if errors.Is(err, context.DeadlineExceeded) {
		return Grounding{Warning: "retrieval timed out: the answer was generated without the knowledge base"}, nil
	}
	return Grounding{Warning: "the knowledge base's index is unavailable: the answer was generated without it"}, nil
}

func (s *Service) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// Params is the "rag" object of a chat request or WebSocket chat frame.
type Params struct {
	KnowledgeBase string `json:"knowledge_base"`
	TopK          int    `json:"top_k"`
}

// Question is what retrieval looks up for a chat: its last user message.
func Question(msgs []sdk.Message) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			return msgs[i].Content
		}
	}
	return ""
}
