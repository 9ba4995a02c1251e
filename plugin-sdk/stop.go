package sdk

import "strings"

// StopBuffer applies stop sequences to streamed text without ever releasing
// a partial match: text that could be the start of a stop sequence is held
// back until the next piece decides it. Plugins use it between their
// detokenizer and emit.
type StopBuffer struct {
	stops   []string
	pending string
	stopped bool
}

// NewStopBuffer returns a StopBuffer for the given stop sequences (empty
// ones are ignored).
func NewStopBuffer(stops []string) *StopBuffer {
	b := &StopBuffer{}
	for _, s := range stops {
		if s != "" {
			b.stops = append(b.stops, s)
		}
	}
	return b
}

// Push adds generated text. It returns the text that is safe to emit and
// whether a stop sequence was reached; after a stop, the text up to the stop
// sequence has been returned and further pushes return nothing.
func (b *StopBuffer) Push(text string) (out string, stopped bool) {
	if b.stopped {
		return "", true
	}
	b.pending += text
	cut := -1
	for _, s := range b.stops {
		if i := strings.Index(b.pending, s); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		out, b.pending, b.stopped = b.pending[:cut], "", true
		return out, true
	}
	hold := 0
	for _, s := range b.stops {
		for n := min(len(s)-1, len(b.pending)); n > hold; n-- {
			if strings.HasSuffix(b.pending, s[:n]) {
				hold = n
				break
			}
		}
	}
	out = b.pending[:len(b.pending)-hold]
	b.pending = b.pending[len(b.pending)-hold:]
	return out, false
}

// Flush returns the held-back text at the end of a generation that did not
// stop on a stop sequence.
func (b *StopBuffer) Flush() string {
	out := b.pending
	b.pending = ""
	return out
}
