package api

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/oai"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// chatRequest is the body of POST /v1/chat/completions. Fields the gateway
// does not know are ignored.
type chatRequest struct {
	Model         string          `json:"model"`
	Messages      json.RawMessage `json:"messages"`
	N             *int            `json:"n"`
	Stream        *bool           `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
	Logprobs      *bool           `json:"logprobs"`
	TopLogprobs   *int            `json:"top_logprobs"`
	// ConversationID (a ragway extension) continues a stored conversation ("new"
	// starts one): messages are the new turn, the history is the server's.
	ConversationID *string `json:"conversation_id"`
	// RAG (a ragway extension) grounds the answer in a knowledge base.
	RAG               *chat.RAGParams `json:"rag"`
	ResponseFormat    json.RawMessage `json:"response_format"`
	Tools             json.RawMessage `json:"tools"`
	ToolChoice        json.RawMessage `json:"tool_choice"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	oai.SamplingParams
	oai.Unhonoured
}

type chatMessageJSON struct {
	Role      string         `json:"role"`
	Content   *string        `json:"content"`
	ToolCalls []toolCallJSON `json:"tool_calls,omitempty"`
}

type toolCallJSON struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// toolCallsJSON are calls in OpenAI's shape (nil for none).
func toolCallsJSON(calls []sdk.ToolCall) []toolCallJSON {
	var out []toolCallJSON
	for _, c := range calls {
		tc := toolCallJSON{ID: c.ID, Type: "function"}
		tc.Function.Name, tc.Function.Arguments = c.Name, c.Arguments
		out = append(out, tc)
	}
	return out
}

