package api

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/conversation"
	"github.com/ragway/ragway/gateway/oai"
	"github.com/ragway/ragway/gateway/store"
)

// Store is what the HTTP layer needs from the repository (*store.Store implements it).
type Store interface {
	conversation.Store
	// Ready reports whether the database answers and has this build's schema.
	Ready(ctx context.Context) error
	CreateConversation(ctx context.Context, userID string, c store.NewConversation) (store.Conversation, error)
	ListConversations(ctx context.Context, userID string, p store.Page) ([]store.Conversation, error)
	GetConversation(ctx context.Context, userID, id string) (store.Conversation, error)
	DeleteConversation(ctx context.Context, userID, id string) error
	ListMessages(ctx context.Context, userID, conversationID string) ([]store.Message, error)
}

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
	CreatedAt        int64           `json:"created_at"`
}

func toConversationJSON(c store.Conversation) conversationJSON {
	return conversationJSON{ID: c.ID, Object: "conversation", Title: c.Title, Model: c.Model, SystemPrompt: c.SystemPrompt,
		CreatedAt: c.CreatedAt.Unix(), UpdatedAt: c.UpdatedAt.Unix()}
}

func toMessageJSON(m store.Message) messageJSON {
	return messageJSON{ID: m.ID, Role: m.Role, Content: m.Content, Status: m.Status, Model: m.Model,
		FinishReason: m.FinishReason, Error: m.Error, PromptTokens: m.PromptTokens, CompletionTokens: m.CompletionTokens,
		Sources: m.Sources, CreatedAt: m.CreatedAt.Unix()}
}

// notFound turns store.ErrNotFound into a 404 naming what was looked up; another
// user's conversation is reported exactly like one that does not exist.
func notFound(err error, what, id string) error {
	if errors.Is(err, store.ErrNotFound) {
		return oai.NotFound(what, id, "")
	}
	return err
}

// listConversations serves GET /v1/conversations?limit=N&after=ID.
func (s *server) listConversations(c *fiber.Ctx) error {
	p, aerr := pageOf(c)
	if aerr != nil {
		return aerr
	}
	convs, err := s.opts.Store.ListConversations(c.UserContext(), principalOf(c).UserID, p)
	if err != nil {
		return notFound(err, "conversation", p.After)
	}
	return c.JSON(pageList(convs, p, toConversationJSON))
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
	cv, err := s.opts.Store.CreateConversation(c.UserContext(), principalOf(c).UserID,
		store.NewConversation{Title: req.Title, Model: req.Model, SystemPrompt: req.SystemPrompt})
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(toConversationJSON(cv))
}

// getConversation serves GET /v1/conversations/{id}: the conversation with its messages.
func (s *server) getConversation(c *fiber.Ctx) error {
	id, uid := c.Params("id"), principalOf(c).UserID
	cv, err := s.opts.Store.GetConversation(c.UserContext(), uid, id)
	if err != nil {
		return notFound(err, "conversation", id)
	}
	msgs, err := s.opts.Store.ListMessages(c.UserContext(), uid, id)
	if err != nil {
		return notFound(err, "conversation", id)
	}
	out := toConversationJSON(cv)
	out.Messages = make([]messageJSON, 0, len(msgs))
	for _, m := range msgs {
		out.Messages = append(out.Messages, toMessageJSON(m))
	}
	return c.JSON(out)
}

// deleteConversation serves DELETE /v1/conversations/{id}.
func (s *server) deleteConversation(c *fiber.Ctx) error {
	id := c.Params("id")
	if err := s.opts.Store.DeleteConversation(c.UserContext(), principalOf(c).UserID, id); err != nil {
		return notFound(err, "conversation", id)
	}
	s.turns.Forget(id)
	return c.JSON(fiber.Map{"id": id, "object": "conversation.deleted", "deleted": true})
}
