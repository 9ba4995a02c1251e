package api

import (
	"context"
	"strings"

	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/oai"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// MaxChoices bounds n (and, for /v1/completions, prompts × n).
const (
	maxN       = 8
	maxChoices = 64
)

// choiceResult is a collected (non-streamed) choice.
type choiceResult struct {
	text     strings.Builder
	finish   sdk.FinishReason
	logprobs []sdk.TokenLogprob
	calls    sdk.ToolCallJoiner
}

// collected is a non-streamed answer: the events of a turn gathered per choice.
type collected struct {
	choices []choiceResult
	// start names the stored turn (EventStart).
	start     chat.Event
	grounding *chat.Grounding
	usage     sdk.Usage
	// failure ended the turn (EventError); notStored is an answer generated whole
	// whose stored turn could not be ended; cancelled: the client went away.
	failure   *oai.Error
	notStored *oai.Error
	cancelled bool
}

// collect runs turn t (of n choices) to its end within ctx.
func collect(ctx context.Context, t *chat.Turn, n int) *collected {
	res := &collected{choices: make([]choiceResult, n)}
	t.Run(ctx, func(e chat.Event) error {
		switch e.Kind {
		case chat.EventStart:
			res.start = e
		case chat.EventSources:
			res.grounding = e.Grounding
		case chat.EventDelta:
			r := &res.choices[e.Choice]
			r.text.WriteString(e.Text)
			r.logprobs = append(r.logprobs, e.Logprobs...)
			r.calls.Add(e.ToolCalls)
		case chat.EventFinish:
			res.choices[e.Choice].finish = e.FinishReason
		case chat.EventDone:
			res.usage, res.notStored = e.Usage, e.Err
			res.cancelled = e.FinishReason == sdk.FinishCancelled
		case chat.EventError:
			res.failure = e.Err
		}
		return nil
	})
	return res
}

// usageJSON is the OpenAI usage object.
type usageJSON struct {
	PromptTokens     int                `json:"prompt_tokens"`
	CompletionTokens int                `json:"completion_tokens"`
	TotalTokens      int                `json:"total_tokens"`
	PromptDetails    *promptDetailsJSON `json:"prompt_tokens_details,omitempty"`
}

// promptDetailsJSON reports prompt tokens the backend served from its cache
// (a reused prompt prefix) instead of computing them.
type promptDetailsJSON struct {
	CachedTokens int `json:"cached_tokens"`
}

// usageOf is the OpenAI usage object of a turn's usage.
func usageOf(u sdk.Usage) usageJSON {
	out := usageJSON{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.PromptTokens + u.CompletionTokens}
	if u.CachedTokens > 0 {
		out.PromptDetails = &promptDetailsJSON{CachedTokens: u.CachedTokens}
	}
	return out
}

// finishReason maps a backend finish reason to OpenAI's ("stop", "length" or
// "tool_calls").
func finishReason(r sdk.FinishReason) string {
	switch r {
	case sdk.FinishLength:
		return "length"
	case sdk.FinishToolCalls:
		return "tool_calls"
	}
	return "stop"
}

// choicesN validates n.
func choicesN(n *int) (int, *oai.Error) {
	if n == nil {
		return 1, nil
	}
	if *n < 1 || *n > maxN {
		return 0, oai.Invalid("n", oai.CodeInvalidValue, "invalid value for 'n': %d; it must be between 1 and %d", *n, maxN)
	}
	return *n, nil
}
