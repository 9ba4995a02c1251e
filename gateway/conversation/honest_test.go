package conversation_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ragway/ragway/gateway/conversation"
	"github.com/ragway/ragway/gateway/store"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// TestFailedAnswerStoresWhatTheClientWasTold: the error stored with a failed answer
// (shown to the client by GET /v1/conversations/{id}) is the description the client
// got, never the backend's own words, also when the failure came as a final event.
func TestFailedAnswerStoresWhatTheClientWasTold(t *testing.T) {
	s := openStore(t)
	u := newUser(t, s, "alice")
	g := conversation.NewTurns(s)
	describe := func(error) string { return "the model failed" }
	turn := ask(t, g, u.ID, "", "hi")
	final := sdk.Event{FinishReason: sdk.FinishError, Error: "ggml_abort at ggml.c:1234; stderr: r13 0x0", Usage: &sdk.Usage{}}
	if err := turn.End(nil, final, false, describe); err != nil {
		t.Fatal(err)
	}
	msgs, err := s.ListMessages(testCtx(t), u.ID, turn.Conversation.ID)
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[len(msgs)-1]
	if m.Status != store.StatusFailed || m.Error != "the model failed" || strings.Contains(m.Error, "ggml") {
		t.Errorf("stored %s with error %q, want failed with the client's description", m.Status, m.Error)
	}
}

// TestTurnWithoutUserMessageNamesMessages: a stored turn of system messages only is
// the client's error about 'messages', before any write.
func TestTurnWithoutUserMessageNamesMessages(t *testing.T) {
	s := openStore(t)
	u := newUser(t, s, "alice")
	_, err := conversation.NewTurns(s).Begin(testCtx(t), conversation.Request{UserID: u.ID, Model: "m",
		Messages: []sdk.Message{{Role: store.RoleSystem, Content: "be brief"}}})
	var fe *store.FieldError
	if !errors.As(err, &fe) || fe.Field != "messages" {
		t.Errorf("got %v, want a FieldError about 'messages'", err)
	}
}
