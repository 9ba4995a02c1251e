package store_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/lib/pq"

	"github.com/ragway/ragway/gateway/store"
)

// A conversation keeps an answer's tool calls and the tool results that answer them,
// gives them back with the history, and a gateway of the previous version (the
// 12-argument ragway_begin_turn) reads a history without them.
func TestToolMessages(t *testing.T) {
	s := open(t)
	u := user(t, s, "alice")
	first := turn(t, s, u.ID, "", userTurn("weather in Paris?"))
	conv := first.Conversation.ID
	calls := []store.ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`}, {ID: "call_2", Name: "get_time", Arguments: `{}`}}
	answer, err := s.FinishMessage(ctx(t), u.ID, first.AssistantMessageID, store.Finish{Status: store.StatusComplete, FinishReason: "tool_calls", ToolCalls: calls})
	if err != nil || !slices.Equal(answer.ToolCalls, calls) {
		t.Fatalf("FinishMessage with calls: %+v, %v", answer.ToolCalls, err)
	}
	second := turn(t, s, u.ID, conv, store.Turn{Model: "m", Messages: []store.NewMessage{
		{Role: store.RoleTool, ToolCallID: "call_1", Content: "sunny"},
		{Role: store.RoleTool, ToolCallID: "call_2", Content: "noon"},
	}})
	h := second.History
	if len(h) != 4 || !slices.Equal(h[1].ToolCalls, calls) || h[2].ToolCallID != "call_1" || h[3].ToolCallID != "call_2" || h[3].Content != "noon" {
		t.Fatalf("history after the results: %+v", h)
	}
	listed, err := s.ListMessages(ctx(t), u.ID, conv)
	if err != nil || len(listed) != 5 || !slices.Equal(listed[1].ToolCalls, calls) || listed[2].ToolCallID != "call_1" || listed[0].ToolCalls != nil {
		t.Fatalf("ListMessages: %+v, %v", listed, err)
	}
	if _, err := s.FinishMessage(ctx(t), u.ID, second.AssistantMessageID, store.Finish{Status: store.StatusComplete, Content: "Sunny at noon."}); err != nil {
		t.Fatal(err)
	}

	// The previous version's function: the tool exchange is left out of its history.
	rows, err := s.DB().QueryContext(ctx(t), `SELECT m_role, m_content, m_added FROM ragway_begin_turn($1, $2, 'm', false, '', '', $3, $4, 0, 0, NULL, NULL)`,
		u.ID, conv, pq.StringArray{"user"}, pq.StringArray{"thanks"})
	if err != nil {
		t.Fatal(err)
	}
	var old []string
	for rows.Next() {
		var role, content string
		var added bool
		if err := rows.Scan(&role, &content, &added); err != nil {
			t.Fatal(err)
		}
		old = append(old, role+":"+content)
	}
	rows.Close()
	if want := []string{"user:weather in Paris?", "assistant:Sunny at noon.", "user:thanks", "assistant:"}; !slices.Equal(old, want) {
		t.Fatalf("the previous version's history %q, want %q", old, want)
	}

	// Calls on a message that is not an answer, a call id on one that is not a tool
	// result, and text Postgres cannot store are refused before any write.
	before := count(t, s, `SELECT count(*) FROM messages`)
	_, err = s.BeginTurn(ctx(t), u.ID, conv, store.Turn{Model: "m", Messages: []store.NewMessage{{Role: store.RoleUser, Content: "x", ToolCalls: calls}}})
	wantErr(t, "calls on a user message", err, store.ErrInvalid)
	_, err = s.BeginTurn(ctx(t), u.ID, conv, store.Turn{Model: "m", Messages: []store.NewMessage{{Role: store.RoleUser, Content: "x", ToolCallID: "call_1"}}})
	wantErr(t, "a call id on a user message", err, store.ErrInvalid)
	_, err = s.BeginTurn(ctx(t), u.ID, conv, store.Turn{Model: "m", Messages: []store.NewMessage{{Role: store.RoleAssistant,
		ToolCalls: []store.ToolCall{{ID: "c", Name: "f", Arguments: "{\"a\":\"\x00\"}"}}}}})
	wantField(t, "a NUL in arguments", err, "tool_calls")
	_, err = s.BeginTurn(ctx(t), u.ID, conv, store.Turn{Model: "m", Messages: []store.NewMessage{{Role: store.RoleTool, ToolCallID: "c\xff", Content: "x"}}})
	wantField(t, "a call id that is not UTF-8", err, "tool_call_id")
	if after := count(t, s, `SELECT count(*) FROM messages`); after != before {
		t.Fatalf("refused turns stored %d messages", after-before)
	}

	// A result of a call the answer before it did not make.
	_, err = s.BeginTurn(ctx(t), u.ID, conv, store.Turn{Model: "m", Messages: []store.NewMessage{{Role: store.RoleTool, ToolCallID: "call_9", Content: "x"}}})
	wantField(t, "a result of no call", err, "messages")
	_, err = s.BeginTurn(ctx(t), u.ID, "", store.Turn{Model: "m", Messages: []store.NewMessage{{Role: store.RoleTool, ToolCallID: "call_1", Content: "x"}}})
	wantField(t, "a result in a new conversation", err, "messages")
	// Calls and their results within one turn are taken.
	inTurn := turn(t, s, u.ID, conv, store.Turn{Model: "m", Messages: []store.NewMessage{{Role: store.RoleUser, Content: "again"},
		{Role: store.RoleAssistant, ToolCalls: []store.ToolCall{{ID: "call_7", Name: "get_time", Arguments: "{}"}}}, {Role: store.RoleTool, ToolCallID: "call_7", Content: "noon"}}})
	if _, err := s.FinishMessage(ctx(t), u.ID, inTurn.AssistantMessageID, store.Finish{Status: store.StatusComplete, Content: "ok"}); err != nil {
		t.Fatal(err)
	}
	before = count(t, s, `SELECT count(*) FROM messages`)
	_, err = s.BeginTurn(ctx(t), u.ID, conv, store.Turn{Model: "m", Messages: []store.NewMessage{{Role: store.RoleTool, ToolCallID: "call_7", Content: "late"}}})
	wantField(t, "a result after a plain answer", err, "messages")
	if after := count(t, s, `SELECT count(*) FROM messages`); after != before {
		t.Fatalf("refused turns stored %d messages", after-before)
	}
}

// A message's calls count toward the history budget: the question before an answer
// whose calls alone exceed the budget is left out of a history read for it (the
// answer itself stays: the store drops only what cannot fit at any count, and the
// gateway fits the rest).
func TestToolCallsCountInTheBudget(t *testing.T) {
	s := open(t)
	u := user(t, s, "alice")
	first := turn(t, s, u.ID, "", userTurn("q"))
	conv := first.Conversation.ID
	big := `{"text":"` + strings.Repeat("word ", 2000) + `"}`
	if _, err := s.FinishMessage(ctx(t), u.ID, first.AssistantMessageID, store.Finish{Status: store.StatusComplete,
		ToolCalls: []store.ToolCall{{ID: "c", Name: "f", Arguments: big}}}); err != nil {
		t.Fatal(err)
	}
	next := turn(t, s, u.ID, conv, store.Turn{Model: "m", Budget: 500, Messages: []store.NewMessage{{Role: store.RoleUser, Content: "next"}}})
	if h := contents(next.History); !slices.Equal(h, []string{"assistant:", "user:next"}) {
		t.Fatalf("history for a budget the calls exceed: %q", h)
	}
}

// A migration that changes what a prepared statement returns (a column added to a
// table it returns whole) does not stop the store: the statement is prepared again.
func TestStalePreparedStatement(t *testing.T) {
	s := open(t)
	u := user(t, s, "alice")
	first := turn(t, s, u.ID, "", userTurn("q"))
	if _, err := s.FinishMessage(ctx(t), u.ID, first.AssistantMessageID, store.Finish{Status: store.StatusComplete, Content: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx(t), `ALTER TABLE messages ADD COLUMN later_column text`); err != nil {
		t.Fatal(err)
	}
	second := turn(t, s, u.ID, first.Conversation.ID, userTurn("q2"))
	if _, err := s.FinishMessage(ctx(t), u.ID, second.AssistantMessageID, store.Finish{Status: store.StatusComplete, Content: "b"}); err != nil {
		t.Fatalf("the end of a turn after the table changed: %v", err)
	}
}
