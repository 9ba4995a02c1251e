package main

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

func TestSSEReader(t *testing.T) {
	long := strings.Repeat("x", 100<<10)
	tests := []struct {
		name string
		in   string
		want []string
		err  error // after the events; io.EOF by default
	}{
		{name: "vLLM framing", in: "data: {\"a\":1}\n\ndata: [DONE]\n\n", want: []string{`{"a":1}`, "[DONE]"}},
		{name: "CRLF lines", in: "data: one\r\n\r\ndata: two\r\n\r\n", want: []string{"one", "two"}},
		{name: "no space after the colon", in: "data:one\n\n", want: []string{"one"}},
		{name: "only the first space is dropped", in: "data:  two spaces\n\n", want: []string{" two spaces"}},
		{name: "comments are keep-alives", in: ": ping\n\n: ping\ndata: x\n\n", want: []string{"x"}},
		{name: "multi-line data joins with newlines", in: "data: a\ndata: b\n\n", want: []string{"a\nb"}},
		{name: "other fields are ignored", in: "event: message\nid: 7\nretry: 100\ndata: x\n\n", want: []string{"x"}},
		{name: "events without data are skipped", in: "event: ping\n\ndata: x\n\n", want: []string{"x"}},
		{name: "last event without a blank line", in: "data: a\n\ndata: b", want: []string{"a", "b"}},
		{name: "line longer than the read buffer", in: "data: " + long + "\n\n", want: []string{long}},
		{name: "line too long", in: "data: " + strings.Repeat("y", maxSSELine+10), err: errLineTooLong},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// One byte at a time: framing must not depend on read sizes.
			r := newSSEReader(iotest.OneByteReader(strings.NewReader(tc.in)))
			if len(tc.in) > 1<<20 {
				r = newSSEReader(strings.NewReader(tc.in))
			}
			var got []string
			var err error
			for {
				var b []byte
				b, err = r.next()
				if err != nil {
					break
				}
				got = append(got, string(b))
			}
			want := tc.err
			if want == nil {
				want = io.EOF
			}
			if !reflect.DeepEqual(got, tc.want) || !errors.Is(err, want) {
				t.Errorf("got %d events %.80q, %v; want %.80q, %v", len(got), got, err, tc.want, want)
			}
		})
	}
}

// chatChunk is a vLLM chat chunk with text and an optional finish reason.
func chatChunk(text, finish string) string {
	f := "null"
	if finish != "" {
		f = fmt.Sprintf("%q", finish)
	}
	return fmt.Sprintf(`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":%q},"logprobs":null,"finish_reason":%s}]}`, text, f)
}

func TestTranslator(t *testing.T) {
	usage := func(p, c int) string {
		return fmt.Sprintf(`{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`, p, c, p+c)
	}
	tests := []struct {
		name   string
		stop   []string
		chunks []string
		deltas []string
		final  sdk.Event
	}{
		{
			name:   "an upstream that streams a stop sequence: cut before it, nothing of it leaks",
			stop:   []string{"STOP"},
			chunks: []string{chatChunk("a S", ""), chatChunk("TO", ""), chatChunk("P b", ""), chatChunk(" c", "")},
			deltas: []string{"a "},
			// Ended by the plugin: the usage chunk never came.
			final: sdk.Event{Tokens: 2, FinishReason: sdk.FinishStop, Usage: &sdk.Usage{CompletionTokens: 3}},
		},
		{
			name:   "a held-back partial stop that does not complete is released",
			stop:   []string{"STOP"},
			chunks: []string{chatChunk("a ST", ""), chatChunk("ART", "stop"), usage(5, 2)},
			deltas: []string{"a ", "START"},
			final:  sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{PromptTokens: 5, CompletionTokens: 2}},
		},
		{
			name:   "a partial stop at the end is flushed in the final event",
			stop:   []string{"STOP"},
			chunks: []string{chatChunk("a ST", "length"), usage(5, 1)},
			deltas: []string{"a "},
			// The delta that released "a " carried the chunk's token.
			final: sdk.Event{Text: "ST", FinishReason: sdk.FinishLength, Usage: &sdk.Usage{PromptTokens: 5, CompletionTokens: 1}},
		},
		{
			name:   "no usage chunk: completion tokens are the chunks counted",
			chunks: []string{chatChunk("a", ""), chatChunk(" b", ""), chatChunk("", "stop")},
			deltas: []string{"a", " b"},
			final:  sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{CompletionTokens: 2}},
		},
		{
			name:   "upstream counts more tokens than chunks: the final event carries the rest",
			chunks: []string{chatChunk("ab", ""), chatChunk("cd", "stop"), usage(3, 5)},
			deltas: []string{"ab", "cd"},
			final:  sdk.Event{Tokens: 3, FinishReason: sdk.FinishStop, Usage: &sdk.Usage{PromptTokens: 3, CompletionTokens: 5}},
		},
		{
			name:   "upstream counts fewer tokens than chunks: the chunks win, events add up",
			chunks: []string{chatChunk("a", ""), chatChunk("b", ""), chatChunk("c", "stop"), usage(3, 1)},
			deltas: []string{"a", "b", "c"},
			final:  sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{PromptTokens: 3, CompletionTokens: 3}},
		},
		{
			name: "cached tokens are bounded by the prompt",
			chunks: []string{chatChunk("a", "stop"),
				`{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":9}}}`},
			deltas: []string{"a"},
			final:  sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{PromptTokens: 4, CompletionTokens: 1, CachedTokens: 4}},
		},
		{
			name:   "finish_reason error",
			chunks: []string{chatChunk("a", ""), chatChunk("", "error")},
			deltas: []string{"a"},
			final: sdk.Event{FinishReason: sdk.FinishError, Error: `the upstream ended the generation with finish_reason "error"`,
				Usage: &sdk.Usage{CompletionTokens: 1}},
		},
		{
			name: "continuous usage stats on every chunk; other choices ignored",
			chunks: []string{
				`{"choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{"content":"z"}}],"usage":{"prompt_tokens":2,"completion_tokens":1}}`,
				`{"choices":[{"index":0,"delta":{"content":"b"},"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":2}}`,
			},
			deltas: []string{"a", "b"},
			final:  sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{PromptTokens: 2, CompletionTokens: 2}},
		},
		{
			name:   "unknown fields and a reasoning delta are tolerated",
			chunks: []string{`{"choices":[{"index":0,"delta":{"reasoning_content":"hmm"},"future":1}],"x":{}}`, chatChunk("a", "stop")},
			deltas: []string{"a"},
			final:  sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{CompletionTokens: 1}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTranslator(sdk.GenerateRequest{Messages: []sdk.Message{{Role: "user", Content: "x"}}, Sampling: sdk.Sampling{Stop: tc.stop}})
			var deltas []string
			evs := []sdk.Event{}
			for _, c := range tc.chunks {
				ev, ok, err := tr.push([]byte(c))
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					deltas = append(deltas, ev.Text)
					evs = append(evs, ev)
				}
				if tr.done() {
					break
				}
			}
			final := tr.final()
			checkContract(t, append(evs, final))
			if !reflect.DeepEqual(deltas, tc.deltas) {
				t.Errorf("deltas %q, want %q", deltas, tc.deltas)
			}
			if !reflect.DeepEqual(final, tc.final) {
				t.Errorf("final %+v %+v, want %+v %+v", final, *final.Usage, tc.final, *tc.final.Usage)
			}
		})
	}
}

