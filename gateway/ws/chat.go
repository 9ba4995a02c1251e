package ws

// The chats of a socket: starting, running (through the chat core), cancelling and
// ending them.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/ragway/ragway/gateway/auth"
	core "github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/oai"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// chat is one running chat of a socket.
type chat struct {
	id    string
	model string // canonical, for metrics
	// stored chats (`content` with a conversation store) are turns of a
	// conversation.
	stored bool
	start  time.Time
	ctx    context.Context
	cancel context.CancelFunc
	// turn is the chat's turn in the core.
	turn *core.Turn
	// tokenHead is `{"type":"token","id":…,"text":`.
	tokenHead []byte
	// startWritten is closed once the start frame is written: the chat's
	// own frames wait for it, so they can never overtake it.
	startWritten chan struct{}
	// ended is claimed (false → true) by whoever sends the chat's terminal
	// frame: the generation when it ends, or the reader on cancel.
	ended atomic.Bool
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
		// Its turn ends as cancelled, stored, and then tells the client (done).
		c.cancel()
		return
	case !won:
		return // it is ending on its own: its done or error frame is on the way
	}
	c.cancel()
	s.sendCtrl(frame{chat: c, terminal: true, buf: doneFrame(id, string(sdk.FinishCancelled), c.turn.Usage())})
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
	req, m, aerr := s.parseChat(f)
	if aerr != nil {
		s.sendError(f.ID, aerr)
		return
	}
	p, err := s.h.opts.Gate.Check(s.ctx, s.key, auth.ScopeChat)
	if err != nil {
		e := core.APIError(err)
		s.sendError(f.ID, e)
		if errors.Is(err, auth.ErrRevokedKey) || errors.Is(err, auth.ErrInvalidKey) {
			// The socket's key is no longer a key: the socket ends (1008).
			s.closePolicy(e.Message)
		}
		return
	}
	s.principal = p
	req.Principal, req.Route, req.Arrived, req.RequestID = p, route, time.Now(), "ws-"+oai.NewID()
	ctx, cancel := context.WithCancel(s.ctx)
	c := &chat{id: f.ID, model: m, stored: req.Stored, start: req.Arrived, ctx: ctx, cancel: cancel,
		turn: s.h.opts.Chat.Turn(req), startWritten: make(chan struct{})}
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
	if !c.stored {
		// Start frames of stateless chats go out in the order of their chat frames.
		s.sendCtrl(frame{chat: c, buf: startFrame(c.id, f.Model, "", ""), start: true})
	}
	if wg := s.h.opts.Chats; wg != nil {
		wg.Add(1)
	}
	go s.runChat(c, f.Model)
}

