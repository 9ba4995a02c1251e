package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/aarondl/null/v8"
	"github.com/aarondl/sqlboiler/v4/boil"
	"github.com/aarondl/sqlboiler/v4/queries/qm"

	"github.com/ragway/ragway/db/models"
)

// CreateConversation starts an empty conversation of userID (an unknown user is
// ErrNotFound). A title, model or system prompt Postgres cannot store ([CheckText]) is
// a *FieldError ("title", "model", "system_prompt") before any write.
func (s *Store) CreateConversation(ctx context.Context, userID string, c NewConversation) (Conversation, error) {
	o := &models.Conversation{
		UserID:       userID,
		Title:        c.Title,
		Model:        c.Model,
		SystemPrompt: null.NewString(c.SystemPrompt, c.SystemPrompt != ""),
	}
	err := s.do(ctx, "create conversation", func(ctx context.Context) error {
		if !validID(userID) {
			return fmt.Errorf("%w: user %q", ErrNotFound, userID)
		}
		if err := checkTexts("title", c.Title, "model", c.Model, "system_prompt", c.SystemPrompt); err != nil {
			return err
		}
		return o.Insert(ctx, s.db, boil.Infer())
	})
	if err != nil {
		return Conversation{}, err
	}
	return conversationFromModel(o), nil
}

