package ws

// The chats of a socket: starting, running (through the chat core), cancelling and
// ending them.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/ragway/ragway/gateway/auth"
	core "github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/oai"
	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/tokens"
	"github.com/ragway/ragway/gateway/workers"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// chat is one running chat of a socket.
type chat struct {
	id    string
	model string // canonical, for metrics
	// ctxLen is the model's context length (0: unknown), for fitting history.
	ctxLen int
	// stored chats (`content` with a conversation store) are turns of a
	// conversation; conversationID is "" for a new one.
	stored         bool
	conversationID string
	principal      auth.Principal
	// rag, when set, grounds the chat in a knowledge base.
	rag    *rag.Params
	start  time.Time
	ctx    context.Context
	cancel context.CancelFunc
	// tokenHead is `{"type":"token","id":…,"text":`.
	tokenHead []byte
	// startWritten is closed once the start frame is written: the chat's
	// own frames wait for it, so they can never overtake it.
	startWritten chan struct{}
	// ended is claimed (false → true) by whoever sends the chat's terminal
	// frame: the generation when it ends, or the reader on cancel.
	ended atomic.Bool
	// completion counts the tokens generated so far.
	completion atomic.Int64
	// cancelled is set by a cancel frame of a stored chat, whose terminal frame
	// the generation sends once the partial answer is stored.
	cancelled atomic.Bool
	// terminated is owned by the writer: the terminal frame was written,
	// later frames of the chat are dropped.
	terminated bool
}

// cancelChat answers a cancel frame: the chat's generation is cancelled and the
// chat gets done "cancelled" — at once for a stateless chat, after its partial
// answer is stored for a stored one.
func (s *socket) cancelChat(id string) {
	if err := validID(id); err != nil {
		s.sendError("", err)
		return
	}
	s.mu.Lock()
	c := s.chats[id]
	won := c != nil && !c.stored && c.ended.CompareAndSwap(false, true)
	if won {
		delete(s.chats, id)
	}
	s.mu.Unlock()
	switch {
	case c == nil:
		s.sendError(id, oai.Invalid("id", "unknown_id", "no active chat has id '%s'", id))
		return
	case c.stored:
		c.cancelled.Store(true)
		c.cancel()
		return
	case !won:
		return // it is ending on its own: its done or error frame is on the way
	}
	c.cancel()
	s.sendCtrl(frame{chat: c, terminal: true, buf: doneFrame(id, string(sdk.FinishCancelled), sdk.Usage{CompletionTokens: int(c.completion.Load())})})
}

// startChat validates a chat frame, re-checks the socket's key (a revoked key stops
// at once; the key's rate limits apply per chat) and starts the chat.
func (s *socket) startChat(f *clientFrame) {
	if err := validID(f.ID); err != nil {
		s.sendError("", err)
		return
	}
	// The frame is checked before the key: a refused chat costs no request of the
	// key's limits.
	ctx, cancel := context.WithTimeout(s.ctx, s.h.opts.RequestTimeout)
	c := &chat{id: f.ID, start: time.Now(), ctx: ctx, cancel: cancel, startWritten: make(chan struct{})}
	req, aerr := s.parseChat(f, c)
	if aerr != nil {
		cancel()
		s.sendError(f.ID, aerr)
		return
	}
	p, err := s.h.opts.Gate.Check(s.ctx, s.key, auth.ScopeChat)
	if err != nil {
		cancel()
		e := core.APIError(err)
		s.sendError(f.ID, e)
		if errors.Is(err, auth.ErrRevokedKey) || errors.Is(err, auth.ErrInvalidKey) {
			// The socket's key is no longer a key: the socket ends (1008).
			s.closePolicy(e.Message)
		}
		return
	}
	s.principal, c.principal = p, p
	c.tokenHead = append(c.tokenHead, `{"type":"token","id":`...)
	c.tokenHead = oai.AppendString(c.tokenHead, f.ID)
	c.tokenHead = append(c.tokenHead, `,"text":`...)
	s.mu.Lock()
	switch {
	case s.chats[f.ID] != nil:
		aerr = oai.Invalid("id", "duplicate_id", "a chat with id '%s' is already running", f.ID)
	case len(s.chats) >= s.h.opts.MaxChats:
		aerr = &oai.Error{Status: http.StatusTooManyRequests, Type: oai.TypeRateLimit, Code: "too_many_chats",
			Message: fmt.Sprintf("too many concurrent chats on this socket (at most %d)", s.h.opts.MaxChats)}
	default:
		s.chats[f.ID] = c
	}
	s.mu.Unlock()
	if aerr != nil {
		cancel()
		s.sendError(f.ID, aerr)
		return
	}
	req.RequestID = "ws-" + oai.NewID()
	if !c.stored {
		// Start frames of stateless chats go out in the order of their chat frames.
		s.sendCtrl(frame{chat: c, buf: startFrame(c.id, f.Model, nil), start: true})
	}
	if wg := s.h.opts.Chats; wg != nil {
		wg.Add(1)
	}
	go s.runChat(c, req, f.Model)
}

