package sdk

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestStderrTail(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{
			name:   "nothing written",
			max:    3,
			writes: nil,
			want:   "",
		},
		{
			name:   "keeps the last N lines",
			max:    2,
			writes: []string{"one\ntwo\n", "three\nfour\n"},
			want:   "three | four",
		},
		{
			name:   "partial last line is shown after the kept lines",
			max:    2,
			writes: []string{"zero\none\ntwo\nthr", "ee"},
			want:   "one | two | three",
		},
		{
			name:   "line split across writes",
			max:    4,
			writes: []string{"hel", "lo wor", "ld\n"},
			want:   "hello world",
		},
		{
			name:   "blank lines and surrounding space are dropped",
			max:    4,
			writes: []string{"\n  \n  padded  \n\n"},
			want:   "padded",
		},
		{
			name:   "JSON record rendered as level: message",
			max:    4,
			writes: []string{`{"@level":"ERROR","@message":"fail_after reached, exiting","fail_after":3}` + "\n"},
			want:   "error: fail_after reached, exiting",
		},
		{
			name:   "JSON record with an error attribute",
			max:    4,
			writes: []string{`{"@level":"warn","@message":"retrying","error":"EOF"}` + "\n"},
			want:   "warn: retrying (error: EOF)",
		},
		{
			name:   "JSON without a message kept raw",
			max:    4,
			writes: []string{`{"level":"info","msg":"other logger"}` + "\n"},
			want:   `{"level":"info","msg":"other logger"}`,
		},
		{
			name:   "broken JSON kept raw",
			max:    4,
			writes: []string{"{not json\n"},
			want:   "{not json",
		},
		{
			name:   "panic output mixed with records",
			max:    3,
			writes: []string{`{"@level":"info","@message":"model loaded"}` + "\npanic: runtime error: index out of range\n\ngoroutine 1 [running]:\n"},
			want:   "info: model loaded | panic: runtime error: index out of range | goroutine 1 [running]:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tail := newStderrTail(tt.max)
			for _, w := range tt.writes {
				if n, err := tail.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got := tail.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStderrTailBoundsLongLines(t *testing.T) {
	tail := newStderrTail(2)
	fmt.Fprintf(tail, "%s\n", strings.Repeat("x", 100000))
	if got := len(tail.String()); got != 4096 {
		t.Errorf("kept %d bytes of a long line, want 4096", got)
	}
}

// What a plugin logs with Logger is what the host shows in errors.
func TestPluginLogRecordsReadOnTheHost(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(newHostLogHandler(&buf))
	l.Info("model loaded", "model", "m", "parallel", 4)
	l.Error("fail_after reached, exiting", "error", "boom")
	tail := newStderrTail(8)
	tail.Write(buf.Bytes())
	if got, want := tail.String(), "info: model loaded | error: fail_after reached, exiting (error: boom)"; got != want {
		t.Errorf("host reads %q, want %q (raw: %s)", got, want, buf.String())
	}
	if strings.Contains(buf.String(), `"time"`) {
		t.Errorf("plugin records carry a timestamp the host would duplicate: %s", buf.String())
	}
}

type recordHandler struct {
	slog.Handler
	records *[]slog.Record
}

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	*h.records = append(*h.records, r)
	return nil
}

func TestHCLogToSlog(t *testing.T) {
	var got []slog.Record
	l := hclogToSlog(slog.New(recordHandler{records: &got})).Named("ragway-echo")
	l.Trace("t")
	l.Debug("d")
	l.Info("i", "k", "v", "timestamp", "2024-01-01")
	l.Warn("w")
	l.Error("e")
	want := []slog.Level{slog.LevelDebug, slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if r.Level != want[i] {
			t.Errorf("record %q level %v, want %v", r.Message, r.Level, want[i])
		}
	}
	attrs := map[string]string{}
	got[2].Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
	if attrs["k"] != "v" || attrs["logger"] != "ragway-echo" {
		t.Errorf("attrs %v lost k=v or the logger name", attrs)
	}
	if _, ok := attrs["timestamp"]; ok {
		t.Errorf("attrs %v keep go-plugin's timestamp", attrs)
	}
}
