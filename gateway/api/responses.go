package api

// POST /v1/responses: OpenAI's Responses API over the chat core. A response is a
// turn: with store (the default) it is a turn of a stored conversation, and its id
// names the answer, so that previous_response_id continues that conversation.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/conversations"
	"github.com/ragway/ragway/gateway/oai"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

const routeResponses = "/v1/responses"

// responsesRequest is the body of POST /v1/responses; any other field is refused.
type responsesRequest struct {
	Model              string          `json:"model"`
	Input              json.RawMessage `json:"input"`
	Instructions       *string         `json:"instructions"`
	Stream             *bool           `json:"stream"`
	Store              *bool           `json:"store"`
	PreviousResponseID *string         `json:"previous_response_id"`
	Temperature        *float64        `json:"temperature"`
	TopP               *float64        `json:"top_p"`
	MaxOutputTokens    *int            `json:"max_output_tokens"`
	Tools              json.RawMessage `json:"tools"`
	ToolChoice         json.RawMessage `json:"tool_choice"`
	ParallelToolCalls  *bool           `json:"parallel_tool_calls"`
	Text               json.RawMessage `json:"text"`
}

// responseID is the id of the response whose answer is message id (a uuid).
func responseID(messageID string) string { return "resp_" + strings.ReplaceAll(messageID, "-", "") }

// answerOfResponse returns the message id a response id names ("" if none can).
func answerOfResponse(id string) string {
	h, ok := strings.CutPrefix(id, "resp_")
	if !ok || len(h) != 32 {
		return ""
	}
	if _, err := hex.DecodeString(h); err != nil {
		return ""
	}
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// inputItem is an item of input: a message (type "message" or none), a function
// call, or a function call's output.
type inputItem struct {
	Type      string          `json:"type"`
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	ID        string          `json:"id"`
	Status    string          `json:"status"`
	CallID    string          `json:"call_id"`
	Name      string          `json:"name"`
	Arguments string          `json:"arguments"`
	Output    *string         `json:"output"`
}

// responsesInput reads input: a string (one user message) or a list of items.
func responsesInput(raw json.RawMessage) ([]sdk.Message, *oai.Error) {
	switch {
	case oai.IsNull(raw):
		return nil, oai.Missing("input")
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, oai.Invalid("input", oai.CodeInvalidJSON, "invalid 'input': %v", err)
		}
		return []sdk.Message{{Role: "user", Content: s}}, nil
	case raw[0] != '[':
		return nil, oai.Invalid("input", oai.CodeInvalidType, "invalid type for 'input': expected a string or an array of items")
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, oai.Invalid("input", oai.CodeInvalidJSON, "invalid 'input': %v", err)
	}
	if len(elems) == 0 {
		return nil, oai.Invalid("input", oai.CodeInvalidValue, "'input' must hold at least one item")
	}
	var msgs []sdk.Message
	for i, el := range elems {
		p := fmt.Sprintf("input[%d]", i)
		var it inputItem
		if err := oai.Decode(el, &it, p); err != nil {
			return nil, err
		}
		if k := oai.UnknownField(el, &it); k != "" {
			return nil, oai.Invalid(p+"."+k, "unknown_parameter", "unknown parameter '%s.%s'", p, k)
		}
		switch it.Type {
		case "", "message":
			switch it.Role {
			case "user", "system", "developer", "assistant":
			case "":
				return nil, oai.Missing(p + ".role")
			default:
				return nil, oai.Invalid(p+".role", oai.CodeInvalidValue, "invalid value for '%s.role': '%s'; it must be user, system, developer or assistant", p, it.Role)
			}
			text, err := itemText(it.Content, p+".content")
			if err != nil {
				return nil, err
			}
			if err := oai.CheckText(p+".content", text); err != nil {
				return nil, err
			}
			msgs = append(msgs, sdk.Message{Role: it.Role, Content: text})
		case "function_call":
			switch {
			case it.CallID == "":
				return nil, oai.Missing(p + ".call_id")
			case it.Name == "":
				return nil, oai.Missing(p + ".name")
			}
			for _, f := range []struct{ name, s string }{{".call_id", it.CallID}, {".name", it.Name}, {".arguments", it.Arguments}} {
				if err := oai.CheckText(p+f.name, f.s); err != nil {
					return nil, err
				}
			}
			if !json.Valid([]byte(it.Arguments)) {
				return nil, oai.Invalid(p+".arguments", oai.CodeInvalidValue, "'%s.arguments' must be JSON text", p)
			}
			call := sdk.ToolCall{ID: it.CallID, Name: it.Name, Arguments: it.Arguments}
			if n := len(msgs); n > 0 && msgs[n-1].Role == "assistant" && len(msgs[n-1].ToolCalls) > 0 {
				if len(msgs[n-1].ToolCalls) == sdk.MaxToolCalls {
					return nil, oai.Invalid(p, oai.CodeInvalidValue, "more than %d function calls in a row: at most %d calls of one answer", sdk.MaxToolCalls, sdk.MaxToolCalls)
				}
				msgs[n-1].ToolCalls = append(msgs[n-1].ToolCalls, call) // calls of one answer
			} else {
				msgs = append(msgs, sdk.Message{Role: "assistant", ToolCalls: []sdk.ToolCall{call}})
			}
		case "function_call_output":
			if it.CallID == "" {
				return nil, oai.Missing(p + ".call_id")
			}
			if it.Output == nil {
				return nil, oai.Missing(p + ".output")
			}
			for _, f := range []struct{ name, s string }{{".call_id", it.CallID}, {".output", *it.Output}} {
				if err := oai.CheckText(p+f.name, f.s); err != nil {
					return nil, err
				}
			}
			msgs = append(msgs, sdk.Message{Role: "tool", ToolCallID: it.CallID, Content: *it.Output})
		default:
			return nil, oai.Unsupported(p+".type", "input items of type '%s' are not supported (message, function_call and function_call_output are)", it.Type)
		}
	}
	return msgs, nil
}

