package conversation

import (
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/tokens"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// perMessageTokens is what a chat template adds around one message (role markers,
// separators): a few tokens in every template in use.
const perMessageTokens = 8

// Fit returns the prompt for a turn: the system prompt (when not empty), then the
// longest suffix of history whose estimated size, with the system prompt, fits in
// budget tokens and that begins with a user message: an answer, a call's result or
// the answer after it without the question they follow would make no sense to the
// model, and a tool result without its call is refused by templates. The last
// message is always kept, even when it alone exceeds the budget (the backend then
// reports the prompt as too long). budget <= 0 keeps everything. An assistant message's size is its stored completion token count when
// known.
func Fit(system string, history []store.Message, budget int) []sdk.Message {
	keep := len(history)
	if budget > 0 {
		used := 0
		if system != "" {
			used = tokens.Estimate(system) + perMessageTokens
		}
		keep = 0
		for i := len(history) - 1; i >= 0; i-- {
			used += messageTokens(history[i])
			if used > budget && keep > 0 {
				break
			}
			keep++
		}
		keep = len(history) - exchangeStart(history, len(history)-keep)
	}
	out := make([]sdk.Message, 0, keep+1)
	if system != "" {
		out = append(out, sdk.Message{Role: store.RoleSystem, Content: system})
	}
	for _, m := range history[len(history)-keep:] {
		out = append(out, promptMessage(m))
	}
	return out
}

// promptMessage is stored message m as a prompt's.
func promptMessage(m store.Message) sdk.Message {
	pm := sdk.Message{Role: m.Role, Content: m.Content, ToolCallID: m.ToolCallID}
	for _, c := range m.ToolCalls {
		pm.ToolCalls = append(pm.ToolCalls, sdk.ToolCall(c))
	}
	return pm
}

// exchangeStart is where a prompt of history[i:] can begin: the first user message at
// or after i, else the last message (what fits begins with no question).
func exchangeStart(history []store.Message, i int) int {
	for j := i; j < len(history); j++ {
		if history[j].Role == store.RoleUser {
			return j
		}
	}
	return len(history) - 1
}

func messageTokens(m store.Message) int {
	n := tokens.Estimate(m.Content)
	for _, c := range m.ToolCalls {
		n += tokens.Estimate(c.Name) + tokens.Estimate(c.Arguments) + perMessageTokens
	}
	if m.Role == store.RoleAssistant && m.CompletionTokens > n {
		n = m.CompletionTokens
	}
	return n + perMessageTokens
}

// Budget returns the prompt budget for a model with contextLength tokens when the
// answer may take up to maxTokens (0: unbounded, a quarter of the context is kept for
// it). A tenth of the context is kept as a margin for the estimate. 0 means unknown
// (contextLength 0: the model is not loaded yet): no fitting.
func Budget(contextLength, maxTokens int) int {
	if contextLength <= 0 {
		return 0
	}
	reserve := maxTokens
	if reserve <= 0 || reserve > contextLength/2 {
		reserve = contextLength / 4
	}
	b := contextLength - reserve - contextLength/10
	if b < 1 {
		b = 1
	}
	return b
}
