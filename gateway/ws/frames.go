package ws

// The protocol's frames: decoding and dispatching client frames, encoding server frames.

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ragway/ragway/gateway/auth"
	core "github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/netguard"
	"github.com/ragway/ragway/gateway/oai"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

func (s *socket) sendError(id string, e *oai.Error) {
	s.sendCtrl(frame{buf: errorFrame(id, e)})
}

func errorFrame(id string, e *oai.Error) *[]byte {
	b := getBuf()
	*b = append(*b, `{"type":"error",`...)
	if id != "" {
		*b = append(*b, `"id":`...)
		*b = oai.AppendString(*b, id)
		*b = append(*b, ',')
	}
	*b = append(*b, `"error":`...)
	*b = e.AppendJSON(*b)
	*b = append(*b, '}')
	return b
}

func doneFrame(id, reason string, u sdk.Usage) *[]byte {
	b := getBuf()
	*b = append(*b, `{"type":"done","id":`...)
	*b = oai.AppendString(*b, id)
	*b = append(*b, `,"finish_reason":`...)
	*b = oai.AppendString(*b, reason)
	*b = fmt.Appendf(*b, `,"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`,
		u.PromptTokens, u.CompletionTokens, u.PromptTokens+u.CompletionTokens)
	return b
}

// clientFrame is any client frame; which fields matter depends on Type: a chat
// frame's are chatFields, an auth frame's type and api_key.
type clientFrame struct {
	chatFields
	APIKey string `json:"api_key"`
}

// dispatch handles one client frame.
func (s *socket) dispatch(data []byte) {
	var f clientFrame
	if err := oai.Decode(data, &f, ""); err != nil {
		s.sendError(readID(data), err)
		if !s.authenticated.Load() {
			s.closePolicy("the first frame must be an auth frame")
		}
		return
	}
	if !s.authenticated.Load() {
		// A socket opened without a key must authenticate with its first frame.
		s.authenticate(&f)
		return
	}
	switch f.Type {
	case "auth":
		s.sendError(f.ID, oai.Invalid("type", oai.CodeInvalidValue, "this socket is already authenticated"))
	case "ping":
		b := getBuf()
		*b = append(*b, `{"type":"pong"}`...)
		s.sendCtrl(frame{buf: b})
	case "cancel":
		s.cancelChat(f.ID)
	case "chat":
		if e := checkChatFields(data); e != nil {
			s.sendError(f.ID, e)
			return
		}
		s.startChat(&f)
	case "":
		s.sendError(f.ID, oai.Missing("type"))
	default:
		s.sendError(f.ID, oai.Invalid("type", oai.CodeInvalidValue, "unknown frame type '%s': expected chat, cancel or ping", f.Type))
	}
}

// authenticate handles the first frame of a socket opened without a key: it must be
// {"type":"auth","api_key":…}. Anything else, or a bad key, gets an error frame and
// the socket is closed (policy violation).
func (s *socket) authenticate(f *clientFrame) {
	var err error
	switch {
	case f.Type != "auth":
		err = auth.ErrNoKey
	case f.APIKey == "":
		err = auth.ErrNoKey
	default:
		var p auth.Principal
		if p, err = s.h.opts.Gate.Verify(s.ctx, f.APIKey, auth.ScopeChat); err == nil {
			s.key, s.principal = f.APIKey, p
			s.authenticated.Store(true)
			netguard.Authenticated(s.netConn)
			s.conn.SetReadLimit(s.h.opts.MaxFrameBytes)
			_ = s.conn.SetReadDeadline(time.Now().Add(2 * s.h.opts.PingInterval))
			return
		}
	}
	e := core.APIError(err)
	if errors.Is(err, auth.ErrNoKey) {
		e.Message = "authenticate first: send {\"type\":\"auth\",\"api_key\":\"<key>\"} as the first frame, or open the socket with an Authorization header"
	}
	s.sendError(f.ID, e)
	s.closePolicy(e.Message)
}

// readID extracts a string id from a frame that did not decode, if it can.
func readID(data []byte) string {
	var probe struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(data, &probe) != nil {
		return ""
	}
	id, _ := probe.ID.(string)
	return id
}