// parseChat validates a chat frame into a turn's request (the caller adds who asks),
// with the model's canonical name.
func (s *socket) parseChat(f *clientFrame) (core.Request, string, *oai.Error) {
	var req core.Request
	if f.Model == "" {
		return req, "", oai.Missing("model")
	}
	m, ok := s.h.b.Model(f.Model)
	if !ok {
		return req, "", oai.ModelNotFound(f.Model)
	}
	if m.Embedding {
		return req, "", oai.Invalid("model", oai.CodeInvalidValue, "the model '%s' is an embedding model", f.Model)
	}
	req.Model = m
	stores := s.h.opts.Chat.Stores()
	switch {
	case f.Regenerate != nil:
		// The conversation's last answer (its message_id), answered again.
		switch {
		case !stores:
			return req, "", oai.Unsupported("regenerate", "this gateway has no database: 'regenerate' is not available")
		case *f.Regenerate == "":
			return req, "", oai.Invalid("regenerate", oai.CodeInvalidValue, "'regenerate' is the message_id of the answer to answer again")
		case !oai.IsNull(f.Messages) || !oai.IsNull(f.Content) || !oai.IsNull(f.ToolResults) || f.System != nil:
			return req, "", oai.Invalid("regenerate", oai.CodeInvalidValue, "'regenerate' answers the answer's question again: send no 'messages', 'content', 'tool_results' or 'system'")
		case f.ConversationID == nil || *f.ConversationID == "":
			return req, "", oai.Missing("conversation_id")
		}
		req.Stored, req.Regenerate, req.ConversationID = true, *f.Regenerate, *f.ConversationID
	case !oai.IsNull(f.Messages) && !oai.IsNull(f.Content):
		return req, "", oai.Invalid("content", oai.CodeInvalidValue, "give either 'messages' (the whole history) or 'content' (one turn, the history kept by the server), not both")
	case !oai.IsNull(f.ToolResults) && (!stores || f.ConversationID == nil || !oai.IsNull(f.Messages)):
		return req, "", oai.Invalid("tool_results", oai.CodeInvalidValue, "'tool_results' answer the tool calls of a stored conversation's last answer: they go with 'conversation_id' on a gateway with a database, not with 'messages' (send the results there as tool messages)")
	case !oai.IsNull(f.Messages) && f.System != nil:
		return req, "", oai.Invalid("system", oai.CodeInvalidValue, "'system' goes with 'content'; with 'messages', send a system message")
	case !oai.IsNull(f.Content) && f.ConversationID != nil && !stores:
		return req, "", oai.Unsupported("conversation_id", "this gateway has no database: 'conversation_id' is not available")
	case !oai.IsNull(f.Messages):
		if f.ConversationID != nil {
			return req, "", oai.Invalid("conversation_id", oai.CodeInvalidValue, "'conversation_id' goes with 'content' (the server keeps the history), not with 'messages'")
		}
		msgs, err := oai.Messages(f.Messages, "messages")
		if err != nil {
			return req, "", err
		}
		req.Messages = msgs
	case !oai.IsNull(f.Content) || !oai.IsNull(f.ToolResults):
		if f.System != nil {
			req.Messages = append(req.Messages, sdk.Message{Role: "system", Content: *f.System})
		}
		results, err := toolResults(f.ToolResults)
		if err != nil {
			return req, "", err
		}
		req.Messages = append(req.Messages, results...)
		if !oai.IsNull(f.Content) {
			content, err := oai.Content(f.Content, "content", false)
			if err != nil {
				return req, "", err
			}
			if stores {
				// Stored: text Postgres cannot store is the client's 400, before any write.
				if err := oai.CheckText("content", content); err != nil {
					return req, "", err
				}
			}
			req.Messages = append(req.Messages, sdk.Message{Role: "user", Content: content})
		}
		if stores {
			if f.System != nil {
				if err := oai.CheckText("system", *f.System); err != nil {
					return req, "", err
				}
			}
			req.Stored = true
			if f.ConversationID != nil {
				if *f.ConversationID == "" {
					return req, "", oai.Invalid("conversation_id", oai.CodeInvalidValue, "'conversation_id' is empty: leave it out to start a new conversation")
				}
				req.ConversationID = *f.ConversationID
			}
		}
	default:
		return req, "", oai.Missing("messages")
	}
	if f.RAG != nil {
		if e := core.CheckRAG(s.h.opts.Chat.Grounds(), *f.RAG); e != nil {
			return req, "", e
		}
		req.RAG = f.RAG
	}
	if !oai.IsNull(f.Params) {
		var p chatParams
		if err := oai.Decode(f.Params, &p, "params"); err != nil {
			return req, "", err
		}
		if k := oai.UnknownField(f.Params, &p); k != "" {
			return req, "", oai.Invalid("params."+k, "unknown_parameter", "unknown parameter 'params.%s'", k)
		}
		if err := p.Unhonoured.Check("params."); err != nil {
			return req, "", err
		}
		sampling, err := p.Sampling("params.")
		if err != nil {
			return req, "", err
		}
		req.Sampling = sampling
		if req.ResponseFormat, err = oai.ResponseFormat(p.ResponseFormat, "params.response_format"); err != nil {
			return req, "", err
		}
		if req.Tools, req.ToolChoice, err = oai.Tools(p.Tools, p.ToolChoice, "params."); err != nil {
			return req, "", err
		}
		req.ParallelToolCalls = p.ParallelToolCalls
	}
	return req, m.Name, nil
}

