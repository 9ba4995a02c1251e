package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/aarondl/null/v8"
	"github.com/aarondl/sqlboiler/v4/queries"
	"github.com/lib/pq"

	"github.com/ragway/ragway/db/models"
)

// beginTurnSQL starts a turn in one statement (one round trip once prepared): see
// db/migrations/00016_tool_messages.sql.
const beginTurnSQL = `SELECT * FROM ragway_begin_turn($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`

// What ragway_begin_turn raises when it cannot regenerate: no such answer, or one
// that is no longer the last or is still being written.
const (
	sqlstateNoAnswer      = "RG001"
	sqlstateNotLastAnswer = "RG002"
	// A tool message that answers no call of the answer before it.
	sqlstateNoSuchCall = "RG003"
)

// BeginTurn stores t's messages and an in-progress assistant message in userID's
// conversation ("" creates one), in one statement, and returns them with the history
// (after t.After when that message still stands: see TurnStarted.After).
// It sets the conversation's model to t.Model, replaces its system prompt when
// t.SystemPrompt is not nil, and titles an untitled conversation after its first user
// message. A role other than RoleSystem, RoleUser, RoleAssistant and RoleTool is
// ErrInvalid; text Postgres cannot store ([CheckText]) is a *FieldError ("content",
// "system_prompt", "model") before any write; a conversation that is not userID's is
// ErrNotFound. With t.Regenerate (and no messages) a new answer to that answer's
// question begins (see Turn.Regenerate): an answer the conversation does not have is a
// *FieldError, one that is no longer its last or is still being written a
// *ConflictError ("regenerate").
func (s *Store) BeginTurn(ctx context.Context, userID, conversationID string, t Turn) (TurnStarted, error) {
	var out TurnStarted
	err := s.do(ctx, "begin turn", func(ctx context.Context) error {
		if !validID(userID) || conversationID != "" && !validID(conversationID) {
			return ErrNotFound
		}
		if t.Regenerate != "" && (conversationID == "" || len(t.Messages) > 0 || !validID(t.Regenerate)) {
			return &FieldError{"regenerate", "a regeneration names a conversation and one of its answers, and brings no messages"}
		}
		n := len(t.Messages)
		roles, contents := make(pq.StringArray, n), make(pq.StringArray, n)
		calls, callIDs := make(pq.StringArray, n), make(pq.StringArray, n)
		for i, m := range t.Messages {
			if !slices.Contains([]string{RoleSystem, RoleUser, RoleAssistant, RoleTool}, m.Role) {
				return fmt.Errorf("%w: message %d: role %q (want system, user, assistant or tool)", ErrInvalid, i, m.Role)
			}
			if len(m.ToolCalls) > 0 && m.Role != RoleAssistant || m.ToolCallID != "" && m.Role != RoleTool {
				return fmt.Errorf("%w: message %d: tool calls are an assistant's, a tool call id a tool message's", ErrInvalid, i)
			}
			if err := checkTexts("content", m.Content, "tool_call_id", m.ToolCallID); err != nil {
				return err
			}
			js, err := encodeToolCalls(m.ToolCalls)
			if err != nil {
				return err
			}
			roles[i], contents[i], calls[i], callIDs[i] = m.Role, m.Content, js, m.ToolCallID
		}
		if t.SystemPrompt != nil {
			if err := CheckText("system_prompt", *t.SystemPrompt); err != nil {
				return err
			}
		}
		if err := CheckText("model", t.Model); err != nil {
			return err
		}
		stmt, err := s.prepared(ctx, beginTurnSQL)
		if err != nil {
			return err
		}
		system := null.StringFromPtr(t.SystemPrompt)
		rows, err := stmt.QueryContext(ctx, userID, null.NewString(conversationID, conversationID != ""), t.Model,
			system.Valid, system.String, titleOf(t.Messages), roles, contents, t.Budget, t.After,
			null.NewString(t.AfterID, t.After > 0 && validID(t.AfterID)), null.NewString(t.Regenerate, t.Regenerate != ""),
			calls, callIDs)
		if err != nil {
			return regenerateError(err)
		}
		defer rows.Close()
		out, err = scanTurn(rows, len(t.Messages))
		return regenerateError(err)
	})
	if err != nil {
		return TurnStarted{}, err
	}
	return out, nil
}

// regenerateError maps ragway_begin_turn's refusals (to answer again, of a tool
// message that answers no call) to a *FieldError or a *ConflictError with its words.
func regenerateError(err error) error {
	var pe *pq.Error
	switch {
	case !errors.As(err, &pe):
	case pe.Code == sqlstateNoAnswer:
		return &FieldError{"regenerate", pe.Message}
	case pe.Code == sqlstateNotLastAnswer:
		return &ConflictError{"regenerate", pe.Message}
	case pe.Code == sqlstateNoSuchCall:
		return &FieldError{"messages", pe.Message}
	}
	return err
}

