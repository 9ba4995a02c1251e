package oai

import (
	"encoding/json"
	"strings"
	"testing"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

func TestCheckText(t *testing.T) {
	for _, ok := range []string{"", "plain", "héllo 中文 😀", "\ufffd", "tab\tnew\nline"} {
		if e := CheckText("messages[0].content", ok); e != nil {
			t.Errorf("%q: %v", ok, e)
		}
	}
	for s, why := range map[string]string{"a\x00b": "NUL", "bad \xff byte": "UTF-8", "trunc \xe4\xb8": "UTF-8", "\xed\xa0\x80": "UTF-8"} {
		e := CheckText("messages[2].content", s)
		if e == nil {
			t.Errorf("%q accepted", s)
			continue
		}
		if e.Status != 400 || e.Param != "messages[2].content" || !strings.Contains(e.Message, "'messages[2].content'") || !strings.Contains(e.Message, why) {
			t.Errorf("%q: %+v", s, e)
		}
	}
}

func TestCleanText(t *testing.T) {
	for in, want := range map[string]string{
		"":                "",
		"plain":           "plain",
		"héllo 中文 😀":      "héllo 中文 😀",
		"a\x00b":          "a\ufffdb",
		"\x00\x00":        "\ufffd\ufffd",
		"bad \xff byte":   "bad \ufffd byte",
		"trunc \xe4\xb8":  "trunc \ufffd\ufffd",
		"\xed\xa0\x80 x":  "\ufffd\ufffd\ufffd x",
		"ok\ufffdalready": "ok\ufffdalready",
	} {
		got := CleanText(in)
		if got != want {
			t.Errorf("CleanText(%q) = %q, want %q", in, got, want)
		}
		if CheckText("x", got) != nil {
			t.Errorf("CleanText(%q) = %q does not pass CheckText", in, got)
		}
		// What the client reads (AppendString) is what is stored (the cleaned text).
		var read, readRaw string
		_ = json.Unmarshal(AppendString(nil, got), &read)
		_ = json.Unmarshal(AppendString(nil, strings.ReplaceAll(in, "\x00", "\ufffd")), &readRaw)
		if read != got || readRaw != got {
			t.Errorf("%q: the client would read %q or %q, the store keeps %q", in, read, readRaw, got)
		}
	}
	s := "a clean token"
	if allocs := testing.AllocsPerRun(100, func() { s = CleanText(s) }); allocs != 0 {
		t.Errorf("clean text: %v allocations", allocs)
	}
}

func TestCleanEmit(t *testing.T) {
	var got []sdk.Event
	emit := CleanEmit(func(e sdk.Event) error { got = append(got, e); return nil })
	_ = emit(sdk.Event{Text: "a\x00b", Tokens: 1, Logprobs: []sdk.TokenLogprob{{Token: "\x00", Top: []sdk.TopLogprob{{Token: "\xff"}}}}})
	_ = emit(sdk.Event{Text: "fine", FinishReason: sdk.FinishStop})
	if got[0].Text != "a\ufffdb" || got[0].Logprobs[0].Token != "\ufffd" || got[0].Logprobs[0].Top[0].Token != "\ufffd" || got[1].Text != "fine" {
		t.Errorf("events %+v", got)
	}
}

// A backend's tool-call deltas are cleaned like its text, and a call index that is
// neither an open call's nor the next one's (negative, skipping ahead, past
// sdk.MaxToolCalls) fails the generation instead of reaching a client or the store.
func TestCleanEmitToolCalls(t *testing.T) {
	var got []sdk.ToolCallDelta
	emit := CleanEmit(func(e sdk.Event) error { got = append(got, e.ToolCalls...); return nil })
	if err := emit(sdk.Event{ToolCalls: []sdk.ToolCallDelta{{Index: 0, ID: "c\x00", Name: "f\xff", Arguments: "{"}, {Index: 1, ID: "d", Name: "g"}}}); err != nil {
		t.Fatal(err)
	}
	if err := emit(sdk.Event{ToolCalls: []sdk.ToolCallDelta{{Index: 0, Arguments: "}"}, {Index: 2, ID: "e", Name: "h"}}}); err != nil {
		t.Fatal(err)
	}
	if got[0].ID != "c\ufffd" || got[0].Name != "f\ufffd" || len(got) != 4 {
		t.Errorf("deltas %+v", got)
	}
	for _, bad := range []int{-1, 4, sdk.MaxToolCalls} {
		err := emit(sdk.Event{ToolCalls: []sdk.ToolCallDelta{{Index: bad, ID: "x", Name: "y"}}})
		if e, ok := err.(*Error); !ok || e.Status != 502 || strings.Contains(e.Message, "index") {
			t.Errorf("index %d: %v", bad, err)
		}
	}
	// Up to sdk.MaxToolCalls calls open, one at a time.
	emit = CleanEmit(func(sdk.Event) error { return nil })
	for i := range sdk.MaxToolCalls {
		if err := emit(sdk.Event{ToolCalls: []sdk.ToolCallDelta{{Index: i, ID: "x", Name: "y"}}}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if err := emit(sdk.Event{ToolCalls: []sdk.ToolCallDelta{{Index: sdk.MaxToolCalls, ID: "x", Name: "y"}}}); err == nil {
		t.Fatalf("call %d was taken", sdk.MaxToolCalls)
	}
}