func TestTranslatorErrors(t *testing.T) {
	tests := []struct {
		name    string
		chunk   string
		invalid bool
		garbage bool
		want    string
	}{
		{name: "nested 400", chunk: `{"error":{"message":"bad","type":"BadRequestError","param":null,"code":400}}`, invalid: true, want: "bad"},
		{name: "older vLLM: the flat object nested", chunk: `{"error":{"object":"error","message":"bad","type":"BadRequestError","code":400}}`, invalid: true, want: "bad"},
		{name: "flat 500", chunk: `{"object":"error","message":"engine died","type":"InternalServerError","code":500}`, want: "engine died"},
		{name: "error string", chunk: `{"error":"overloaded"}`, want: "overloaded"},
		{name: "not JSON", chunk: `<html>`, garbage: true, want: "invalid stream chunk"},
		{name: "bad logprobs", chunk: `{"choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":7}}]}`, garbage: true, want: "logprobs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTranslator(sdk.GenerateRequest{Messages: []sdk.Message{{Role: "user"}}, Sampling: sdk.Sampling{Logprobs: true}})
			_, ok, err := tr.push([]byte(tc.chunk))
			switch {
			case err == nil || ok:
				t.Fatalf("push = %v, %v", ok, err)
			case sdk.IsInvalidRequest(err) != tc.invalid, errors.Is(err, errGarbage) != tc.garbage:
				t.Errorf("%v: invalid %v garbage %v", err, sdk.IsInvalidRequest(err), errors.Is(err, errGarbage))
			case !strings.Contains(err.Error(), tc.want):
				t.Errorf("%q does not say %q", err, tc.want)
			}
		})
	}
}

// A garbage payload is redacted before it is cut to size: a key that
// crosses the cut must not leak its start.
func TestTranslatorGarbageRedactsBeforeTruncating(t *testing.T) {
	const key = "sk-secret-key-0123456789abcdef"
	data := "<" + strings.Repeat("x", 190) + key + strings.Repeat("y", 50)
	tr := newTranslator(sdk.GenerateRequest{Prompt: "p"})
	tr.redact = func(s string) string { return strings.ReplaceAll(s, key, "[redacted]") }
	_, _, err := tr.push([]byte(data))
	if !errors.Is(err, errGarbage) {
		t.Fatalf("push: %v", err)
	}
	if msg := err.Error(); strings.Contains(msg, key[:8]) {
		t.Errorf("error leaks the key's start: %q", msg)
	}
}

// TopLogprobs without Logprobs asks for no logprobs: the translator
// ignores whatever logprobs field a chunk has.
func TestTranslatorTopLogprobsAloneIgnoresLogprobs(t *testing.T) {
	tr := newTranslator(sdk.GenerateRequest{Messages: []sdk.Message{{Role: "user"}}, Sampling: sdk.Sampling{TopLogprobs: 2}})
	ev, ok, err := tr.push([]byte(`{"choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":[{"token":"a","logprob":-1,"top_logprobs":[]}]}}]}`))
	if err != nil || !ok {
		t.Fatalf("push = %v, %v", ok, err)
	}
	if ev.Logprobs != nil || ev.Tokens != 1 {
		t.Errorf("event %+v: want no logprobs, 1 token", ev)
	}
}
