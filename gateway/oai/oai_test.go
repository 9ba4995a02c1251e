package oai

import (
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"
)

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quo"te`, `back\slash`, "new\nline\r\ttab", "\x00\x01\x1f\x7f", "<b>&amp;</b>",
		"héllo wörld", "中文字符", "emoji 😀", "line\u2028sep\u2029", "bad \xff byte", "trunc \xe4\xb8",
	} {
		got := AppendString([]byte("x"), s)
		if got[0] != 'x' {
			t.Fatalf("prefix lost: %q", got)
		}
		var back string
		if err := json.Unmarshal(got[1:], &back); err != nil {
			t.Fatalf("%q → %s: %v", s, got[1:], err)
		}
		want := s
		if !utf8.ValidString(s) {
			want = string([]rune(s)) // invalid bytes become U+FFFD, as encoding/json does
		}
		if back != want {
			t.Errorf("%q → %s → %q", s, got[1:], back)
		}
		if !json.Valid(got[1:]) {
			t.Errorf("invalid JSON %s", got[1:])
		}
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("hello \"world\"\n")
	f.Add("\xff\xfe\u2028")
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("%q → %s: %v", s, out, err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("%q → %q", s, back)
		}
	})
}

func TestAppendStringDoesNotAllocateWithRoom(t *testing.T) {
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() { buf = AppendString(buf[:0], "token \"text\" with\nescapes é") })
	if allocs != 0 {
		t.Errorf("%v allocations", allocs)
	}
}

func TestErrorJSONAndRetryAfter(t *testing.T) {
	e := &Error{Status: 429, Message: `say "hi"`, Type: TypeRateLimit, Code: CodeQueueFull, RetryAfter: 1100 * time.Millisecond}
	if got := string(e.Body()); got != `{"error":{"message":"say \"hi\"","type":"rate_limit_error","param":null,"code":"queue_full"}}` {
		t.Errorf("body %s", got)
	}
	for d, want := range map[time.Duration]string{0: "1", time.Millisecond: "1", time.Second: "1", 1001 * time.Millisecond: "2", 30 * time.Second: "30"} {
		e.RetryAfter = d
		if got := e.RetryAfterSeconds(); got != want {
			t.Errorf("RetryAfter %v → %q, want %q", d, got, want)
		}
	}
}

func TestDecodeNamesParams(t *testing.T) {
	type inner struct {
		Flag bool `json:"flag"`
	}
	type embedded struct {
		Temp *float64 `json:"temperature"`
	}
	type req struct {
		embedded
		Opts *inner `json:"opts"`
	}
	for body, param := range map[string]string{
		`{"temperature":"x"}`: "p.temperature",
		`{"opts":{"flag":1}}`: "p.opts.flag",
		`{"opts":[]}`:         "p.opts",
	} {
		var r req
		err := Decode([]byte(body), &r, "p")
		if err == nil || err.Param != param || err.Code != CodeInvalidType || err.Status != 400 {
			t.Errorf("%s: %+v, want param %q", body, err, param)
		}
	}
}
