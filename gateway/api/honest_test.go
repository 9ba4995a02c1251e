package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ragway/ragway/gateway/api"
	"github.com/ragway/ragway/gateway/api/apitest"
	"github.com/ragway/ragway/gateway/conversation"
	"github.com/ragway/ragway/gateway/conversations"
	"github.com/ragway/ragway/gateway/health"
	"github.com/ragway/ragway/gateway/store"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// bearer is a well-formed key for requests with a body: the gateway reads no body of
// a request without one (apitest.Gate admits any).
var bearer = []string{"Authorization", "Bearer " + apitest.Key}

// storedServer serves the API over fake and a real store on a fresh database, as
// one user.
func storedServer(t *testing.T, fake *apitest.Fake) (*testServer, *store.Store) {
	t.Helper()
	st, p := apitest.StoreWithUser(t)
	return start(t, fake, withStore(st, api.Options{Gate: apitest.Gate{Principal: p}})), st
}

// withStore gives opts what a gateway with a database has: stored turns, the
// conversation routes and the database's readiness.
func withStore(st *store.Store, opts api.Options) api.Options {
	turns := conversation.NewTurns(st)
	opts.Chat = core(opts)
	opts.Chat.Turns = turns
	opts.Conversations = conversations.New(st, turns)
	opts.Database = &health.Database{Store: st, Logger: quietLogger()}
	return opts
}

