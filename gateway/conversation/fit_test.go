package conversation

import (
	"strings"
	"testing"

	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/tokens"
)

func msg(role, content string) store.Message { return store.Message{Role: role, Content: content} }

func roles(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("kept %v, want %v", got, want)
	}
}

func TestFitDropsOldestTurnsAndKeepsSystem(t *testing.T) {
	long := strings.Repeat("word ", 60) // 300 bytes: ~100 tokens
	history := []store.Message{
		msg("user", "q1 "+long), msg("assistant", "a1 "+long),
		msg("user", "q2 "+long), msg("assistant", "a2 "+long),
		msg("user", "q3"),
	}
	each := tokens.Estimate("q1 "+long) + perMessageTokens
	sys := "be brief"
	sysCost := tokens.Estimate(sys) + perMessageTokens

	cases := []struct {
		name   string
		budget int
		want   []string // first word of each kept message
	}{
		{"unbounded", 0, []string{"be", "q1", "a1", "q2", "a2", "q3"}},
		{"everything fits", 10 * each, []string{"be", "q1", "a1", "q2", "a2", "q3"}},
		// Room for q3 and one long message: a2 alone would start with an answer
		// whose question was dropped, so it goes too.
		{"drop to last question", sysCost + each + 10, []string{"be", "q3"}},
		{"last two turns", sysCost + 2*each + 10, []string{"be", "q2", "a2", "q3"}},
		{"last message always kept", 1, []string{"be", "q3"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := Fit(sys, history, c.budget)
			var got []string
			for _, m := range out {
				got = append(got, strings.Fields(m.Content)[0])
			}
			roles(t, got, c.want...)
			if out[0].Role != "system" {
				t.Fatalf("first message is %q, want the system prompt", out[0].Role)
			}
		})
	}
}

func TestFitWithoutSystemPrompt(t *testing.T) {
	out := Fit("", []store.Message{msg("user", "hello")}, 100)
	if len(out) != 1 || out[0].Role != "user" {
		t.Fatalf("got %+v", out)
	}
}

func TestFitUsesStoredCompletionTokens(t *testing.T) {
	// A short answer that cost many tokens (the stored count) counts as such.
	history := []store.Message{
		msg("user", "q1"), {Role: "assistant", Content: "ok", CompletionTokens: 500},
		msg("user", "q2"),
	}
	out := Fit("", history, 100)
	if len(out) != 1 || out[0].Content != "q2" {
		t.Fatalf("kept %+v, want only q2", out)
	}
}

func TestBudget(t *testing.T) {
	if Budget(0, 100) != 0 {
		t.Fatal("unknown context length must disable fitting")
	}
	if b := Budget(2048, 0); b != 2048-512-204 {
		t.Fatalf("Budget(2048, 0) = %d", b)
	}
	if b := Budget(2048, 100); b != 2048-100-204 {
		t.Fatalf("Budget(2048, 100) = %d", b)
	}
	if b := Budget(2048, 4000); b != 2048-512-204 {
		t.Fatalf("Budget(2048, 4000) = %d: an oversized max_tokens reserves a quarter", b)
	}
}

// A prompt cut inside a tool exchange begins at the next question: never with a
// tool result whose call was cut off, nor with the answer after it.
func TestFitNeverBeginsWithAToolResult(t *testing.T) {
	long := strings.Repeat("word ", 60)
	call := store.Message{Role: "assistant", ToolCalls: []store.ToolCall{{ID: "c1", Name: "get_weather", Arguments: `{"city":"` + long + `"}`}}}
	history := []store.Message{msg("user", "q1"), call, {Role: "tool", ToolCallID: "c1", Content: "r1 " + long}, msg("assistant", "a1 "+long), msg("user", "q2")}
	for budget := 1; budget < 2000; budget += 7 {
		p := Fit("", history, budget)
		if p[0].Role != "user" {
			t.Fatalf("budget %d: the prompt begins with %s %q", budget, p[0].Role, p[0].Content)
		}
		if len(p) == 5 && (p[1].ToolCalls[0].ID != "c1" || p[2].ToolCallID != "c1") {
			t.Fatalf("budget %d: the exchange as given: %+v", budget, p)
		}
	}
	// Only tool results to give (the history holds no question): the last message.
	p := Fit("", history[1:3], 10)
	if len(p) != 1 || p[0].Role != "tool" {
		t.Fatalf("without a question: %+v", p)
	}
}
