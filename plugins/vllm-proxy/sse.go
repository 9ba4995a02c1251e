package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// maxSSELine bounds one line of an event stream (a chunk with many top
// logprobs is a few kilobytes; anything near this is garbage).
const maxSSELine = 4 << 20

// sseReader reads server-sent events incrementally: each call to next
// reads just enough of the stream to return the data of one event.
type sseReader struct {
	r    *bufio.Reader
	data []byte // the current event's data
	long []byte // a line longer than the bufio buffer
	eof  bool
}

func newSSEReader(r io.Reader) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 16<<10)}
}

// errLineTooLong: the stream holds a line longer than maxSSELine.
var errLineTooLong = errors.New("event stream line too long")

// line returns the next line without its line ending; the slice is valid
// until the next call. A last line without a line ending is returned, then
// io.EOF.
func (s *sseReader) line() ([]byte, error) {
	if s.eof {
		return nil, io.EOF
	}
	b, err := s.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		s.long = append(s.long[:0], b...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(s.long) > maxSSELine {
				return nil, errLineTooLong
			}
			b, err = s.r.ReadSlice('\n')
			s.long = append(s.long, b...)
		}
		if len(s.long) > maxSSELine {
			return nil, errLineTooLong
		}
		b = s.long
	}
	switch {
	case err == io.EOF && len(b) > 0:
		s.eof = true
	case err != nil:
		return nil, err
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	return b, nil
}