// toolResults reads a chat frame's tool_results (absent: none): results of the calls
// of a stored conversation's last answer, as the turn's tool messages. Their text is
// checked for the store.
func toolResults(raw json.RawMessage) ([]sdk.Message, *oai.Error) {
	if oai.IsNull(raw) {
		return nil, nil
	}
	var items []json.RawMessage
	if err := oai.Decode(raw, &items, "tool_results"); err != nil {
		return nil, err
	}
	if len(items) == 0 || len(items) > sdk.MaxToolCalls {
		return nil, oai.Invalid("tool_results", oai.CodeInvalidValue, "'tool_results' holds 1 to %d results", sdk.MaxToolCalls)
	}
	out := make([]sdk.Message, len(items))
	for i, it := range items {
		p := fmt.Sprintf("tool_results[%d]", i)
		var r struct {
			ToolCallID *string         `json:"tool_call_id"`
			Content    json.RawMessage `json:"content"`
		}
		if err := oai.Decode(it, &r, p); err != nil {
			return nil, err
		}
		if k := oai.UnknownField(it, &r); k != "" {
			return nil, oai.Invalid(p+"."+k, "unknown_parameter", "unknown parameter '%s.%s'", p, k)
		}
		if r.ToolCallID == nil || *r.ToolCallID == "" {
			return nil, oai.Missing(p + ".tool_call_id")
		}
		content, err := oai.Content(r.Content, p+".content", false)
		if err != nil {
			return nil, err
		}
		for _, f := range []struct{ name, s string }{{".tool_call_id", *r.ToolCallID}, {".content", content}} {
			if err := oai.CheckText(p+f.name, f.s); err != nil {
				return nil, err
			}
		}
		out[i] = sdk.Message{Role: "tool", ToolCallID: *r.ToolCallID, Content: content}
	}
	return out, nil
}

// runChat runs one chat's turn and translates its events into frames: a stored
// chat's start frame once its turn is stored (a stateless chat's was sent by
// startChat), sources, tokens, and the terminal frame (unless a cancel of a stateless
// chat claimed it first). The core stores a stored chat's answer before it tells the
// end.
func (s *socket) runChat(c *chat, modelName string) {
	defer s.forget(c)
	if wg := s.h.opts.Chats; wg != nil {
		defer wg.Done()
	}
	started := !c.stored // a stateless chat's start frame was sent
	reason := sdk.FinishStop
	c.turn.Run(c.ctx, func(e core.Event) error {
		switch e.Kind {
		case core.EventStart:
			if c.stored {
				started = true
				s.sendCtrl(frame{chat: c, buf: startFrame(c.id, modelName, e.ConversationID, e.MessageID), start: true})
			}
		case core.EventSources:
			return s.sendData(c.ctx, frame{chat: c, buf: sourcesFrame(c.id, *e.Grounding)})
		case core.EventDelta:
			for _, d := range e.ToolCalls {
				if err := s.sendData(c.ctx, frame{chat: c, buf: toolCallFrame(c.id, d)}); err != nil {
					return err
				}
			}
			if e.Text == "" {
				return nil
			}
			b := getBuf()
			*b = append(*b, c.tokenHead...)
			*b = oai.AppendString(*b, e.Text)
			*b = append(*b, '}')
			return s.sendData(c.ctx, frame{chat: c, buf: b})
		case core.EventFinish:
			reason = e.FinishReason
		case core.EventDone:
			switch {
			case e.Err != nil:
				s.end(c, e.Err.Status, errorFrame(c.id, e.Err), true)
			case e.FinishReason == sdk.FinishCancelled:
				s.end(c, oai.StatusClientClosed, doneFrame(c.id, string(sdk.FinishCancelled), e.Usage), true)
			default:
				s.end(c, http.StatusOK, doneFrame(c.id, string(reason), e.Usage), true)
			}
		case core.EventError:
			s.end(c, e.Err.Status, errorFrame(c.id, e.Err), started)
		}
		return nil
	})
}

// end records the chat and sends its terminal frame b, unless a cancel already
// answered it. started tells whether the start frame was sent (the terminal frame
// then follows the chat's tokens; else it goes out at once).
func (s *socket) end(c *chat, status int, b *[]byte, started bool) {
	if !c.ended.CompareAndSwap(false, true) {
		putBuf(b)
		s.record(c, oai.StatusClientClosed)
		return
	}
	s.record(c, status) // before the client can see the end
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

// record records the chat's status and duration (the core accounts its tokens).
func (s *socket) record(c *chat, status int) {
	s.h.met.ObserveRequest(route, c.model, status, c.start)
}