// ListConversations lists userID's conversations, most recently updated first (ties:
// greater id first). p.After names the last conversation of the previous page; one that
// is not userID's is ErrNotFound.
func (s *Store) ListConversations(ctx context.Context, userID string, p Page) ([]Conversation, error) {
	var rows models.ConversationSlice
	err := s.do(ctx, "list conversations", func(ctx context.Context) (err error) {
		if !validIDs(userID) || (p.After != "" && !validID(p.After)) {
			return ErrNotFound
		}
		mods := []qm.QueryMod{
			models.ConversationWhere.UserID.EQ(userID),
			qm.OrderBy(`"updated_at" DESC, "id" DESC`),
			qm.Limit(p.Size()),
		}
		if p.After != "" {
			mods = append(mods, after("conversations", "updated_at", p.After, "user_id", userID))
		}
		rows, err = models.Conversations(mods...).All(ctx, s.db)
		if err == nil && len(rows) == 0 && p.After != "" {
			err = s.ownConversation(ctx, userID, p.After)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return convert(rows, conversationFromModel), nil
}

// GetConversation returns userID's conversation id.
func (s *Store) GetConversation(ctx context.Context, userID, id string) (Conversation, error) {
	var o *models.Conversation
	err := s.do(ctx, "get conversation", func(ctx context.Context) (err error) {
		if !validIDs(userID, id) {
			return ErrNotFound
		}
		o, err = models.Conversations(models.ConversationWhere.ID.EQ(id), models.ConversationWhere.UserID.EQ(userID)).One(ctx, s.db)
		return err
	})
	if err != nil {
		return Conversation{}, err
	}
	return conversationFromModel(o), nil
}

// MaxTitleRunes bounds a conversation's title, in characters.
const MaxTitleRunes = 200

// RenameConversation sets the title of userID's conversation id. A title over
// MaxTitleRunes characters, or one Postgres cannot store, is a *FieldError
// ("title").
func (s *Store) RenameConversation(ctx context.Context, userID, id, title string) (Conversation, error) {
	var o *models.Conversation
	err := s.do(ctx, "rename conversation", func(ctx context.Context) error {
		if !validIDs(userID, id) {
			return ErrNotFound
		}
		if err := checkTexts("title", title); err != nil {
			return err
		}
		if n := utf8.RuneCountInString(title); n > MaxTitleRunes {
			return &FieldError{Field: "title", Reason: fmt.Sprintf("it must be at most %d characters long, not %d", MaxTitleRunes, n)}
		}
		n, err := models.Conversations(models.ConversationWhere.ID.EQ(id), models.ConversationWhere.UserID.EQ(userID)).
			UpdateAll(ctx, s.db, models.M{models.ConversationColumns.Title: title})
		if err == nil && n == 0 {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		o, err = models.Conversations(models.ConversationWhere.ID.EQ(id)).One(ctx, s.db)
		return err
	})
	if err != nil {
		return Conversation{}, err
	}
	return conversationFromModel(o), nil
}

// DeleteConversation deletes userID's conversation id and its messages.
func (s *Store) DeleteConversation(ctx context.Context, userID, id string) error {
	return s.do(ctx, "delete conversation", func(ctx context.Context) error {
		if !validIDs(userID, id) {
			return ErrNotFound
		}
		n, err := models.Conversations(models.ConversationWhere.ID.EQ(id), models.ConversationWhere.UserID.EQ(userID)).DeleteAll(ctx, s.db)
		if err == nil && n == 0 {
			err = ErrNotFound
		}
		return err
	})
}

// ListMessages returns the messages of userID's conversation id, in order (in-progress
// ones included).
func (s *Store) ListMessages(ctx context.Context, userID, conversationID string) ([]Message, error) {
	var rows models.MessageSlice
	err := s.do(ctx, "list messages", func(ctx context.Context) (err error) {
		if !validIDs(userID, conversationID) {
			return ErrNotFound
		}
		rows, err = models.Messages(
			models.MessageWhere.ConversationID.EQ(conversationID),
			qm.Where(`EXISTS (SELECT 1 FROM "conversations" c WHERE c."id" = "messages"."conversation_id" AND c."user_id" = ?)`, userID),
			qm.OrderBy(`"seq"`),
			qm.Load(models.MessageRels.MessageTool),
		).All(ctx, s.db)
		if err == nil && len(rows) == 0 {
			err = s.ownConversation(ctx, userID, conversationID)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return convert(rows, messageFromModel), nil
}

// QuestionOf returns the text of the user message answer answers in userID's
// conversation id (the last user message before it; "" when there is none): what a
// regeneration of answer answers again, and retrieves sources for. An answer the
// conversation does not have is a *FieldError ("regenerate").
func (s *Store) QuestionOf(ctx context.Context, userID, id, answer string) (string, error) {
	var q sql.NullString
	err := s.do(ctx, "question of an answer", func(ctx context.Context) error {
		if !validIDs(userID, id) {
			return ErrNotFound
		}
		if !validID(answer) {
			return &FieldError{"regenerate", "the conversation has no such answer to regenerate"}
		}
		var found bool
		err := s.db.QueryRowContext(ctx, `SELECT true, (SELECT u.content FROM messages u
				WHERE u.conversation_id = a.conversation_id AND u.role = 'user' AND u.seq < a.seq ORDER BY u.seq DESC LIMIT 1)
			FROM messages a JOIN conversations c ON c.id = a.conversation_id
			WHERE a.id = $1 AND a.conversation_id = $2 AND c.user_id = $3 AND a.role = 'assistant'`, answer, id, userID).Scan(&found, &q)
		if errors.Is(err, sql.ErrNoRows) {
			if err := s.ownConversation(ctx, userID, id); err != nil {
				return err
			}
			return &FieldError{"regenerate", "the conversation has no such answer to regenerate"}
		}
		return err
	})
	return q.String, err
}

// AnswerConversation returns the conversation of userID's assistant message answer,
// and whether it is the conversation's last message (superseded ones aside);
// ErrNotFound when userID has no such answer.
func (s *Store) AnswerConversation(ctx context.Context, userID, answer string) (conversationID string, last bool, err error) {
	err = s.do(ctx, "answer's conversation", func(ctx context.Context) error {
		if !validIDs(userID, answer) {
			return ErrNotFound
		}
		return s.db.QueryRowContext(ctx, `SELECT m.conversation_id,
				NOT EXISTS (SELECT 1 FROM messages n WHERE n.conversation_id = m.conversation_id AND n.seq > m.seq AND n.status <> 'superseded')
			FROM messages m JOIN conversations c ON c.id = m.conversation_id
			WHERE m.id = $1 AND c.user_id = $2 AND m.role = 'assistant' AND m.status <> 'superseded'`, answer, userID).Scan(&conversationID, &last)
	})
	return conversationID, last, err
}

// ownConversation returns ErrNotFound unless userID has the conversation id.
func (s *Store) ownConversation(ctx context.Context, userID, id string) error {
	ok, err := models.Conversations(models.ConversationWhere.ID.EQ(id), models.ConversationWhere.UserID.EQ(userID)).Exists(ctx, s.db)
	if err == nil && !ok {
		err = ErrNotFound
	}
	return err
}

func conversationFromModel(c *models.Conversation) Conversation {
	return Conversation{
		ID:           c.ID,
		UserID:       c.UserID,
		Title:        c.Title,
		Model:        c.Model,
		SystemPrompt: c.SystemPrompt.String,
		CreatedAt:    c.CreatedAt,
		UpdatedAt:    c.UpdatedAt,
	}
}

func messageFromModel(m *models.Message) Message {
	var sources json.RawMessage
	if m.Sources.Valid {
		sources = json.RawMessage(m.Sources.JSON)
	}
	out := Message{
		ID:               m.ID,
		ConversationID:   m.ConversationID,
		Seq:              m.Seq,
		Role:             m.Role,
		Content:          m.Content,
		Status:           m.Status,
		Model:            m.Model.String,
		FinishReason:     m.FinishReason.String,
		Error:            m.Error.String,
		PromptTokens:     m.PromptTokens.Int,
		CompletionTokens: m.CompletionTokens.Int,
		Sources:          sources,
		CreatedAt:        m.CreatedAt,
		CompletedAt:      m.CompletedAt.Time,
	}
	if t := m.R.GetMessageTool(); t != nil {
		out.ToolCalls, out.ToolCallID = decodeToolCalls(t.ToolCalls.JSON), t.ToolCallID.String
	}
	return out
}
