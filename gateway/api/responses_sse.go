package api

// The Responses API's response object and its stream of events.

import (
	"encoding/json"
	"strings"

	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/oai"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// responseHead is what a response says of its request.
type responseHead struct {
	Model              string
	Instructions       *string
	PreviousResponseID *string
	Store              bool
	Temperature, TopP  *float64
	MaxOutputTokens    *int
	Created            int64
}

type responseUsageJSON struct {
	InputTokens        int `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        int `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int `json:"total_tokens"`
}

type responseJSON struct {
	ID                 string             `json:"id"`
	Object             string             `json:"object"`
	CreatedAt          int64              `json:"created_at"`
	Status             string             `json:"status"`
	Error              *oai.Error         `json:"error"`
	IncompleteDetails  *incompleteJSON    `json:"incomplete_details"`
	Instructions       *string            `json:"instructions"`
	MaxOutputTokens    *int               `json:"max_output_tokens"`
	Model              string             `json:"model"`
	Output             []any              `json:"output"`
	ParallelToolCalls  bool               `json:"parallel_tool_calls"`
	PreviousResponseID *string            `json:"previous_response_id"`
	Store              bool               `json:"store"`
	Temperature        *float64           `json:"temperature"`
	TopP               *float64           `json:"top_p"`
	ToolChoice         string             `json:"tool_choice"`
	Tools              []any              `json:"tools"`
	Truncation         string             `json:"truncation"`
	Usage              *responseUsageJSON `json:"usage"`
	Metadata           map[string]string  `json:"metadata"`
}

type incompleteJSON struct {
	Reason string `json:"reason"`
}

type outputTextJSON struct {
	Type        string `json:"type"`
	Text        string `json:"text"`
	Annotations []any  `json:"annotations"`
}

type messageItemJSON struct {
	Type    string           `json:"type"`
	ID      string           `json:"id"`
	Status  string           `json:"status"`
	Role    string           `json:"role"`
	Content []outputTextJSON `json:"content"`
}

type callItemJSON struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	CallID    string `json:"call_id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
	Status    string `json:"status"`
}

// responseItem is an output item as it is built: a message or a function call.
type responseItem struct {
	call bool
	id   string
	text strings.Builder // the message's text, or the call's arguments
	// callID and name of a call.
	callID, name string
	done         bool
}

func (it *responseItem) json(status string) any {
	if it.call {
		return callItemJSON{Type: "function_call", ID: it.id, CallID: it.callID, Name: it.name, Arguments: it.text.String(), Status: status}
	}
	content := []outputTextJSON{}
	if status == "completed" {
		content = append(content, outputTextJSON{Type: "output_text", Text: it.text.String(), Annotations: []any{}})
	}
	return messageItemJSON{Type: "message", ID: it.id, Status: status, Role: "assistant", Content: content}
}

// responsesSSE writes a response's events (sseFormat) and makes its final object.
type responsesSSE struct {
	head    responseHead
	id      string
	seq     int
	started bool
	items   []*responseItem
	msg     *responseItem         // the message item open, if any
	calls   map[int]*responseItem // by the backend's call index
	reason  string                // the finish reason, as OpenAI's chat completions say it
}

func newResponsesSSE(h responseHead) *responsesSSE {
	return &responsesSSE{head: h, id: "resp_" + oai.NewID(), calls: map[int]*responseItem{}}
}

// onStart names a stored response after its answer.
func (f *responsesSSE) onStart(e chat.Event) {
	if e.MessageID != "" {
		f.id = responseID(e.MessageID)
	}
}

// object is the response as it stands, with status.
func (f *responsesSSE) object(status string, u *sdk.Usage) responseJSON {
	r := responseJSON{ID: f.id, Object: "response", CreatedAt: f.head.Created, Status: status, Instructions: f.head.Instructions,
		MaxOutputTokens: f.head.MaxOutputTokens, Model: f.head.Model, Output: []any{}, ParallelToolCalls: true,
		PreviousResponseID: f.head.PreviousResponseID, Store: f.head.Store, Temperature: f.head.Temperature, TopP: f.head.TopP,
		ToolChoice: "auto", Tools: []any{}, Truncation: "disabled", Metadata: map[string]string{}}
	for _, it := range f.items {
		st := "in_progress"
		if it.done {
			st = "completed"
		}
		r.Output = append(r.Output, it.json(st))
	}
	if status == "incomplete" {
		r.IncompleteDetails = &incompleteJSON{Reason: "max_output_tokens"}
	}
	if u != nil {
		r.Usage = &responseUsageJSON{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens, TotalTokens: u.PromptTokens + u.CompletionTokens}
		r.Usage.InputTokensDetails.CachedTokens = u.CachedTokens
	}
	return r
}

// event appends one event: its type, and data holding fields besides its type and
// sequence number.
func (f *responsesSSE) event(b []byte, typ string, fields map[string]any) []byte {
	fields["type"], fields["sequence_number"] = typ, f.seq
	f.seq++
	data, _ := json.Marshal(fields)
	b = append(b, "event: "...)
	b = append(b, typ...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

func (f *responsesSSE) start(b []byte, _ int) []byte {
	if f.started {
		return b
	}
	f.started = true
	b = f.event(b, "response.created", map[string]any{"response": f.object("in_progress", nil)})
	return f.event(b, "response.in_progress", map[string]any{"response": f.object("in_progress", nil)})
}

func (f *responsesSSE) open(b []byte, it *responseItem) []byte {
	f.items = append(f.items, it)
	return f.event(b, "response.output_item.added", map[string]any{"output_index": len(f.items) - 1, "item": it.json("in_progress")})
}

func (f *responsesSSE) index(it *responseItem) int {
	for i, x := range f.items {
		if x == it {
			return i
		}
	}
	return -1
}

func (f *responsesSSE) delta(b []byte, i int, text string, _ []sdk.TokenLogprob) []byte {
	b = f.start(b, i)
	if text == "" {
		return b
	}
	if f.msg == nil {
		f.msg = &responseItem{id: "msg_" + oai.NewID()}
		b = f.open(b, f.msg)
		b = f.event(b, "response.content_part.added", map[string]any{"item_id": f.msg.id, "output_index": f.index(f.msg), "content_index": 0,
			"part": outputTextJSON{Type: "output_text", Annotations: []any{}}})
	}
	f.msg.text.WriteString(text)
	return f.event(b, "response.output_text.delta", map[string]any{"item_id": f.msg.id, "output_index": f.index(f.msg), "content_index": 0, "delta": text})
}

// closeMessage ends the message item, if one is open.
func (f *responsesSSE) closeMessage(b []byte) []byte {
	m := f.msg
	if m == nil {
		return b
	}
	f.msg, m.done = nil, true
	idx, text := f.index(m), m.text.String()
	b = f.event(b, "response.output_text.done", map[string]any{"item_id": m.id, "output_index": idx, "content_index": 0, "text": text})
	b = f.event(b, "response.content_part.done", map[string]any{"item_id": m.id, "output_index": idx, "content_index": 0,
		"part": outputTextJSON{Type: "output_text", Text: text, Annotations: []any{}}})
	return f.event(b, "response.output_item.done", map[string]any{"output_index": idx, "item": m.json("completed")})
}

func (f *responsesSSE) toolCalls(b []byte, i int, deltas []sdk.ToolCallDelta) []byte {
	b = f.start(b, i)
	for _, d := range deltas {
		it := f.calls[d.Index]
		if it == nil {
			b = f.closeMessage(b)
			it = &responseItem{call: true, id: "fc_" + oai.NewID(), callID: d.ID, name: d.Name}
			f.calls[d.Index] = it
			b = f.open(b, it)
		}
		if d.Arguments != "" {
			it.text.WriteString(d.Arguments)
			b = f.event(b, "response.function_call_arguments.delta", map[string]any{"item_id": it.id, "output_index": f.index(it), "delta": d.Arguments})
		}
	}
	return b
}

func (f *responsesSSE) finish(b []byte, i int, reason string) []byte {
	b = f.start(b, i)
	b = f.closeMessage(b)
	for _, it := range f.items {
		if it.done {
			continue
		}
		it.done = true
		idx := f.index(it)
		b = f.event(b, "response.function_call_arguments.done", map[string]any{"item_id": it.id, "output_index": idx, "arguments": it.text.String()})
		b = f.event(b, "response.output_item.done", map[string]any{"output_index": idx, "item": it.json("completed")})
	}
	f.reason = reason
	return b
}

func (f *responsesSSE) status() string {
	if f.reason == "length" {
		return "incomplete"
	}
	return "completed"
}

func (f *responsesSSE) usage(b []byte, u usageJSON) []byte {
	su := sdk.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens}
	if u.PromptDetails != nil {
		su.CachedTokens = u.PromptDetails.CachedTokens
	}
	status := f.status()
	return f.event(b, "response."+status, map[string]any{"response": f.object(status, &su)})
}

func (f *responsesSSE) fail(b []byte, e *oai.Error) []byte {
	fields := map[string]any{"code": e.Code, "message": e.Message, "param": nil}
	if e.Param != "" {
		fields["param"] = e.Param
	}
	return f.event(b, "error", fields)
}

func (f *responsesSSE) end(b []byte) []byte { return b }

// complete is the response of a turn collected whole.
func (f *responsesSSE) complete(text string, calls []sdk.ToolCall, finish sdk.FinishReason, u sdk.Usage) responseJSON {
	if text != "" || len(calls) == 0 {
		m := &responseItem{id: "msg_" + oai.NewID(), done: true}
		m.text.WriteString(text)
		f.items = append(f.items, m)
	}
	for _, c := range calls {
		it := &responseItem{call: true, id: "fc_" + oai.NewID(), callID: c.ID, name: c.Name, done: true}
		it.text.WriteString(c.Arguments)
		f.items = append(f.items, it)
	}
	f.reason = finishReason(finish)
	return f.object(f.status(), &u)
}
