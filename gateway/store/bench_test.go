package store_test

import (
	"fmt"
	"testing"

	"github.com/ragway/ragway/gateway/store"
)

// BenchmarkBeginTurn measures one chat turn's start (a system prompt and a user
// message, the assistant message in progress) in a fresh conversation, and in one
// with 20 earlier messages of history.
func BenchmarkBeginTurn(b *testing.B) {
	s := open(b)
	u := user(b, s, "bench")
	sp := "You are terse."
	tr := store.Turn{Model: "m", SystemPrompt: &sp, Messages: []store.NewMessage{
		{Role: store.RoleUser, Content: "What is the capital of France? Answer in one word, please."},
	}}
	for _, history := range []int{0, 20} {
		b.Run(fmt.Sprintf("history=%d", history), func(b *testing.B) {
			seed := store.Turn{Model: "m"}
			for i := range history {
				role := store.RoleUser
				if i%2 == 1 {
					role = store.RoleAssistant
				}
				seed.Messages = append(seed.Messages, store.NewMessage{Role: role, Content: fmt.Sprintf("message %d of the history, a sentence or two long.", i)})
			}
			for b.Loop() {
				b.StopTimer()
				c := conversation(b, s, u.ID)
				if history > 0 {
					st := turn(b, s, u.ID, c.ID, seed)
					if _, err := s.FinishMessage(ctx(b), u.ID, st.AssistantMessageID, store.Finish{Status: store.StatusComplete}); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				if _, err := s.BeginTurn(ctx(b), u.ID, c.ID, tr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTurnCycle measures a whole turn on the store as a gateway that holds the
// conversation makes it: BeginTurn after the last message held, then FinishMessage;
// and, for scale, a `SELECT 1` round trip.
func BenchmarkTurnCycle(b *testing.B) {
	s := open(b)
	u := user(b, s, "bench")
	b.Run("select1", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.DB().ExecContext(ctx(b), "SELECT 1"); err != nil {
				b.Fatal(err)
			}
		}
	})
	st := turn(b, s, u.ID, "", userTurn("first"))
	conv := st.Conversation.ID
	m, err := s.FinishMessage(ctx(b), u.ID, st.AssistantMessageID, store.Finish{Status: store.StatusComplete, Content: "answer"})
	if err != nil {
		b.Fatal(err)
	}
	after, afterID := m.Seq, m.ID
	for _, part := range []string{"begin", "begin+finish"} {
		b.Run(part, func(b *testing.B) {
			for b.Loop() {
				tr := userTurn("What is the capital of France? Answer in one word, please.")
				tr.After, tr.AfterID = after, afterID
				st := turn(b, s, u.ID, conv, tr)
				if st.After != after || len(st.History) != 1 {
					b.Fatalf("the turn read %d messages after %d, want 1 after %d", len(st.History), st.After, after)
				}
				if part == "begin" {
					b.StopTimer()
				}
				m, err := s.FinishMessage(ctx(b), u.ID, st.AssistantMessageID, store.Finish{Status: store.StatusComplete, Content: "Paris.", CompletionTokens: 2})
				if err != nil {
					b.Fatal(err)
				}
				after, afterID = m.Seq, m.ID
				if part == "begin" {
					b.StartTimer()
				}
			}
		})
	}
}
