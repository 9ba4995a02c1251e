package sdk

import (
	"reflect"
	"strings"
	"testing"
)

func TestStopBuffer(t *testing.T) {
	tests := []struct {
		name   string
		stops  []string
		pieces []string
		// outs is what each Push returns; stopAt is the index of the push
		// that reports the stop (-1: none); flush is Flush's result after.
		outs   []string
		stopAt int
		flush  string
	}{
		{
			name:   "no stops",
			pieces: []string{"Hello", " world"},
			outs:   []string{"Hello", " world"},
			stopAt: -1,
		},
		{
			name:   "only empty stop strings",
			stops:  []string{"", ""},
			pieces: []string{"Hello", " world"},
			outs:   []string{"Hello", " world"},
			stopAt: -1,
		},
		{
			name:   "empty stop string ignored next to a real one",
			stops:  []string{"", "STOP"},
			pieces: []string{"go STOP now"},
			outs:   []string{"go "},
			stopAt: 0,
		},
		{
			name:   "stop split across pieces",
			stops:  []string{"Hello"},
			pieces: []string{"Hel", "lo STOP"},
			outs:   []string{"", ""},
			stopAt: 1,
		},
		{
			name:   "stop split across three pieces",
			stops:  []string{"STOP"},
			pieces: []string{"Hel", "lo ST", "O", "P more"},
			outs:   []string{"Hel", "lo ", "", ""},
			stopAt: 3,
		},
		{
			name:   "stop inside one piece",
			stops:  []string{"STOP"},
			pieces: []string{"Hel", "lo STOP more"},
			outs:   []string{"Hel", "lo "},
			stopAt: 1,
		},
		{
			name:   "stop at the very start",
			stops:  []string{"Hi"},
			pieces: []string{"Hi there"},
			outs:   []string{""},
			stopAt: 0,
		},
		{
			name:   "earliest of several stops wins",
			stops:  []string{"world", "lo"},
			pieces: []string{"Hello world"},
			outs:   []string{"Hel"},
			stopAt: 0,
		},
		{
			name:   "earliest start wins over the stop listed first",
			stops:  []string{"cd", "abcde"},
			pieces: []string{"xab", "cdef"},
			outs:   []string{"x", ""},
			stopAt: 1,
		},
		{
			name:   "partial match that is not a stop is released",
			stops:  []string{"STOP"},
			pieces: []string{"ST", "ART", " ok"},
			outs:   []string{"", "START", " ok"},
			stopAt: -1,
		},
		{
			name:   "longest possible partial match is held",
			stops:  []string{"aab"},
			pieces: []string{"a", "a", "a", "b"},
			outs:   []string{"", "", "a", ""},
			stopAt: 3,
		},
		{
			name:   "partial matches of two stops",
			stops:  []string{"abc", "bcd"},
			pieces: []string{"xab", "cd"},
			outs:   []string{"x", ""},
			stopAt: 1,
		},
		{
			name:   "held partial match flushed at the end",
			stops:  []string{"STOP"},
			pieces: []string{"abc ", "ST"},
			outs:   []string{"abc ", ""},
			stopAt: -1,
			flush:  "ST",
		},
		{
			name:   "multibyte stop split mid-rune",
			stops:  []string{"é!"},
			pieces: []string{"caf\xc3", "\xa9! yes"},
			outs:   []string{"caf", ""},
			stopAt: 1,
		},
		{
			name:   "pushes after the stop return nothing",
			stops:  []string{"."},
			pieces: []string{"one.", " two", "."},
			outs:   []string{"one", "", ""},
			stopAt: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewStopBuffer(tt.stops)
			var outs []string
			stopAt := -1
			for i, p := range tt.pieces {
				out, stopped := b.Push(p)
				outs = append(outs, out)
				if stopped && stopAt < 0 {
					stopAt = i
				}
				if !stopped && stopAt >= 0 {
					t.Errorf("push %d: not stopped after a stop", i)
				}
			}
			if stopAt >= 0 {
				outs = outs[:min(len(outs), len(tt.outs))]
			}
			if !reflect.DeepEqual(outs, tt.outs) || stopAt != tt.stopAt {
				t.Errorf("outs %q stopAt %d, want %q stopAt %d", outs, stopAt, tt.outs, tt.stopAt)
			}
			if got := b.Flush(); got != tt.flush {
				t.Errorf("Flush() = %q, want %q", got, tt.flush)
			}
			if got := b.Flush(); got != "" {
				t.Errorf("second Flush() = %q, want empty", got)
			}
			// Whatever the split, the emitted text is the text before the
			// earliest stop, and never contains a stop.
			all := strings.Join(outs, "") + tt.flush
			for _, s := range tt.stops {
				if s != "" && strings.Contains(all, s) {
					t.Errorf("emitted %q contains stop %q", all, s)
				}
			}
		})
	}
}

// Splitting the same text into pieces anywhere gives the same output.
func TestStopBufferSplitInvariant(t *testing.T) {
	const text = "The quick brown fox jumps over the lazy dog. THE END"
	stops := []string{"lazy d", "END", "jumps over the quick"}
	want := "The quick brown fox jumps over the "
	for i := 0; i <= len(text); i++ {
		for j := i; j <= len(text); j++ {
			b := NewStopBuffer(stops)
			var got strings.Builder
			stopped := false
			for _, p := range []string{text[:i], text[i:j], text[j:]} {
				out, s := b.Push(p)
				got.WriteString(out)
				stopped = stopped || s
			}
			if !stopped {
				got.WriteString(b.Flush())
			}
			if got.String() != want || !stopped {
				t.Fatalf("split at %d,%d: got %q stopped=%v, want %q stopped", i, j, got.String(), stopped, want)
			}
		}
	}
}