// next returns the data of the next event that has data: its `data:`
// lines joined by newlines (comments, other fields and events without data
// are skipped). The slice is valid until the next call. At the end of the
// stream it returns io.EOF; an event cut short by the end is returned
// first.
func (s *sseReader) next() ([]byte, error) {
	s.data = s.data[:0]
	has := false
	for {
		l, err := s.line()
		if err != nil {
			if errors.Is(err, io.EOF) && has {
				return s.data, nil
			}
			return nil, err
		}
		if len(l) == 0 {
			if has {
				return s.data, nil
			}
			continue
		}
		if l[0] == ':' {
			continue // a comment: keep-alive
		}
		field, value := l, []byte(nil)
		if i := bytes.IndexByte(l, ':'); i >= 0 {
			field, value = l[:i], l[i+1:]
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		if string(field) != "data" {
			continue // event, id, retry: nothing the OpenAI protocol uses
		}
		if has {
			s.data = append(s.data, '\n')
		}
		s.data = append(s.data, value...)
		has = true
	}
}

// translator turns the `data:` payloads of one upstream stream into SDK
// events. It counts one token per content chunk (or one per logprobs
// entry when the chunk has them), holds back text that could start a stop
// sequence, and builds the one final event from the finish_reason and the
// usage chunk.
type translator struct {
	chat     bool
	logprobs bool
	stop     *sdk.StopBuffer
	// redact cleans text the upstream sent before it goes into an error.
	redact func(string) string

	held      int // tokens whose text the stop buffer holds back
	emitted   int // tokens of the emitted delta events
	pendingLP []sdk.TokenLogprob

	finish   *string      // the upstream's finish_reason, once seen
	opened   map[int]bool // the tool calls whose id and name were passed on
	usage    *wireUsage   // the usage chunk, once seen
	stopped  bool         // the stop buffer matched a stop sequence
	stopText string       // text before the stop sequence not yet emitted
}

func newTranslator(req sdk.GenerateRequest) *translator {
	return &translator{
		chat:     len(req.Messages) > 0,
		logprobs: req.Sampling.Logprobs, // TopLogprobs only counts with it
		stop:     sdk.NewStopBuffer(req.Sampling.Stop),
	}
}

// upstreamError is an error the upstream sent in its event stream.
type upstreamError struct {
	we wireError
}

func (e *upstreamError) Error() string {
	return "error from upstream during generation: " + e.we.text()
}

// errGarbage: a payload that is not an OpenAI stream chunk.
var errGarbage = errors.New("invalid stream chunk")

// push handles one payload. It returns a delta event to emit when it
// released text; after a stop sequence matched, done() is true and the
// caller emits final().
func (t *translator) push(data []byte) (ev sdk.Event, ok bool, err error) {
	var c streamChunk
	if err := json.Unmarshal(data, &c); err != nil {
		// Redact before truncating: a key cut in two would leak its start.
		msg := string(data)
		if t.redact != nil {
			msg = t.redact(msg)
		}
		msg = truncate(msg, 200)
		return sdk.Event{}, false, fmt.Errorf("%w: %v: %q", errGarbage, err, msg)
	}
	if we, isErr := c.errorOf(); isErr {
		if t.redact != nil {
			we.Message = t.redact(we.Message)
		}
		if we.invalid() {
			return sdk.Event{}, false, sdk.InvalidRequestf("%s (from the upstream during generation)", we.text())
		}
		return sdk.Event{}, false, &upstreamError{we: we}
	}
	if c.Usage != nil && len(c.Choices) == 0 {
		t.usage = c.Usage
		return sdk.Event{}, false, nil
	}
	if c.Usage != nil {
		// continuous usage stats ride on ordinary chunks: keep the latest.
		t.usage = c.Usage
	}
	var text string
	var lps []sdk.TokenLogprob
	var calls []sdk.ToolCallDelta
	for _, ch := range c.Choices {
		if ch.Index != 0 {
			continue // the plugin asks for one choice
		}
		switch {
		case ch.Delta != nil && ch.Delta.Content != nil:
			text += *ch.Delta.Content
		case ch.Text != nil:
			text += *ch.Text
		}
		if ch.Delta != nil {
			for _, d := range ch.Delta.ToolCalls {
				if d.Index < 0 || d.Index >= sdk.MaxToolCalls {
					return sdk.Event{}, false, fmt.Errorf("%w: tool call index %d", errGarbage, d.Index)
				}
				cd := sdk.ToolCallDelta{Index: d.Index, ID: d.ID, Name: d.Function.Name, Arguments: d.Function.Arguments}
				if t.opened[d.Index] {
					// A call's id and name come once: some upstreams repeat them on
					// later chunks, which clients would join to the name.
					cd.ID, cd.Name = "", ""
				} else if cd.ID != "" || cd.Name != "" {
					if t.opened == nil {
						t.opened = map[int]bool{}
					}
					t.opened[d.Index] = true
				}
				if cd.ID != "" || cd.Name != "" || cd.Arguments != "" {
					calls = append(calls, cd)
				}
			}
		}
		if t.logprobs {
			l, err := parseLogprobs(ch.Logprobs, t.chat)
			if err != nil {
				return sdk.Event{}, false, fmt.Errorf("%w: %v", errGarbage, err)
			}
			lps = append(lps, l...)
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			r := *ch.FinishReason
			t.finish = &r
		}
	}
	// A chunk is one token, or as many as it has logprobs for; tokens
	// without text (a partial character) ride with the next text.
	t.held += max(len(lps), min(1, len(text)+len(calls)))
	t.pendingLP = append(t.pendingLP, lps...)
	if len(calls) > 0 {
		// Tool calls pass as they come (stop sequences are about text).
		ev = sdk.Event{Text: t.stop.Flush(), ToolCalls: calls, Tokens: t.held, Logprobs: t.pendingLP}
		t.emitted += t.held
		t.held, t.pendingLP = 0, nil
		return ev, true, nil
	}
	if text == "" {
		return sdk.Event{}, false, nil
	}
	out, stopped := t.stop.Push(text)
	if stopped {
		t.stopped, t.stopText = true, out
		return sdk.Event{}, false, nil
	}
	if out == "" {
		return sdk.Event{}, false, nil
	}
	ev = sdk.Event{Text: out, Tokens: t.held, Logprobs: t.pendingLP}
	t.emitted += t.held
	t.held, t.pendingLP = 0, nil
	return ev, true, nil
}

// done reports whether a stop sequence ended the generation.
func (t *translator) done() bool { return t.stopped }

// finished reports whether the upstream sent a finish_reason.
func (t *translator) finished() bool { return t.finish != nil }

// final is the final event: the text still held back, the finish reason
// and the usage. Completion tokens are the upstream's count, or the
// plugin's own when the upstream sent none (or fewer); the final event's
// Tokens make the events add up to them. Without a usage chunk (or after a
// stop sequence the plugin matched itself, which ends the stream early)
// PromptTokens is 0: unknown.
func (t *translator) final() sdk.Event {
	ev := sdk.Event{FinishReason: sdk.FinishStop, Logprobs: t.pendingLP}
	switch {
	case t.stopped:
		ev.Text = t.stopText
	default:
		ev.Text = t.stop.Flush()
		if t.finish != nil {
			ev.FinishReason = finishReason(*t.finish)
		}
	}
	if ev.FinishReason == sdk.FinishError {
		ev.Error = "the upstream ended the generation with finish_reason \"error\""
	}
	counted := t.emitted + t.held
	u := &sdk.Usage{CompletionTokens: counted}
	if t.usage != nil {
		u.PromptTokens = max(0, t.usage.PromptTokens)
		u.CompletionTokens = max(counted, t.usage.CompletionTokens)
		if d := t.usage.PromptTokensDetails; d != nil {
			u.CachedTokens = min(max(0, d.CachedTokens), u.PromptTokens)
		}
	}
	ev.Usage = u
	ev.Tokens = u.CompletionTokens - t.emitted
	return ev
}
