package api_test

import (
	"fmt"
	"testing"

	"github.com/ragway/ragway/gateway/workers"
)

// TestRefusedTurnStoresNothing: a stored turn that no replica took (the model is
// restarting, its queue is full) stores nothing: clients retrying through a plugin's
// restarts create no empty conversations, and retries into a conversation do not
// repeat its user message.
func TestRefusedTurnStoresNothing(t *testing.T) {
	fake := newFake()
	s, st := storedServer(t, fake)
	var first struct {
		ConversationID string `json:"conversation_id"`
	}
	decodeJSON(t, s.post(t, "/v1/chat/completions", `{"model":"chat","conversation_id":"new","messages":[{"role":"user","content":"hello there"}]}`, bearer...), 200, &first)

	fake.SetRefuse(func(model string) error {
		return fmt.Errorf("model %q: %w: the replica is restarting", model, workers.ErrUnavailable)
	})
	for i := range 3 {
		for _, body := range []string{
			`{"model":"chat","conversation_id":"new","messages":[{"role":"user","content":"anyone?"}]}`,
			`{"model":"chat","conversation_id":"new","stream":true,"messages":[{"role":"user","content":"anyone?"}]}`,
			`{"model":"chat","conversation_id":"` + first.ConversationID + `","messages":[{"role":"user","content":"again"}]}`,
			`{"model":"chat","conversation_id":"` + first.ConversationID + `","stream":true,"messages":[{"role":"user","content":"again"}]}`,
		} {
			resp := s.post(t, "/v1/chat/completions", body, bearer...)
			if resp.Header.Get("X-Ragway-Conversation-Id") != "" {
				t.Errorf("try %d: a refused turn names a conversation: %s", i, body)
			}
			checkError(t, resp, 503, "server_error", "model_unavailable", "")
		}
	}
	if n := rows(t, st, `SELECT count(*) FROM conversations`); n != 1 {
		t.Errorf("%d conversations after refused turns, want 1", n)
	}
	if n := rows(t, st, `SELECT count(*) FROM messages`); n != 2 {
		t.Errorf("%d messages after refused turns, want the first turn's 2", n)
	}

	fake.SetRefuse(nil)
	resp := s.post(t, "/v1/chat/completions", `{"model":"chat","conversation_id":"`+first.ConversationID+`","messages":[{"role":"user","content":"again"}]}`, bearer...)
	if b := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("once the model is back: %d %s", resp.StatusCode, b)
	}
	if n := rows(t, st, `SELECT count(*) FROM messages WHERE role = 'user' AND content = 'again'`); n != 1 {
		t.Errorf("the retried question is stored %d times, want once", n)
	}
}