type chatChoiceJSON struct {
	Index        int             `json:"index"`
	Message      chatMessageJSON `json:"message"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

type chatCompletionJSON struct {
	ID      string           `json:"id"`
	Object  string           `json:"object"`
	Created int64            `json:"created"`
	Model   string           `json:"model"`
	Choices []chatChoiceJSON `json:"choices"`
	Usage   usageJSON        `json:"usage"`
	// ConversationID and MessageID name the stored turn (with conversation_id).
	ConversationID string `json:"conversation_id,omitempty"`
	MessageID      string `json:"message_id,omitempty"`
	// Sources are the chunks the answer may cite as [1], [2] … (with "rag"); Warning
	// says why there are none.
	Sources []chat.Source `json:"sources,omitempty"`
	Warning string        `json:"warning,omitempty"`
}

var jsonNull = json.RawMessage("null")

// chatCompletions serves POST /v1/chat/completions.
func (s *server) chatCompletions(c *fiber.Ctx, cl *call) error {
	var req chatRequest
	if err := oai.Decode(c.Body(), &req, ""); err != nil {
		return err
	}
	if err := req.Unhonoured.Check(""); err != nil {
		return err
	}
	m, aerr := s.resolveModel(cl, req.Model, kindChat)
	if aerr != nil {
		return aerr
	}
	msgs, aerr := oai.Messages(req.Messages, "messages")
	if aerr != nil {
		return aerr
	}
	sampling, aerr := req.Sampling("")
	if aerr != nil {
		return aerr
	}
	n, aerr := choicesN(req.N)
	if aerr != nil {
		return aerr
	}
	sampling.Logprobs = req.Logprobs != nil && *req.Logprobs
	if v := req.TopLogprobs; v != nil {
		if *v < 0 || *v > 20 {
			return oai.Invalid("top_logprobs", oai.CodeInvalidValue, "invalid value for 'top_logprobs': %d; it must be between 0 and 20", *v)
		}
		if *v > 0 && !sampling.Logprobs {
			return oai.Invalid("top_logprobs", oai.CodeInvalidValue, "'top_logprobs' requires 'logprobs' to be true")
		}
		sampling.TopLogprobs = *v
	}

	format, aerr := oai.ResponseFormat(req.ResponseFormat, "response_format")
	if aerr != nil {
		return aerr
	}
	tools, choice, aerr := oai.Tools(req.Tools, req.ToolChoice, "")
	if aerr != nil {
		return aerr
	}
	creq := chat.Request{
		Principal: principalOf(c), Route: cl.route, Arrived: cl.start, Model: m, RequestID: reqID(c),
		Messages: msgs, N: n, Sampling: sampling, ResponseFormat: format,
		Tools: tools, ToolChoice: choice, ParallelToolCalls: req.ParallelToolCalls,
	}
	kb, topK := c.Get(headerKB), 0
	if req.RAG != nil {
		kb, topK = req.RAG.KnowledgeBase, req.RAG.TopK
	}
	if req.RAG != nil || kb != "" {
		creq.RAG = &chat.RAGParams{KnowledgeBase: kb, TopK: topK}
	}
	if req.ConversationID != nil {
		if n > 1 {
			return oai.Invalid("n", oai.CodeUnsupported, "'n' must be 1 with 'conversation_id'")
		}
		if aerr := checkStored(msgs, "messages"); aerr != nil {
			return aerr
		}
		switch id := *req.ConversationID; id {
		case "new":
		case "":
			return oai.Invalid("conversation_id", oai.CodeInvalidValue, "'conversation_id' is empty: give a conversation's id, or \"new\"")
		default:
			creq.ConversationID = id
		}
		creq.Stored = true
	}
	t := s.core.Turn(creq)
	respID := "chatcmpl-" + oai.NewID()
	created := time.Now().Unix()
	if req.Stream != nil && *req.Stream {
		includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
		return s.serveStream(c, cl, t, n, creq.Stored, newChatSSE(respID, created, req.Model, includeUsage), includeUsage)
	}

	ctx, _, stop := whileClientWaits(c)
	defer stop()
	res := collect(ctx, t, n)
	stop()
	if id := res.start.ConversationID; id != "" {
		c.Set(headerConversationID, id)
		c.Set(headerMessageID, res.start.MessageID)
	}
	switch {
	case res.failure != nil:
		return res.failure
	case res.cancelled:
		return chat.APIError(context.Canceled)
	}
	out := chatCompletionJSON{ID: respID, Object: "chat.completion", Created: created, Model: req.Model, Choices: make([]chatChoiceJSON, n),
		Usage: usageOf(res.usage), ConversationID: res.start.ConversationID, MessageID: res.start.MessageID}
	for i := range res.choices {
		r := &res.choices[i]
		lp := jsonNull
		if sampling.Logprobs {
			lp = appendChatLogprobs(nil, r.logprobs)
		}
		msg := chatMessageJSON{Role: "assistant"}
		if text := r.text.String(); text != "" || r.calls.Len() == 0 {
			msg.Content = &text
		}
		msg.ToolCalls = toolCallsJSON(r.calls.Calls())
		out.Choices[i] = chatChoiceJSON{Index: i, Message: msg, Logprobs: lp, FinishReason: finishReason(r.finish)}
	}
	if g := res.grounding; g != nil {
		out.Sources, out.Warning = g.Sources, g.Warning
	}
	if res.notStored != nil {
		return answerNotStored(c, res.notStored, out)
	}
	return c.JSON(out)
}

// answerNotStored answers a chat whose answer was generated but could not be stored
// (e, an chat.NotStored error): the status of e (5xx) with the OpenAI error shape, and
// beside "error" the whole completion as "completion", so the answer is not lost. The
// header X-Should-Retry: false tells OpenAI's SDKs not to retry it: the question is
// stored already, a retry would ask it again.
func answerNotStored(c *fiber.Ctx, e *oai.Error, out any) error {
	completion, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("encode the completion that was not stored: %w", err)
	}
	b := make([]byte, 0, 64+len(e.Message)+len(completion))
	b = append(b, `{"error":`...)
	b = e.AppendJSON(b)
	b = append(b, `,"completion":`...)
	b = append(b, completion...)
	b = append(b, '}')
	c.Set(headerShouldRetry, "false")
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Status(e.Status).Send(b)
}

// headerShouldRetry tells OpenAI's SDKs whether to retry a failed request.
const headerShouldRetry = "X-Should-Retry"

// checkStored checks the text of chat messages (named param) that a conversation will
// store: content and name (oai.CheckText), before anything is written. (Tool call
// ids and calls were checked as they were read: oai.Messages, responsesInput.)
func checkStored(msgs []sdk.Message, param string) *oai.Error {
	for i, m := range msgs {
		if e := oai.CheckText(fmt.Sprintf("%s[%d].content", param, i), m.Content); e != nil {
			return e
		}
		if e := oai.CheckText(fmt.Sprintf("%s[%d].name", param, i), m.Name); e != nil {
			return e
		}
	}
	return nil
}

// headerKB names a knowledge base to ground a chat in, like "rag": {"knowledge_base"}.
const headerKB = "X-Ragway-KB"

// sourcesEvent is the SSE event (and WebSocket frame body) carrying a grounded
// answer's sources and warning.
func sourcesEvent(g chat.Grounding) []byte {
	b, _ := json.Marshal(struct {
		Object  string        `json:"object"`
		Sources []chat.Source `json:"sources"`
		Warning string        `json:"warning,omitempty"`
	}{"chat.completion.sources", append([]chat.Source{}, g.Sources...), g.Warning})
	return b
}

// Response headers naming the stored turn of a request with conversation_id.
const (
	headerConversationID = "X-Ragway-Conversation-Id"
	headerMessageID      = "X-Ragway-Message-Id"
)