func validID(id string) *oai.Error {
	switch {
	case id == "":
		return oai.Missing("id")
	case len(id) > maxIDLen:
		return oai.Invalid("id", oai.CodeInvalidValue, "'id' is longer than %d bytes", maxIDLen)
	}
	return nil
}

// startFrame is `{"type":"start","id","model"[,"conversation_id","message_id"]}`.
func startFrame(id, model, conversationID, messageID string) *[]byte {
	b := getBuf()
	*b = append(*b, `{"type":"start","id":`...)
	*b = oai.AppendString(*b, id)
	*b = append(*b, `,"model":`...)
	*b = oai.AppendString(*b, model)
	if conversationID != "" {
		*b = append(*b, `,"conversation_id":`...)
		*b = oai.AppendString(*b, conversationID)
		*b = append(*b, `,"message_id":`...)
		*b = oai.AppendString(*b, messageID)
	}
	*b = append(*b, '}')
	return b
}

// chatParams is the "params" object of a chat frame: OpenAI's sampling parameters,
// response_format, and tools.
type chatParams struct {
	ResponseFormat    json.RawMessage `json:"response_format"`
	Tools             json.RawMessage `json:"tools"`
	ToolChoice        json.RawMessage `json:"tool_choice"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	oai.SamplingParams
	oai.Unhonoured
}

// toolCallFrame is `{"type":"tool_call","id","index","call_id"?,"name"?,"arguments"}`:
// a piece of the answer's call number index (its first has its call id and name,
// later ones fragments of its arguments).
func toolCallFrame(id string, d sdk.ToolCallDelta) *[]byte {
	b := getBuf()
	*b = append(*b, `{"type":"tool_call","id":`...)
	*b = oai.AppendString(*b, id)
	*b = fmt.Appendf(*b, `,"index":%d`, d.Index)
	if d.ID != "" {
		*b = append(*b, `,"call_id":`...)
		*b = oai.AppendString(*b, d.ID)
	}
	if d.Name != "" {
		*b = append(*b, `,"name":`...)
		*b = oai.AppendString(*b, d.Name)
	}
	*b = append(*b, `,"arguments":`...)
	*b = oai.AppendString(*b, d.Arguments)
	*b = append(*b, '}')
	return b
}

// chatFields are the fields a chat frame may have (and every frame's type and id).
type chatFields struct {
	Type           string          `json:"type"`
	ID             string          `json:"id"`
	Model          string          `json:"model"`
	Messages       json.RawMessage `json:"messages"`
	Content        json.RawMessage `json:"content"`
	ToolResults    json.RawMessage `json:"tool_results"`
	ConversationID *string         `json:"conversation_id"`
	Regenerate     *string         `json:"regenerate"`
	System         *string         `json:"system"`
	RAG            *core.RAGParams `json:"rag"`
	Params         json.RawMessage `json:"params"`
}

// checkChatFields refuses a chat frame field the protocol does not define, naming it;
// a sampling parameter belongs in "params".
func checkChatFields(data []byte) *oai.Error {
	k := oai.UnknownField(data, &chatFields{})
	if k == "" {
		return nil
	}
	probe, _ := json.Marshal(map[string]any{k: nil})
	if oai.UnknownField(probe, &chatParams{}) == "" {
		return oai.Invalid(k, "unknown_parameter", "'%s' goes in 'params': {\"params\": {\"%s\": …}}", k, k)
	}
	return oai.Invalid(k, "unknown_parameter", "unknown field '%s' in a chat frame", k)
}

// sourcesFrame is `{"type":"sources","id","sources":[…],"warning"?}`.
func sourcesFrame(id string, g core.Grounding) *[]byte {
	body, _ := json.Marshal(struct {
		Type    string        `json:"type"`
		ID      string        `json:"id"`
		Sources []core.Source `json:"sources"`
		Warning string        `json:"warning,omitempty"`
	}{"sources", id, append([]core.Source{}, g.Sources...), g.Warning})
	b := getBuf()
	*b = append(*b, body...)
	return b
}