func rows(t *testing.T, st *store.Store, query string) int {
	t.Helper()
	var n int
	if err := st.DB().QueryRow(query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStoredTextIsCheckedBeforeAnyWrite: NUL in a text that would be stored is a 400
// naming the field, before anything is written or generated.
func TestStoredTextIsCheckedBeforeAnyWrite(t *testing.T) {
	s, st := storedServer(t, newFake())
	for _, c := range []struct{ name, path, body, param string }{
		{"user content", "/v1/chat/completions", `{"model":"chat","conversation_id":"new","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"a\u0000b"}]}`, "messages[1].content"},
		{"system content", "/v1/chat/completions", `{"model":"chat","conversation_id":"new","messages":[{"role":"system","content":"\u0000"},{"role":"user","content":"hi"}]}`, "messages[0].content"},
		{"content part", "/v1/chat/completions", `{"model":"chat","conversation_id":"new","messages":[{"role":"user","content":[{"type":"text","text":"x\u0000"}]}]}`, "messages[0].content"},
		{"name", "/v1/chat/completions", `{"model":"chat","conversation_id":"new","messages":[{"role":"user","name":"b\u0000b","content":"hi"}]}`, "messages[0].name"},
		{"conversation title", "/v1/conversations", `{"title":"t\u0000"}`, "title"},
		{"conversation system prompt", "/v1/conversations", `{"system_prompt":"\u0000"}`, "system_prompt"},
	} {
		e := checkError(t, s.post(t, c.path, c.body, bearer...), 400, "invalid_request_error", "invalid_value", c.param)
		apitest.NoInternals(t, c.name, e.Message)
		if !strings.Contains(e.Message, "'"+c.param+"'") || !strings.Contains(e.Message, "NUL") {
			t.Errorf("%s: message %q does not say what is wrong where", c.name, e.Message)
		}
	}
	if n := rows(t, st, `SELECT count(*) FROM conversations`) + rows(t, st, `SELECT count(*) FROM messages`); n != 0 {
		t.Errorf("%d rows written", n)
	}
	if n := len(s.fake.Calls()); n != 0 {
		t.Errorf("the backend was called %d times", n)
	}
	// A chat that is not stored may carry NUL: nothing refuses it.
	resp := s.post(t, "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"a\u0000b"}]}`, bearer...)
	if b := readAll(t, resp); resp.StatusCode != 200 {
		t.Errorf("unstored chat with NUL: %d %s", resp.StatusCode, b)
	}
}

// nulModel emits text with a NUL and an invalid UTF-8 byte in it.
var nulModel = apitest.Script([]string{"Hello", " wor\x00ld", " \xff!"}, sdk.FinishStop, sdk.Usage{PromptTokens: 2, CompletionTokens: 3})

// nulCleaned is nulModel's text after the gateway's one rule (U+FFFD for both).
const nulCleaned = "Hello wor\ufffdld \ufffd!"

// TestModelEmittingNULKeepsItsAnswer: text a model emits with NUL or invalid UTF-8 in
// it reaches the client and the store as the same text, on every path.
func TestModelEmittingNULKeepsItsAnswer(t *testing.T) {
	fake := newFake()
	fake.SetGenerate(nulModel)
	s, st := storedServer(t, fake)
	stored := `{"model":"chat","conversation_id":"new","messages":[{"role":"user","content":"hi"}]`

	var out struct {
		ConversationID string `json:"conversation_id"`
		Choices        []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	decodeJSON(t, s.post(t, "/v1/chat/completions", stored+`}`, bearer...), 200, &out)
	if got := out.Choices[0].Message.Content; got != nulCleaned {
		t.Errorf("HTTP: client read %q, want %q", got, nulCleaned)
	}
	if got, status := apitest.LastMessage(t, st, out.ConversationID); got != nulCleaned || status != store.StatusComplete {
		t.Errorf("HTTP: stored %q (%s), want %q", got, status, nulCleaned)
	}

	resp := s.post(t, "/v1/chat/completions", stored+`,"stream":true}`, bearer...)
	id := resp.Header.Get("X-Ragway-Conversation-Id")
	if got := streamedText(t, resp); got != nulCleaned {
		t.Errorf("SSE: client read %q, want %q", got, nulCleaned)
	}
	if got, status := apitest.LastMessage(t, st, id); got != nulCleaned || status != store.StatusComplete {
		t.Errorf("SSE: stored %q (%s), want %q", got, status, nulCleaned)
	}

	// Unstored chats and completions follow the same rule.
	decodeJSON(t, s.post(t, "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, bearer...), 200, &out)
	if got := out.Choices[0].Message.Content; got != nulCleaned {
		t.Errorf("unstored HTTP: client read %q, want %q", got, nulCleaned)
	}
	var cmpl struct {
		Choices []struct{ Text string } `json:"choices"`
	}
	decodeJSON(t, s.post(t, "/v1/completions", `{"model":"chat","prompt":"hi"}`, bearer...), 200, &cmpl)
	if got := cmpl.Choices[0].Text; got != nulCleaned {
		t.Errorf("completions: client read %q, want %q", got, nulCleaned)
	}
	if got := streamedText(t, s.post(t, "/v1/completions", `{"model":"chat","prompt":"hi","stream":true}`, bearer...)); got != nulCleaned {
		t.Errorf("completions SSE: client read %q, want %q", got, nulCleaned)
	}
}

// streamedText joins the text deltas of an SSE response (chat or completion chunks).
func streamedText(t *testing.T, resp *http.Response) string {
	t.Helper()
	var b strings.Builder
	for _, d := range dataEvents(readSSE(t, resp)) {
		if d == "[DONE]" || strings.Contains(d, `"error"`) {
			continue
		}
		c, _ := parseChunk(t, d)
		for _, ch := range c.Choices {
			if ch.Delta != nil && ch.Delta.Content != nil {
				b.WriteString(*ch.Delta.Content)
			}
			if ch.Text != nil {
				b.WriteString(*ch.Text)
			}
		}
	}
	return b.String()
}

// failFinish makes Postgres refuse to end any answer, with SQLSTATE code and message.
func failFinish(t *testing.T, st *store.Store, code, message string) {
	t.Helper()
	for _, q := range []string{
		`DROP TRIGGER IF EXISTS fail_finish ON messages`,
		fmt.Sprintf(`CREATE OR REPLACE FUNCTION fail_finish() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			RAISE EXCEPTION '%s' USING ERRCODE = '%s';
		END $$`, strings.ReplaceAll(message, "'", "''"), code),
		`CREATE TRIGGER fail_finish BEFORE UPDATE ON messages FOR EACH ROW WHEN (NEW.status <> 'in_progress') EXECUTE FUNCTION fail_finish()`,
	} {
		if _, err := st.DB().Exec(q); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAnswerNotStoredIsAServerError: when Postgres fails to store a generated answer
// (a data exception, a deadlock, a lost connection), the client gets a 5xx server_error
// without Postgres's words, and still gets the answer: in the error body over HTTP, as
// the tokens before the error event over SSE.
func TestAnswerNotStoredIsAServerError(t *testing.T) {
	fake := newFake()
	fake.SetGenerate(apitest.Script([]string{"the", " answer"}, sdk.FinishStop, sdk.Usage{PromptTokens: 1, CompletionTokens: 2}))
	s, st := storedServer(t, fake)
	const stored = `{"model":"chat","conversation_id":"new","messages":[{"role":"user","content":"hi"}]`
	for _, c := range []struct {
		sqlstate, message string
		status            int
		code              string
	}{
		{"22021", `invalid byte sequence for encoding "UTF8": 0x00`, 500, "database_error"},
		{"23514", `new row for relation "messages" violates check constraint "messages_status_check"`, 500, "database_error"},
		{"40P01", "deadlock detected", 500, "database_error"},
		{"08006", "connection failure", 503, "database_unavailable"},
	} {
		t.Run(c.sqlstate, func(t *testing.T) {
			failFinish(t, st, c.sqlstate, c.message)
			resp := s.post(t, "/v1/chat/completions", stored+`}`, bearer...)
			b := readAll(t, resp)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, b)
			}
			if got := resp.Header.Get("X-Should-Retry"); got != "false" {
				t.Errorf("X-Should-Retry %q: a retry would store the question again", got)
			}
			var body struct {
				Error      apiError `json:"error"`
				Completion struct {
					Object         string `json:"object"`
					ConversationID string `json:"conversation_id"`
					Choices        []struct {
						Message struct{ Content string } `json:"message"`
					} `json:"choices"`
				} `json:"completion"`
			}
			if err := json.Unmarshal(b, &body); err != nil {
				t.Fatal(err)
			}
			if body.Error.Type != "server_error" || deref(body.Error.Code) != c.code || body.Error.Param != nil {
				t.Errorf("error %+v, want server_error %s", body.Error, c.code)
			}
			apitest.NoInternals(t, "HTTP", body.Error.Message)
			if len(body.Completion.Choices) != 1 || body.Completion.Choices[0].Message.Content != "the answer" ||
				body.Completion.Object != "chat.completion" || body.Completion.ConversationID == "" {
				t.Errorf("the answer is not in the error body: %s", b)
			}

			evs := dataEvents(readSSE(t, s.post(t, "/v1/chat/completions", stored+`,"stream":true}`, bearer...)))
			var text strings.Builder
			for _, d := range evs[:len(evs)-2] {
				ch, _ := parseChunk(t, d)
				if ch.Choices[0].Delta != nil && ch.Choices[0].Delta.Content != nil {
					text.WriteString(*ch.Choices[0].Delta.Content)
				}
			}
			if text.String() != "the answer" {
				t.Errorf("SSE: the answer streamed as %q", text.String())
			}
			if evs[len(evs)-1] != "[DONE]" {
				t.Fatalf("SSE: no [DONE] last: %q", evs)
			}
			e := checkErrorBody(t, []byte(evs[len(evs)-2]), "application/json", "server_error", c.code, "")
			apitest.NoInternals(t, "SSE", e.Message)
		})
	}
}

// TestConversationDeletedWhileItsTurnGenerates: the client still gets the generated
// text, and the error is a server-side one (the answer could not be stored), not a 404.
func TestConversationDeletedWhileItsTurnGenerates(t *testing.T) {
	fake := newFake()
	generating, release := make(chan struct{}), make(chan struct{})
	fake.SetGenerate(func(ctx context.Context, _ string, _ sdk.GenerateRequest, emit func(sdk.Event) error) error {
		close(generating)
		<-release
		if err := emit(sdk.Event{Text: "the answer", Tokens: 2}); err != nil {
			return err
		}
		return emit(sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{PromptTokens: 3, CompletionTokens: 2}})
	})
	s, st := storedServer(t, fake)
	type answer struct {
		status int
		body   []byte
	}
	done := make(chan answer, 1)
	go func() {
		resp := s.post(t, "/v1/chat/completions", `{"model":"chat","conversation_id":"new","messages":[{"role":"user","content":"hi"}]}`, bearer...)
		done <- answer{resp.StatusCode, readAll(t, resp)}
	}()
	<-generating
	var id string
	if err := st.DB().QueryRow(`SELECT id FROM conversations`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	resp := s.do(t, http.MethodDelete, "/v1/conversations/"+id, "", bearer...)
	if resp.StatusCode != 200 {
		t.Fatalf("delete: %d %s", resp.StatusCode, readAll(t, resp))
	}
	resp.Body.Close()
	close(release)
	a := <-done
	var out struct {
		Error *struct {
			Type string `json:"type"`
		} `json:"error"`
		Completion *struct {
			Choices []struct {
				Message struct{ Content string } `json:"message"`
			} `json:"choices"`
		} `json:"completion"`
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(a.body, &out); err != nil {
		t.Fatalf("%d %s", a.status, a.body)
	}
	text := ""
	switch {
	case out.Completion != nil && len(out.Completion.Choices) == 1:
		text = out.Completion.Choices[0].Message.Content
	case len(out.Choices) == 1:
		text = out.Choices[0].Message.Content
	}
	t.Logf("answer after its conversation was deleted: %d %.200s", a.status, a.body)
	if text != "the answer" || (a.status != 200 && (a.status < 500 || out.Error == nil || out.Error.Type != "server_error")) {
		t.Fatalf("answer after its conversation was deleted: %d %s; want the text, and a server-side error if any", a.status, a.body)
	}
}
