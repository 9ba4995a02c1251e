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
