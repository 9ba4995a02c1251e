package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestPullBar: on a terminal, a pull's bar shows the bytes, the share done and the
// size, redrawn in place; elsewhere it prints nothing.
func TestPullBar(t *testing.T) {
	var out bytes.Buffer
	b := newPullBar(&out, "hf:org/repo/model.gguf")
	b.tty = true
	b.progress(512<<10, 1<<20)
	b.finish()
	got := out.String()
	if !strings.HasPrefix(got, "\r") || !strings.Contains(got, "512.0 KiB") || !strings.Contains(got, " 50% of 1.0 MiB") ||
		!strings.Contains(got, "[====") || !strings.HasSuffix(got, "\n") {
		t.Fatalf("bar %q", got)
	}
	out.Reset()
	quiet := newPullBar(&out, "x") // a buffer is no terminal
	quiet.progress(1, 2)
	quiet.finish()
	if out.Len() != 0 {
		t.Fatalf("not a terminal, yet %q", out.String())
	}
}
