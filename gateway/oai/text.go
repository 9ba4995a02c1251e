package oai

import (
	"fmt"

	"github.com/ragway/ragway/gateway/text"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// CheckText returns the 400 invalid_request_error naming param when s holds text the
// gateway cannot store (text.Check: a NUL character, or bytes that are not UTF-8,
// which a multipart field, unlike a JSON string, can carry). Every client text field
// that is stored (chat messages of a stored conversation, titles, system prompts,
// knowledge-base and document fields) is checked with it before any write.
func CheckText(param, s string) *Error {
	if why := text.Check(s); why != "" {
		return Invalid(param, CodeInvalidValue, "invalid value for '%s': %s", param, why)
	}
	return nil
}

// CleanText is the one rule for generated text (text.Clean: NUL and invalid UTF-8
// become U+FFFD). Text is cleaned where it comes out of the backend ([CleanEmit]), so
// what a client reads (HTTP, SSE, WebSocket) and what the store keeps are the same
// text, and a model that emits NUL never loses its answer to Postgres refusing it.
//
// Invalid UTF-8 cannot be split across events: events cross the plugin boundary as
// protobuf strings, which must be valid UTF-8, so a per-event rule is the whole rule.
func CleanText(s string) string { return text.Clean(s) }

// CleanEmit wraps the emit function given to a backend's Generate so that every
// event's text (and its logprob tokens) follows [CleanText] before anything else sees
// it: the chat paths (HTTP, SSE, WebSocket, stored turns) wrap their emit with it.
//
// A backend's tool-call deltas are checked too: a call's index is the next call's
// (which opens it) or an open call's, below sdk.MaxToolCalls; else the generation
// fails (BackendFailed). The emit function is one generation's.
func CleanEmit(emit func(sdk.Event) error) func(sdk.Event) error {
	calls := 0 // the calls opened
	return func(e sdk.Event) error {
		e.Text = CleanText(e.Text)
		if len(e.ToolCalls) > 0 {
			deltas := make([]sdk.ToolCallDelta, len(e.ToolCalls))
			for i, d := range e.ToolCalls {
				switch {
				case d.Index < 0 || d.Index > calls || d.Index >= sdk.MaxToolCalls:
					return BackendFailed(fmt.Sprintf("the backend sent a tool call with index %d after %d calls (at most %d)", d.Index, calls, sdk.MaxToolCalls))
				case d.Index == calls:
					calls++
				}
				d.ID, d.Name, d.Arguments = CleanText(d.ID), CleanText(d.Name), CleanText(d.Arguments)
				deltas[i] = d
			}
			e.ToolCalls = deltas
		}
		if len(e.Logprobs) > 0 && !cleanLogprobs(e.Logprobs) {
			lps := make([]sdk.TokenLogprob, len(e.Logprobs))
			for i, lp := range e.Logprobs {
				lp.Token = CleanText(lp.Token)
				if len(lp.Top) > 0 {
					top := make([]sdk.TopLogprob, len(lp.Top))
					for k, alt := range lp.Top {
						alt.Token = CleanText(alt.Token)
						top[k] = alt
					}
					lp.Top = top
				}
				lps[i] = lp
			}
			e.Logprobs = lps
		}
		return emit(e)
	}
}

// cleanLogprobs reports whether every token of lps is clean text already.
func cleanLogprobs(lps []sdk.TokenLogprob) bool {
	for _, lp := range lps {
		if CleanText(lp.Token) != lp.Token {
			return false
		}
		for _, alt := range lp.Top {
			if CleanText(alt.Token) != alt.Token {
				return false
			}
		}
	}
	return true
}
