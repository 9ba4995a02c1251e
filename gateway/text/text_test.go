package text

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, ok := range []string{"", "plain", "héllo 中文 😀", "\ufffd", "tab\tnew\nline"} {
		if why := Check(ok); why != "" {
			t.Errorf("Check(%q) = %q", ok, why)
		}
	}
	for s, want := range map[string]string{"a\x00b": "NUL character (U+0000) at byte 1", "bad \xff byte": "UTF-8 (at byte 4)", "\xed\xa0\x80": "UTF-8 (at byte 0)"} {
		if why := Check(s); !strings.Contains(why, want) {
			t.Errorf("Check(%q) = %q, want it to say %q", s, why, want)
		}
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{"": "", "ok": "ok", "a\x00b": "a\ufffdb", "trunc \xe4\xb8": "trunc \ufffd\ufffd"} {
		if got := Clean(in); got != want || Check(got) != "" {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
	s := "a clean token"
	if allocs := testing.AllocsPerRun(100, func() { s = Clean(s) }); allocs != 0 {
		t.Errorf("clean text: %v allocations", allocs)
	}
}