// scanTurn reads the rows of ragway_begin_turn: n added messages and the assistant
// message last among the added ones.
func scanTurn(rows *sql.Rows, n int) (TurnStarted, error) {
	var out TurnStarted
	for rows.Next() {
		var (
			cID, cUser, cTitle, cModel, system sql.NullString
			cCreated, cUpdated                 sql.NullTime
			createdAt, completedAt             sql.NullTime
			m                                  Message
			model, finish                      sql.NullString
			promptTokens, completionTokens     sql.NullInt64
			added                              bool
			after, pending                     sql.NullInt64
			calls                              []byte
			callID                             sql.NullString
		)
		if err := rows.Scan(&cID, &cUser, &cTitle, &cModel, &system, &cCreated, &cUpdated,
			&m.ID, &m.Seq, &m.Role, &m.Content, &m.Status, &model, &finish,
			&promptTokens, &completionTokens, &createdAt, &completedAt, &added, &after, &pending, &calls, &callID); err != nil {
			return out, err
		}
		if cID.Valid {
			out.Conversation = Conversation{ID: cID.String, UserID: cUser.String, Title: cTitle.String, Model: cModel.String,
				SystemPrompt: system.String, CreatedAt: cCreated.Time, UpdatedAt: cUpdated.Time}
			out.After, out.Pending = after.Int64, pending.Int64
		}
		m.Model, m.FinishReason = model.String, finish.String
		m.PromptTokens, m.CompletionTokens = int(promptTokens.Int64), int(completionTokens.Int64)
		m.CreatedAt, m.CompletedAt = createdAt.Time, completedAt.Time
		m.ToolCalls, m.ToolCallID = decodeToolCalls(calls), callID.String
		switch {
		case m.Status == StatusInProgress && added:
			out.AssistantMessageID = m.ID
		case m.Status != StatusInProgress:
			out.History = append(out.History, m)
			if added {
				out.MessageIDs = append(out.MessageIDs, m.ID)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return out, err
	}
	if out.Conversation.ID == "" {
		return out, ErrNotFound
	}
	for i := range out.History {
		out.History[i].ConversationID = out.Conversation.ID
	}
	if len(out.MessageIDs) != n || out.AssistantMessageID == "" {
		return out, fmt.Errorf("inserted %d messages and assistant message %q, want %d and one", len(out.MessageIDs), out.AssistantMessageID, n)
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

// finishMessageSQL ends an in-progress message of one of a user's conversations. No
// row: no such message in progress. (The conversation's updated_at is when its last
// turn started.)
const finishMessageSQL = `
WITH m AS (
	UPDATE messages SET status = CASE WHEN replaces IS NOT NULL AND $3 <> 'complete' THEN 'superseded' ELSE $3 END,
		content = $4, finish_reason = $5, error = $6,
		prompt_tokens = $7, completion_tokens = $8, sources = $9, completed_at = now()
	WHERE id = $1 AND status = 'in_progress'
		AND EXISTS (SELECT 1 FROM conversations c WHERE c.id = messages.conversation_id AND c.user_id = $2)
	RETURNING *
), replaced AS (
	UPDATE messages o SET status = 'superseded' FROM m
	WHERE m.status = 'complete' AND o.id = m.replaces AND o.conversation_id = m.conversation_id AND o.status <> 'in_progress'
), tools AS (
	INSERT INTO message_tools (message_id, tool_calls) SELECT m.id, $10::jsonb FROM m WHERE $10::jsonb IS NOT NULL
	ON CONFLICT (message_id) DO UPDATE SET tool_calls = EXCLUDED.tool_calls
)
SELECT * FROM m`

// FinishMessage ends userID's in-progress assistant message messageID with f and
// returns it. A regenerated answer (one that replaces another) that completes
// supersedes the one it replaces; one that does not complete is superseded itself
// (its status is then StatusSuperseded, its finish reason and error say how it
// ended), and the old one stays. f.Status must be StatusComplete, StatusCancelled or StatusFailed (else
// ErrInvalid); content or an error Postgres cannot store is a *FieldError ("content",
// "error": the caller cleans generated text first, see oai.CleanText); a message that
// is not in progress, or not userID's, is ErrNotFound.
func (s *Store) FinishMessage(ctx context.Context, userID, messageID string, f Finish) (Message, error) {
	var m models.Message
	err := s.do(ctx, "finish message", func(ctx context.Context) error {
		if !slices.Contains([]string{StatusComplete, StatusCancelled, StatusFailed}, f.Status) {
			return fmt.Errorf("%w: finish status %q (want complete, cancelled or failed)", ErrInvalid, f.Status)
		}
		if !validIDs(userID, messageID) {
			return ErrNotFound
		}
		if err := checkTexts("content", f.Content, "error", f.Error, "finish_reason", f.FinishReason); err != nil {
			return err
		}
		calls, err := encodeToolCalls(f.ToolCalls)
		if err != nil {
			return err
		}
		// Every chat turn ends here: a prepared statement, one round trip.
		stmt, err := s.prepared(ctx, finishMessageSQL)
		if err != nil {
			return err
		}
		rows, err := stmt.QueryContext(ctx, messageID, userID, f.Status, f.Content,
			null.NewString(f.FinishReason, f.FinishReason != ""), null.NewString(f.Error, f.Error != ""),
			f.PromptTokens, f.CompletionTokens, null.NewJSON(f.Sources, len(f.Sources) > 0), null.NewString(calls, calls != ""))
		if err != nil {
			return err
		}
		defer rows.Close()
		return queries.Bind(rows, &m)
	})
	if err != nil {
		return Message{}, err
	}
	out := messageFromModel(&m)
	out.ToolCalls = slices.Clone(f.ToolCalls)
	return out, nil
}

// Interrupted is the error stored on an answer FailInterrupted ends.
const Interrupted = "interrupted: the answer's end was never stored (the gateway stopped, or the database was unreachable when it ended)"

// FailInterrupted marks assistant messages still in progress that started more than
// olderThan ago as failed (finish reason "error", error Interrupted), keeping their
// text, and returns how many. Every gateway runs it now and then: with olderThan longer
// than any generation may last, only answers nobody will finish are touched.
func (s *Store) FailInterrupted(ctx context.Context, olderThan time.Duration) (int, error) {
	var n int64
	err := s.do(ctx, "fail interrupted answers", func(ctx context.Context) error {
		res, err := s.db.ExecContext(ctx, `UPDATE messages SET status = CASE WHEN replaces IS NULL THEN 'failed' ELSE 'superseded' END, finish_reason = 'error',
			error = $1, completed_at = now()
			WHERE status = 'in_progress' AND created_at < now() - make_interval(secs => $2)`,
			Interrupted, olderThan.Seconds())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// Orphaned is the error stored on an answer FailOrphaned ends.
const Orphaned = "interrupted: the gateway generating the answer stopped before its end"

// Heartbeat records that this gateway (Options.Origin) is alive, for FailOrphaned on
// the other gateways.
func (s *Store) Heartbeat(ctx context.Context) error {
	if s.opts.Origin == "" {
		return nil
	}
	return s.do(ctx, "heartbeat", func(ctx context.Context) error {
		_, err := s.db.ExecContext(ctx, `INSERT INTO gateways (origin) VALUES ($1)
			ON CONFLICT (origin) DO UPDATE SET seen_at = now()`, s.opts.Origin)
		return err
	})
}

// FailOrphaned marks failed (finish reason "error", error Orphaned) the answers in
// progress (their text is stored at their end, which they never reached) of gateways
// not seen for silentFor (stopped without ending
// them: killed, their machine lost), forgets gateways silent for a day, and returns
// how many answers it failed. Every gateway runs it now and then.
func (s *Store) FailOrphaned(ctx context.Context, silentFor time.Duration) (int, error) {
	var n int64
	err := s.do(ctx, "fail orphaned answers", func(ctx context.Context) error {
		res, err := s.db.ExecContext(ctx, `UPDATE messages SET status = CASE WHEN replaces IS NULL THEN 'failed' ELSE 'superseded' END, finish_reason = 'error',
			error = $1, completed_at = now()
			WHERE status = 'in_progress' AND gateway IS NOT NULL
			AND created_at < now() - make_interval(secs => $2)
			AND NOT EXISTS (SELECT 1 FROM gateways g WHERE g.origin = messages.gateway AND g.seen_at > now() - make_interval(secs => $2))`,
			Orphaned, silentFor.Seconds())
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		_, err = s.db.ExecContext(ctx, `DELETE FROM gateways WHERE seen_at < now() - interval '1 day'`)
		return err
	})
	return int(n), err
}

// encodeToolCalls returns calls as they are stored: a JSON array, "" for none. Text
// Postgres cannot store in a call is a *FieldError ("tool_calls").
func encodeToolCalls(calls []ToolCall) (string, error) {
	if len(calls) == 0 {
		return "", nil
	}
	for _, c := range calls {
		if err := checkTexts("tool_calls", c.ID, "tool_calls", c.Name, "tool_calls", c.Arguments); err != nil {
			return "", err
		}
	}
	b, err := json.Marshal(calls)
	return string(b), err
}

// decodeToolCalls reads stored calls (nil for none). What this store wrote always
// reads back; anything else stored there reads as no calls.
func decodeToolCalls(b []byte) []ToolCall {
	if len(b) == 0 {
		return nil
	}
	var calls []ToolCall
	if json.Unmarshal(b, &calls) != nil {
		return nil
	}
	return calls
}
