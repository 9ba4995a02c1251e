package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/aarondl/null/v8"
	"github.com/aarondl/sqlboiler/v4/queries"
	"github.com/aarondl/sqlboiler/v4/types"

	"github.com/ragway/ragway/db/models"
)

// beginTurnSQL updates the conversation at the start of a turn, locking its row until
// the turn's transaction ends (concurrent turns of one conversation take turns). No row:
// not the user's conversation.
const beginTurnSQL = `
UPDATE conversations SET
	model = $3,
	updated_at = now(),
	system_prompt = CASE WHEN $4::boolean THEN NULLIF($5::text, '') ELSE system_prompt END,
	title = CASE WHEN title = '' THEN $6::text ELSE title END
WHERE id = $1 AND user_id = $2
RETURNING *`

// addTurnSQL inserts a turn's messages in array order (their seq follows it) and
// returns them (added) with the conversation's earlier messages that are not in
// progress, by seq. It runs after beginTurnSQL took the conversation's lock, so its
// snapshot holds every turn committed before.
const addTurnSQL = `
WITH added AS (
	INSERT INTO messages (conversation_id, role, content, status, model, completed_at)
	SELECT $1::uuid, m.role, m.content, m.status, NULLIF(m.model, ''),
		CASE WHEN m.status <> 'in_progress' THEN now() END
	FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS m(role, content, status, model, ord)
	ORDER BY m.ord
	RETURNING *
)
SELECT added.*, true AS added FROM added
UNION ALL
SELECT messages.*, false FROM messages WHERE conversation_id = $1::uuid AND status <> 'in_progress'
ORDER BY seq`

// turnRow is a row of addTurnSQL.
type turnRow struct {
	models.Message `boil:",bind"`
	Added          bool `boil:"added"`
}

// BeginTurn stores t's messages and an in-progress assistant message in userID's
// conversation, in one transaction, and returns them with the history. It sets the
// conversation's model to t.Model, replaces its system prompt when t.SystemPrompt is
// not nil, and titles an untitled conversation after its first user message. A role
// other than RoleSystem, RoleUser, RoleAssistant and RoleTool is ErrInvalid.
func (s *Store) BeginTurn(ctx context.Context, userID, conversationID string, t Turn) (TurnStarted, error) {
	var out TurnStarted
	err := s.do(ctx, "begin turn", func(ctx context.Context) error {
		if !validIDs(userID, conversationID) {
			return ErrNotFound
		}
		n := len(t.Messages)
		roles, contents := make(types.StringArray, n+1), make(types.StringArray, n+1)
		statuses, modelNames := make(types.StringArray, n+1), make(types.StringArray, n+1)
		for i, m := range t.Messages {
			if !slices.Contains([]string{RoleSystem, RoleUser, RoleAssistant, RoleTool}, m.Role) {
				return fmt.Errorf("%w: message %d: role %q (want system, user, assistant or tool)", ErrInvalid, i, m.Role)
			}
			roles[i], contents[i], statuses[i] = m.Role, m.Content, StatusComplete
		}
		roles[n], statuses[n], modelNames[n] = RoleAssistant, StatusInProgress, t.Model
		systemPrompt := null.StringFromPtr(t.SystemPrompt)

		return s.inTx(ctx, func(tx *sql.Tx) error {
			var c models.Conversation
			err := queries.Raw(beginTurnSQL, conversationID, userID, t.Model,
				systemPrompt.Valid, systemPrompt.String, titleOf(t.Messages)).Bind(ctx, tx, &c)
			if err != nil {
				return err
			}
			var rows []*turnRow
			err = queries.Raw(addTurnSQL, c.ID, roles, contents, statuses, modelNames).Bind(ctx, tx, &rows)
			if err != nil {
				return err
			}
			out = TurnStarted{Conversation: conversationFromModel(&c)}
			for _, r := range rows {
				switch {
				case r.Status != StatusInProgress:
					out.History = append(out.History, messageFromModel(&r.Message))
					if r.Added {
						out.MessageIDs = append(out.MessageIDs, r.ID)
					}
				case r.Added:
					out.AssistantMessageID = r.ID
				}
			}
			if len(out.MessageIDs) != n || out.AssistantMessageID == "" {
				return fmt.Errorf("inserted %d messages and assistant message %q, want %d and one", len(out.MessageIDs), out.AssistantMessageID, n)
			}
			return nil
		})
	})
	if err != nil {
		return TurnStarted{}, err
	}
	return out, nil
}

// titleLen is the length of the longest title BeginTurn derives, in characters.
const titleLen = 60

// titleOf returns the title a conversation takes from the first user message of msgs
// with any text: that text with its whitespace collapsed, cut at a word boundary (or
// mid-word when none is near) to at most titleLen characters, "…" included. "" when no
// user message has text.
func titleOf(msgs []NewMessage) string {
	for _, m := range msgs {
		if m.Role != RoleUser {
			continue
		}
		text := []rune(strings.Join(strings.Fields(m.Content), " "))
		switch {
		case len(text) == 0:
			continue
		case len(text) <= titleLen:
			return string(text)
		}
		// Room for "…"; at the last space of the last third if there is one.
		cut := titleLen - 1
		for i := cut; i > titleLen*2/3; i-- {
			if text[i] == ' ' {
				cut = i
				break
			}
		}
		return strings.TrimRightFunc(string(text[:cut]), unicode.IsSpace) + "…"
	}
	return ""
}

// finishMessageSQL ends an in-progress message of one of a user's conversations and
// bumps the conversation's updated_at, in one statement. No row: no such message in
// progress.
const finishMessageSQL = `
WITH m AS (
	UPDATE messages SET status = $3, content = $4, finish_reason = $5, error = $6,
		prompt_tokens = $7, completion_tokens = $8, sources = $9, completed_at = now()
	WHERE id = $1 AND status = 'in_progress'
		AND EXISTS (SELECT 1 FROM conversations c WHERE c.id = messages.conversation_id AND c.user_id = $2)
	RETURNING *
), touched AS (
	UPDATE conversations SET updated_at = now() WHERE id = (SELECT conversation_id FROM m)
)
SELECT * FROM m`

// FinishMessage ends userID's in-progress assistant message messageID with f and
// returns it. f.Status must be StatusComplete, StatusCancelled or StatusFailed (else
// ErrInvalid); a message that is not in progress, or not userID's, is ErrNotFound.
func (s *Store) FinishMessage(ctx context.Context, userID, messageID string, f Finish) (Message, error) {
	var m models.Message
	err := s.do(ctx, "finish message", func(ctx context.Context) error {
		if !slices.Contains([]string{StatusComplete, StatusCancelled, StatusFailed}, f.Status) {
			return fmt.Errorf("%w: finish status %q (want complete, cancelled or failed)", ErrInvalid, f.Status)
		}
		if !validIDs(userID, messageID) {
			return ErrNotFound
		}
		return queries.Raw(finishMessageSQL, messageID, userID, f.Status, f.Content,
			null.NewString(f.FinishReason, f.FinishReason != ""), null.NewString(f.Error, f.Error != ""),
			f.PromptTokens, f.CompletionTokens, null.NewJSON(f.Sources, len(f.Sources) > 0)).Bind(ctx, s.db, &m)
	})
	if err != nil {
		return Message{}, err
	}
	return messageFromModel(&m), nil
}