// parseChat validates a chat frame into a generation request, filling c's model
// fields and whether it is a stored turn.
func (s *socket) parseChat(f *clientFrame, c *chat) (sdk.GenerateRequest, *oai.Error) {
	var req sdk.GenerateRequest
	if f.Model == "" {
		return req, oai.Missing("model")
	}
	m, ok := s.h.b.Model(f.Model)
	if !ok {
		return req, oai.ModelNotFound(f.Model)
	}
	if m.Embedding {
		return req, oai.Invalid("model", oai.CodeInvalidValue, "the model '%s' is an embedding model", f.Model)
	}
	c.model, c.ctxLen = m.Name, m.ContextLength
	switch {
	case !oai.IsNull(f.Messages) && !oai.IsNull(f.Content):
		return req, oai.Invalid("content", oai.CodeInvalidValue, "give either 'messages' (the whole history) or 'content' (one turn, the history kept by the server), not both")
	case !oai.IsNull(f.Messages) && f.System != nil:
		return req, oai.Invalid("system", oai.CodeInvalidValue, "'system' goes with 'content'; with 'messages', send a system message")
	case !oai.IsNull(f.Content) && f.ConversationID != nil && s.h.opts.Conversations == nil:
		return req, oai.Unsupported("conversation_id", "this gateway has no database: 'conversation_id' is not available")
	case !oai.IsNull(f.Messages):
		if f.ConversationID != nil {
			return req, oai.Invalid("conversation_id", oai.CodeInvalidValue, "'conversation_id' goes with 'content' (the server keeps the history), not with 'messages'")
		}
		msgs, err := oai.Messages(f.Messages, "messages")
		if err != nil {
			return req, err
		}
		req.Messages = msgs
	case !oai.IsNull(f.Content):
		content, err := oai.Content(f.Content, "content", false)
		if err != nil {
			return req, err
		}
		if f.System != nil {
			req.Messages = append(req.Messages, sdk.Message{Role: "system", Content: *f.System})
		}
		req.Messages = append(req.Messages, sdk.Message{Role: "user", Content: content})
		if s.h.opts.Conversations != nil {
			// Stored: text Postgres cannot store is the client's 400, before any write.
			if err := oai.CheckText("content", content); err != nil {
				return req, err
			}
			if f.System != nil {
				if err := oai.CheckText("system", *f.System); err != nil {
					return req, err
				}
			}
			c.stored = true
			if f.ConversationID != nil {
				if *f.ConversationID == "" {
					return req, oai.Invalid("conversation_id", oai.CodeInvalidValue, "'conversation_id' is empty: leave it out to start a new conversation")
				}
				c.conversationID = *f.ConversationID
			}
		}
	default:
		return req, oai.Missing("messages")
	}
	if f.RAG != nil {
		if e := core.CheckRAG(s.h.opts.RAG != nil, *f.RAG); e != nil {
			return req, e
		}
		c.rag = f.RAG
	}
	if !oai.IsNull(f.Params) {
		var p chatParams
		if err := oai.Decode(f.Params, &p, "params"); err != nil {
			return req, err
		}
		if k := oai.UnknownField(f.Params, &p); k != "" {
			return req, oai.Invalid("params."+k, "unknown_parameter", "unknown parameter 'params.%s'", k)
		}
		if err := p.Unhonoured.Check("params."); err != nil {
			return req, err
		}
		sampling, err := p.Sampling("params.")
		if err != nil {
			return req, err
		}
		req.Sampling = sampling
	}
	return req, nil
}