// itemText reads a message item's content: a string, or text parts (input_text,
// output_text) joined with newlines.
func itemText(raw json.RawMessage, param string) (string, *oai.Error) {
	if oai.IsNull(raw) {
		return "", oai.Missing(param)
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", oai.Invalid(param, oai.CodeInvalidJSON, "invalid '%s': %v", param, err)
		}
		return s, nil
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", oai.Invalid(param, oai.CodeInvalidType, "invalid '%s': a string or an array of text parts", param)
	}
	var texts []string
	for j, part := range parts {
		pp := fmt.Sprintf("%s[%d]", param, j)
		switch part.Type {
		case "input_text", "output_text":
		default:
			return "", oai.Unsupported(pp+".type", "content parts of type '%s' are not supported (input_text and output_text are)", part.Type)
		}
		if part.Text == nil {
			return "", oai.Missing(pp + ".text")
		}
		texts = append(texts, *part.Text)
	}
	return strings.Join(texts, "\n"), nil
}

// responses serves POST /v1/responses.
func (s *server) responses(c *fiber.Ctx, cl *call) error {
	var req responsesRequest
	if err := oai.Decode(c.Body(), &req, ""); err != nil {
		return err
	}
	if k := oai.UnknownField(c.Body(), &req); k != "" {
		return oai.Unsupported(k, "'%s' is not supported by this gateway's /v1/responses", k)
	}
	m, aerr := s.resolveModel(cl, req.Model, kindChat)
	if aerr != nil {
		return aerr
	}
	msgs, aerr := responsesInput(req.Input)
	if aerr != nil {
		return aerr
	}
	if req.Instructions != nil {
		if err := oai.CheckText("instructions", *req.Instructions); err != nil {
			return err
		}
		msgs = append([]sdk.Message{{Role: "system", Content: *req.Instructions}}, msgs...)
	}
	var sp oai.SamplingParams
	sp.Temperature, sp.TopP = req.Temperature, req.TopP
	if req.MaxOutputTokens != nil {
		if *req.MaxOutputTokens < 1 {
			return oai.Invalid("max_output_tokens", oai.CodeInvalidValue, "invalid value for 'max_output_tokens': %d; it must be at least 1", *req.MaxOutputTokens)
		}
		sp.MaxTokens = req.MaxOutputTokens
	}
	sampling, aerr := sp.Sampling("")
	if aerr != nil {
		return aerr
	}
	var format *sdk.ResponseFormat
	if !oai.IsNull(req.Text) {
		var text struct {
			Format json.RawMessage `json:"format"`
		}
		if err := oai.Decode(req.Text, &text, "text"); err != nil {
			return err
		}
		if k := oai.UnknownField(req.Text, &text); k != "" {
			return oai.Unsupported("text."+k, "'text.%s' is not supported", k)
		}
		if format, aerr = oai.TextFormat(text.Format, "text.format"); aerr != nil {
			return aerr
		}
	}
	tools, choice, aerr := oai.ResponsesTools(req.Tools, req.ToolChoice)
	if aerr != nil {
		return aerr
	}
	store := req.Store == nil || *req.Store
	creq := chat.Request{
		Principal: principalOf(c), Route: cl.route, Arrived: cl.start, Model: m, RequestID: reqID(c),
		Messages: msgs, Sampling: sampling, ResponseFormat: format, Tools: tools, ToolChoice: choice, ParallelToolCalls: req.ParallelToolCalls,
	}
	var prevConversation string
	if p := req.PreviousResponseID; p != nil {
		answer := answerOfResponse(*p)
		if answer == "" || s.opts.Conversations == nil {
			return oai.NotFound("response", *p, "previous_response_id")
		}
		conv, last, err := s.opts.Conversations.AnswerConversation(c.UserContext(), principalOf(c).UserID, answer)
		if err != nil {
			return notFound(err, conversations.ErrNotFound, "response", *p)
		}
		if !last {
			return oai.Invalid("previous_response_id", oai.CodeConflict, "the response '%s' is not its conversation's last: continue from the last one", *p)
		}
		prevConversation = conv
		if !store {
			// Not stored: the conversation so far is sent whole, and nothing is kept.
			_, history, err := s.opts.Conversations.Get(c.UserContext(), principalOf(c).UserID, conv)
			if err != nil {
				return err
			}
			creq.Messages = append(historyMessages(history), creq.Messages...)
		}
	}
	if store {
		if s.opts.Conversations == nil {
			return oai.Unsupported("store", "this gateway has no database: send \"store\": false")
		}
		if err := checkStored(creq.Messages, "input"); err != nil {
			return err
		}
		creq.Stored, creq.ConversationID = true, prevConversation
	}
	t := s.core.Turn(creq)
	f := newResponsesSSE(responseHead{Model: req.Model, Instructions: req.Instructions, PreviousResponseID: req.PreviousResponseID,
		Store: store, Temperature: req.Temperature, TopP: req.TopP, MaxOutputTokens: req.MaxOutputTokens, Created: time.Now().Unix()})
	if req.Stream != nil && *req.Stream {
		return s.serveStream(c, cl, t, 1, creq.Stored, f, true)
	}
	ctx, _, stop := whileClientWaits(c)
	defer stop()
	res := collect(ctx, t, 1)
	stop()
	switch {
	case res.failure != nil:
		return res.failure
	case res.cancelled:
		return chat.APIError(context.Canceled)
	}
	f.onStart(res.start)
	r := f.complete(res.choices[0].text.String(), res.choices[0].calls.Calls(), res.choices[0].finish, res.usage)
	if res.notStored != nil {
		return answerNotStored(c, res.notStored, r)
	}
	return c.JSON(r)
}

// historyMessages are a stored conversation's messages as a prompt's (superseded and
// in-progress answers left out).
func historyMessages(history []conversations.Message) []sdk.Message {
	var out []sdk.Message
	for _, m := range history {
		if m.Status == "superseded" || m.Status == "in_progress" {
			continue
		}
		out = append(out, sdk.Message{Role: m.Role, Content: m.Content, ToolCalls: m.ToolCalls, ToolCallID: m.ToolCallID})
	}
	return out
}
