package ws_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/ragway/ragway/gateway/api/apitest"
	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/conversation"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/ws"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// storedServer serves the protocol over fake with `content` chats stored in a real
// store on a fresh database, as one user.
func storedServer(t *testing.T, fake *apitest.Fake) (*server, *store.Store) {
	t.Helper()
	st, p := apitest.StoreWithUser(t)
	return start(t, fake, ws.Options{Chat: &chat.Service{Turns: conversation.NewTurns(st)}, Gate: apitest.Gate{Principal: p}}), st
}

// runChat reads the frames of chat id to its end: its start frame's conversation id,
// the text of its tokens and its terminal frame.
func (c *client) runChat(id string) (conversationID, text string, end frame) {
	c.t.Helper()
	start := c.expect("start", id)
	var s struct {
		ConversationID string `json:"conversation_id"`
	}
	_ = json.Unmarshal([]byte(start.raw), &s)
	var b strings.Builder
	for {
		f := c.read()
		if f.id() != id {
			c.t.Fatalf("frame of another chat: %s", f)
		}
		switch f.Type {
		case "token":
			b.WriteString(f.Text)
		case "done", "error":
			return s.ConversationID, b.String(), f
		default:
			c.t.Fatalf("unexpected frame %s", f)
		}
	}
}

// TestStoredChatTextIsCheckedBeforeAnyWrite: a stored chat whose content or system
// prompt holds NUL gets an error frame naming the field; nothing is stored or generated.
func TestStoredChatTextIsCheckedBeforeAnyWrite(t *testing.T) {
	s, st := storedServer(t, newFake())
	c := s.dial(t)
	c.send(chatFrame("c1", "a\u0000b"))
	f := c.expectError("c1", "invalid_request_error", "invalid_value", "content")
	apitest.NoInternals(t, "content", f.Error.Message)
	c.send(`{"type":"chat","id":"c2","model":"chat","content":"hi","system":"\u0000"}`)
	f = c.expectError("c2", "invalid_request_error", "invalid_value", "system")
	apitest.NoInternals(t, "system", f.Error.Message)
	var n int
	if err := st.DB().QueryRow(`SELECT (SELECT count(*) FROM conversations) + (SELECT count(*) FROM messages)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d rows written", n)
	}
	if calls := len(s.fake.Calls()); calls != 0 {
		t.Errorf("the backend was called %d times", calls)
	}
}

// TestModelEmittingNULKeepsItsAnswerOverWebSocket: the token frames and the stored
// answer carry the same text when the model emits NUL and invalid UTF-8.
func TestModelEmittingNULKeepsItsAnswerOverWebSocket(t *testing.T) {
	fake := newFake()
	fake.SetGenerate(apitest.Script([]string{"Hello", " wor\x00ld", " \xff!"}, sdk.FinishStop, sdk.Usage{PromptTokens: 2, CompletionTokens: 3}))
	s, st := storedServer(t, fake)
	c := s.dial(t)
	c.send(chatFrame("c1", "hi"))
	id, text, end := c.runChat("c1")
	const want = "Hello wor\ufffdld \ufffd!"
	if end.Type != "done" || text != want {
		t.Fatalf("client read %q, ended by %s; want %q and done", text, end, want)
	}
	if got, status := apitest.LastMessage(t, st, id); got != want || status != store.StatusComplete {
		t.Errorf("stored %q (%s), want %q", got, status, want)
	}
}

// TestAnswerNotStoredOverWebSocket: the tokens went out, then an error frame: a 5xx
// server_error without Postgres's words.
func TestAnswerNotStoredOverWebSocket(t *testing.T) {
	fake := newFake()
	fake.SetGenerate(apitest.Script([]string{"the", " answer"}, sdk.FinishStop, sdk.Usage{PromptTokens: 1, CompletionTokens: 2}))
	s, st := storedServer(t, fake)
	c := s.dial(t)
	for i, code := range []string{"22021", "40P01"} {
		for _, q := range []string{
			`DROP TRIGGER IF EXISTS fail_finish ON messages`,
			fmt.Sprintf(`CREATE OR REPLACE FUNCTION fail_finish() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN RAISE EXCEPTION 'invalid byte sequence for encoding "UTF8": 0x00' USING ERRCODE = '%s'; END $$`, code),
			`CREATE TRIGGER fail_finish BEFORE UPDATE ON messages FOR EACH ROW WHEN (NEW.status <> 'in_progress') EXECUTE FUNCTION fail_finish()`,
		} {
			if _, err := st.DB().Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		id := fmt.Sprintf("c%d", i)
		c.send(chatFrame(id, "hi"))
		_, text, end := c.runChat(id)
		if text != "the answer" {
			t.Errorf("%s: tokens %q", code, text)
		}
		if end.Type != "error" || end.Error.Type != "server_error" || deref(end.Error.Code) != "database_error" || end.Error.Param != nil {
			t.Errorf("%s: terminal frame %s, want a server_error database_error", code, end)
			continue
		}
		apitest.NoInternals(t, code, end.Error.Message)
	}
}