// runChat runs one chat: for a stored chat it first stores the turn and sends the
// start frame (a stateless chat's was sent by startChat), then it sends the tokens
// and the terminal frame (unless a cancel of a stateless
// chat claimed it first). A stored chat's answer is stored before its terminal frame
// is sent.
func (s *socket) runChat(c *chat, req sdk.GenerateRequest, modelName string) {
	defer s.forget(c)
	if wg := s.h.opts.Chats; wg != nil {
		defer wg.Done()
	}
	t, e := s.h.core.Begin(c.ctx, core.Request{
		UserID: c.principal.UserID, Model: workers.ModelStatus{Name: c.model, ContextLength: c.ctxLen},
		Messages: req.Messages, Stored: c.stored, ConversationID: c.conversationID, MaxTokens: req.Sampling.MaxTokens, RAG: c.rag,
	})
	if e != nil {
		// A stateless chat's start frame was sent; a stored chat's comes with its turn.
		s.end(c, e.Status, sdk.Usage{}, errorFrame(c.id, e), !c.stored)
		return
	}
	turn := t.Stored
	if c.stored {
		s.sendCtrl(frame{chat: c, buf: startFrame(c.id, modelName, turn), start: true})
	}
	req.Messages = t.Prompt
	if t.Grounding != nil {
		// A cancelled chat fails to send it; its generation then ends at once, and the
		// usual end (stored as cancelled) follows.
		_ = s.sendData(c.ctx, frame{chat: c, buf: sourcesFrame(c.id, *t.Grounding)})
	}
	var (
		final    sdk.Event
		gotFinal bool
		firstTok bool
	)
	err := t.Generate(c.ctx, req, func(e sdk.Event) error {
		t.Observe(e)
		c.completion.Add(int64(tokens.Of(e)))
		if e.Text != "" {
			if !firstTok {
				firstTok = true
				s.h.met.ObserveFirstToken(c.model, c.start)
			}
			b := getBuf()
			*b = append(*b, c.tokenHead...)
			*b = oai.AppendString(*b, e.Text)
			*b = append(*b, '}')
			if err := s.sendData(c.ctx, frame{chat: c, buf: b}); err != nil {
				return err
			}
		}
		if e.Final() {
			final, gotFinal = e, true
		}
		return nil
	})
	var usage sdk.Usage
	if final.Usage != nil {
		usage = *final.Usage
	}
	if usage.CompletionTokens == 0 {
		usage.CompletionTokens = int(c.completion.Load())
	}
	// A generation that ended on its own is not cancelled by a cancel that came
	// after its end.
	cancelled := (c.cancelled.Load() || s.ctx.Err() != nil) && !(err == nil && gotFinal)
	ended := err
	if err == nil && gotFinal && final.FinishReason == sdk.FinishError {
		ended = oai.BackendFailed(final.Error) // stored as the client is told it
	}
	storeErr := t.End(ended, final, cancelled)
	var b *[]byte
	status := http.StatusOK
	switch {
	case storeErr != nil:
		status, b = storeErr.Status, errorFrame(c.id, storeErr)
	case cancelled:
		status, b = oai.StatusClientClosed, doneFrame(c.id, string(sdk.FinishCancelled), usage)
	case err == nil && gotFinal && final.FinishReason == sdk.FinishError:
		e := oai.BackendFailed(final.Error)
		s.h.log.Warn("chat failed", "model", c.model, "status", e.Status, "error", e.Cause)
		status, b = e.Status, errorFrame(c.id, e)
	case err == nil:
		reason := string(final.FinishReason)
		if reason == "" {
			reason = string(sdk.FinishStop)
		}
		b = doneFrame(c.id, reason, usage)
	default:
		e := core.APIError(err)
		if e.Status >= 500 {
			s.h.log.Warn("chat failed", "model", c.model, "status", e.Status, "error", err)
		}
		status, b = e.Status, errorFrame(c.id, e)
	}
	s.end(c, status, usage, b, true)
}

// end records the chat and sends its terminal frame b, unless a cancel already
// answered it. started tells whether the start frame was sent (the terminal frame
// then follows the chat's tokens; else it goes out at once, and the chat, refused
// before it reached a backend, has no usage row: as over HTTP).
func (s *socket) end(c *chat, status int, usage sdk.Usage, b *[]byte, started bool) {
	if !c.ended.CompareAndSwap(false, true) {
		putBuf(b)
		s.record(c, oai.StatusClientClosed, usage, started)
		return
	}
	s.record(c, status, usage, started) // before the client can see the end
	f := frame{chat: c, buf: b, terminal: true}
	if !started {
		s.sendCtrl(f)
		return
	}
	_ = s.sendData(s.ctx, f)
}

// forget removes c from the socket's chats (if a cancel did not already)
// and releases its context.
func (s *socket) forget(c *chat) {
	s.mu.Lock()
	if s.chats[c.id] == c {
		delete(s.chats, c.id)
	}
	s.mu.Unlock()
	c.cancel()
}

// record records the chat's metrics and, when it was served (it reached a
// backend), its usage.
func (s *socket) record(c *chat, status int, u sdk.Usage, served bool) {
	s.h.met.ObserveRequest(route, c.model, status, c.start)
	s.h.met.AddTokens(c.model, u.PromptTokens, u.CompletionTokens)
	if served && s.h.opts.Usage != nil && c.model != "" {
		s.h.opts.Usage.Account(c.principal, route, c.model, u.PromptTokens, u.CompletionTokens)
	}
}
