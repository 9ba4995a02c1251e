package api

import (
	"encoding/json"
	"errors"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/conversations"
	"github.com/ragway/ragway/gateway/oai"
)

type conversationJSON struct {
	ID           string        `json:"id"`
	Object       string        `json:"object"`
	Title        string        `json:"title"`
	Model        string        `json:"model"`
	SystemPrompt string        `json:"system_prompt,omitempty"`
	CreatedAt    int64         `json:"created_at"`
	UpdatedAt    int64         `json:"updated_at"`
	Messages     []messageJSON `json:"messages,omitempty"`
}

type messageJSON struct {
	ID               string          `json:"id"`
	Role             string          `json:"role"`
	Content          string          `json:"content"`
	Status           string          `json:"status"`
	Model            string          `json:"model,omitempty"`
	FinishReason     string          `json:"finish_reason,omitempty"`
	Error            string          `json:"error,omitempty"`
	PromptTokens     int             `json:"prompt_tokens,omitempty"`
	CompletionTokens int             `json:"completion_tokens,omitempty"`
	Sources          json.RawMessage `json:"sources,omitempty"`
	ToolCalls        []toolCallJSON  `json:"tool_calls,omitempty"`
	ToolCallID       string          `json:"tool_call_id,omitempty"`
	CreatedAt        int64           `json:"created_at"`
}

func toConversationJSON(c conversations.Conversation) conversationJSON {
	return conversationJSON{ID: c.ID, Object: "conversation", Title: c.Title, Model: c.Model, SystemPrompt: c.SystemPrompt,
		CreatedAt: c.CreatedAt.Unix(), UpdatedAt: c.UpdatedAt.Unix()}
}

func toMessageJSON(m conversations.Message) messageJSON {
	return messageJSON{ID: m.ID, Role: m.Role, Content: m.Content, Status: m.Status, Model: m.Model,
		FinishReason: m.FinishReason, Error: m.Error, PromptTokens: m.PromptTokens, CompletionTokens: m.CompletionTokens,
		Sources: m.Sources, ToolCalls: toolCallsJSON(m.ToolCalls), ToolCallID: m.ToolCallID, CreatedAt: m.CreatedAt.Unix()}
}

// notFound turns a service's not-found error (missing: conversations.ErrNotFound,
// knowledge.ErrNotFound) into a 404 naming what was looked up; another user's
// conversation is reported exactly like one that does not exist.
func notFound(err, missing error, what, id string) error {
	if errors.Is(err, missing) {
		return oai.NotFound(what, id, "")
	}
	return err
}

// listConversations serves GET /v1/conversations?limit=N&after=ID.
func (s *server) listConversations(c *fiber.Ctx) error {
	p, aerr := pageOf(c, conversations.MaxPageLimit)
	if aerr != nil {
		return aerr
	}
	l, err := s.opts.Conversations.List(c.UserContext(), principalOf(c).UserID, conversations.Page(p))
	if err != nil {
		return notFound(err, conversations.ErrNotFound, "conversation", p.After)
	}
	return c.JSON(pageList(l.Conversations, l.HasMore, toConversationJSON))
}

// createConversation serves POST /v1/conversations {"title"?, "system_prompt"?, "model"?}.
func (s *server) createConversation(c *fiber.Ctx) error {
	var req struct {
		Title        string `json:"title"`
		SystemPrompt string `json:"system_prompt"`
		Model        string `json:"model"`
	}
	if body := c.Body(); len(body) > 0 { // a copy (Immutable): read once
		if err := oai.Decode(body, &req, ""); err != nil {
			return err
		}
	}
	for param, text := range map[string]string{"title": req.Title, "system_prompt": req.SystemPrompt} {
		if e := oai.CheckText(param, text); e != nil {
			return e
		}
	}
	if req.Model != "" {
		m, ok := s.b.Model(req.Model)
		if !ok {
			return oai.ModelNotFound(req.Model)
		}
		req.Model = m.Name
	}
	cv, err := s.opts.Conversations.Create(c.UserContext(), principalOf(c).UserID,
		conversations.NewConversation{Title: req.Title, Model: req.Model, SystemPrompt: req.SystemPrompt})
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(toConversationJSON(cv))
}

// getConversation serves GET /v1/conversations/{id}: the conversation with its messages.
func (s *server) getConversation(c *fiber.Ctx) error {
	id := c.Params("id")
	cv, msgs, err := s.opts.Conversations.Get(c.UserContext(), principalOf(c).UserID, id)
	if err != nil {
		return notFound(err, conversations.ErrNotFound, "conversation", id)
	}
	out := toConversationJSON(cv)
	out.Messages = make([]messageJSON, 0, len(msgs))
	for _, m := range msgs {
		out.Messages = append(out.Messages, toMessageJSON(m))
	}
	return c.JSON(out)
}

// deleteConversation serves DELETE /v1/conversations/{id}.
// renameConversation serves PATCH /v1/conversations/{id} {"title"}.
func (s *server) renameConversation(c *fiber.Ctx) error {
	var req struct {
		Title *string `json:"title"`
	}
	if err := decodeStrict(c.Body(), &req); err != nil {
		return err
	}
	if req.Title == nil {
		return oai.Missing("title")
	}
	id := c.Params("id")
	cv, err := s.opts.Conversations.Rename(c.UserContext(), principalOf(c).UserID, id, *req.Title)
	if err != nil {
		return notFound(err, conversations.ErrNotFound, "conversation", id)
	}
	return c.JSON(toConversationJSON(cv))
}

func (s *server) deleteConversation(c *fiber.Ctx) error {
	id := c.Params("id")
	if err := s.opts.Conversations.Delete(c.UserContext(), principalOf(c).UserID, id); err != nil {
		return notFound(err, conversations.ErrNotFound, "conversation", id)
	}
	return c.JSON(fiber.Map{"id": id, "object": "conversation.deleted", "deleted": true})
}
