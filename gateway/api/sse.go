package api

import (
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/oai"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// sseFormat writes the SSE events of one streamed response by appending
// to a caller-owned buffer: the hot path of streaming, so it builds JSON by
// hand around prefixes computed once per request.
type sseFormat interface {
	// start appends what opens choice i before its first content (the chat
	// role delta; nothing for completions).
	start(b []byte, i int) []byte
	// delta appends a content chunk of choice i.
	delta(b []byte, i int, text string, lps []sdk.TokenLogprob) []byte
	// toolCalls appends the chunks of tool-call deltas of choice i (nothing for
	// completions).
	toolCalls(b []byte, i int, deltas []sdk.ToolCallDelta) []byte
	// finish appends the chunk that ends choice i.
	finish(b []byte, i int, reason string) []byte
	// usage appends the usage chunk ("choices":[]).
	usage(b []byte, u usageJSON) []byte
	// fail appends an error event, end what ends the stream ([DONE]).
	fail(b []byte, e *oai.Error) []byte
	end(b []byte) []byte
}

// startObserver is an sseFormat that learns of the turn's start (its stored
// message).
type startObserver interface {
	onStart(e chat.Event)
}

var (
	sseDone = []byte("data: [DONE]\n\n")
	ssePing = []byte(": ping\n\n")
)

// appendSSEError appends an error event.
func appendSSEError(b []byte, e *oai.Error) []byte {
	b = append(b, `data: {"error":`...)
	b = e.AppendJSON(b)
	return append(b, "}\n\n"...)
}

// sseHead returns `data: {"id":…,"object":…,"created":…,"model":…,"choices":[`.
func sseHead(id, object string, created int64, model string) []byte {
	b := append([]byte(nil), `data: {"id":`...)
	b = oai.AppendString(b, id)
	b = append(b, `,"object":`...)
	b = oai.AppendString(b, object)
	b = append(b, `,"created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"model":`...)
	b = oai.AppendString(b, model)
	return append(b, `,"choices":[`...)
}

// sseTail closes the choices array and the chunk ("usage":null when the
// client asked for usage: every chunk but the last then carries it).
func sseTail(includeUsage bool) []byte {
	if includeUsage {
		return []byte("],\"usage\":null}\n\n")
	}
	return []byte("]}\n\n")
}

func appendUsage(b []byte, u usageJSON) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(u.PromptTokens), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(u.CompletionTokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(u.TotalTokens), 10)
	if u.PromptDetails != nil {
		b = append(b, `,"prompt_tokens_details":{"cached_tokens":`...)
		b = strconv.AppendInt(b, int64(u.PromptDetails.CachedTokens), 10)
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendUsageEvent(b, head []byte, u usageJSON) []byte {
	b = append(b, head...)
	b = append(b, `],"usage":`...)
	b = appendUsage(b, u)
	return append(b, "}\n\n"...)
}

func appendIndex(b, head []byte, i int) []byte {
	b = append(b, head...)
	b = append(b, `{"index":`...)
	return strconv.AppendInt(b, int64(i), 10)
}

// chatSSE formats chat.completion.chunk events.
type chatSSE struct {
	head, tail []byte
}

func newChatSSE(id string, created int64, model string, includeUsage bool) *chatSSE {
	return &chatSSE{head: sseHead(id, "chat.completion.chunk", created, model), tail: sseTail(includeUsage)}
}

func (f *chatSSE) start(b []byte, i int) []byte {
	b = appendIndex(b, f.head, i)
	b = append(b, `,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}`...)
	return append(b, f.tail...)
}

func (f *chatSSE) delta(b []byte, i int, text string, lps []sdk.TokenLogprob) []byte {
	b = appendIndex(b, f.head, i)
	b = append(b, `,"delta":{"content":`...)
	b = oai.AppendString(b, text)
	b = append(b, `},"logprobs":`...)
	if len(lps) == 0 {
		b = append(b, "null"...)
	} else {
		b = appendChatLogprobs(b, lps)
	}
	b = append(b, `,"finish_reason":null}`...)
	return append(b, f.tail...)
}

// toolCalls writes a call's opening (id, type, name, empty arguments) and its
// arguments as chunks of their own, as OpenAI streams them.
func (f *chatSSE) toolCalls(b []byte, i int, deltas []sdk.ToolCallDelta) []byte {
	for _, d := range deltas {
		if d.ID != "" || d.Name != "" {
			b = appendIndex(b, f.head, i)
			b = append(b, `,"delta":{"tool_calls":[{"index":`...)
			b = strconv.AppendInt(b, int64(d.Index), 10)
			b = append(b, `,"id":`...)
			b = oai.AppendString(b, d.ID)
			b = append(b, `,"type":"function","function":{"name":`...)
			b = oai.AppendString(b, d.Name)
			b = append(b, `,"arguments":""}}]},"logprobs":null,"finish_reason":null}`...)
			b = append(b, f.tail...)
		}
		if d.Arguments != "" {
			b = appendIndex(b, f.head, i)
			b = append(b, `,"delta":{"tool_calls":[{"index":`...)
			b = strconv.AppendInt(b, int64(d.Index), 10)
			b = append(b, `,"function":{"arguments":`...)
			b = oai.AppendString(b, d.Arguments)
			b = append(b, `}}]},"logprobs":null,"finish_reason":null}`...)
			b = append(b, f.tail...)
		}
	}
	return b
}

func (f *chatSSE) finish(b []byte, i int, reason string) []byte {
	b = appendIndex(b, f.head, i)
	b = append(b, `,"delta":{},"logprobs":null,"finish_reason":`...)
	b = oai.AppendString(b, reason)
	b = append(b, '}')
	return append(b, f.tail...)
}

func (f *chatSSE) usage(b []byte, u usageJSON) []byte { return appendUsageEvent(b, f.head, u) }

func (f *chatSSE) fail(b []byte, e *oai.Error) []byte { return appendSSEError(b, e) }

func (f *chatSSE) end(b []byte) []byte { return append(b, sseDone...) }

// completionSSE formats text_completion stream events.
type completionSSE struct {
	head, tail []byte
	// offsets[i] is the text offset (in characters) of choice i so far.
	offsets []int
}

func newCompletionSSE(id string, created int64, model string, includeUsage bool, n int) *completionSSE {
	return &completionSSE{head: sseHead(id, "text_completion", created, model), tail: sseTail(includeUsage), offsets: make([]int, n)}
}

func (f *completionSSE) start(b []byte, _ int) []byte { return b }

func (f *completionSSE) toolCalls(b []byte, _ int, _ []sdk.ToolCallDelta) []byte { return b }

func (f *completionSSE) fail(b []byte, e *oai.Error) []byte { return appendSSEError(b, e) }

func (f *completionSSE) end(b []byte) []byte { return append(b, sseDone...) }

func (f *completionSSE) delta(b []byte, i int, text string, lps []sdk.TokenLogprob) []byte {
	b = appendIndex(b, f.head, i)
	b = append(b, `,"text":`...)
	b = oai.AppendString(b, text)
	b = append(b, `,"logprobs":`...)
	if len(lps) == 0 {
		b = append(b, "null"...)
	} else {
		b = appendCompletionLogprobs(b, lps, f.offsets[i])
	}
	f.offsets[i] += utf8.RuneCountInString(text)
	b = append(b, `,"finish_reason":null}`...)
	return append(b, f.tail...)
}

func (f *completionSSE) finish(b []byte, i int, reason string) []byte {
	b = appendIndex(b, f.head, i)
	b = append(b, `,"text":"","logprobs":null,"finish_reason":`...)
	b = oai.AppendString(b, reason)
	b = append(b, '}')
	return append(b, f.tail...)
}

func (f *completionSSE) usage(b []byte, u usageJSON) []byte { return appendUsageEvent(b, f.head, u) }

// appendLogprob appends a log probability as a JSON number; -Inf and NaN,
// which JSON cannot carry, become -9999 (what OpenAI reports for
// vanishingly unlikely tokens).
func appendLogprob(b []byte, v float64) []byte {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		v = -9999
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

func appendTokenBytes(b []byte, tok string) []byte {
	b = append(b, '[')
	for k := 0; k < len(tok); k++ {
		if k > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(tok[k]), 10)
	}
	return append(b, ']')
}

// appendChatLogprobs appends a chat choice's logprobs object:
// {"content":[{"token","logprob","bytes","top_logprobs":[…]}],"refusal":null}.
func appendChatLogprobs(b []byte, lps []sdk.TokenLogprob) []byte {
	b = append(b, `{"content":[`...)
	for k, lp := range lps {
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"token":`...)
		b = oai.AppendString(b, lp.Token)
		b = append(b, `,"logprob":`...)
		b = appendLogprob(b, lp.Logprob)
		b = append(b, `,"bytes":`...)
		b = appendTokenBytes(b, lp.Token)
		b = append(b, `,"top_logprobs":[`...)
		for t, top := range lp.Top {
			if t > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"token":`...)
			b = oai.AppendString(b, top.Token)
			b = append(b, `,"logprob":`...)
			b = appendLogprob(b, top.Logprob)
			b = append(b, `,"bytes":`...)
			b = appendTokenBytes(b, top.Token)
			b = append(b, '}')
		}
		b = append(b, "]}"...)
	}
	return append(b, `],"refusal":null}`...)
}

// appendCompletionLogprobs appends a completion choice's logprobs object:
// {"tokens","token_logprobs","top_logprobs","text_offset"}; offset is the
// text offset of the first token.
func appendCompletionLogprobs(b []byte, lps []sdk.TokenLogprob, offset int) []byte {
	b = append(b, `{"tokens":[`...)
	for k, lp := range lps {
		if k > 0 {
			b = append(b, ',')
		}
		b = oai.AppendString(b, lp.Token)
	}
	b = append(b, `],"token_logprobs":[`...)
	for k, lp := range lps {
		if k > 0 {
			b = append(b, ',')
		}
		b = appendLogprob(b, lp.Logprob)
	}
	b = append(b, `],"top_logprobs":[`...)
	for k, lp := range lps {
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		for t, top := range lp.Top {
			if t > 0 {
				b = append(b, ',')
			}
			b = oai.AppendString(b, top.Token)
			b = append(b, ':')
			b = appendLogprob(b, top.Logprob)
		}
		b = append(b, '}')
	}
	b = append(b, `],"text_offset":[`...)
	for k, lp := range lps {
		if k > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(offset), 10)
		offset += utf8.RuneCountInString(lp.Token)
	}
	return append(b, "]}"...)
}
