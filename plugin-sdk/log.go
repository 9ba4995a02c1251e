package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// hclogToSlog returns an hclog.Logger (what go-plugin logs through) whose
// records, including the plugin's own parsed log lines, go to l.
func hclogToSlog(l *slog.Logger) hclog.Logger {
	il := hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Debug})
	il.RegisterSink(&slogSink{l: l})
	return il
}

type slogSink struct{ l *slog.Logger }

func (s *slogSink) Accept(name string, level hclog.Level, msg string, args ...any) {
	lvl := slog.LevelInfo
	switch level {
	case hclog.Trace, hclog.Debug:
		lvl = slog.LevelDebug
	case hclog.Warn:
		lvl = slog.LevelWarn
	case hclog.Error:
		lvl = slog.LevelError
	}
	if !s.l.Enabled(context.Background(), lvl) {
		return
	}
	var attrs []any
	if name != "" {
		attrs = append(attrs, "logger", name)
	}
	for i := 0; i+1 < len(args); i += 2 {
		if k, _ := args[i].(string); k == "timestamp" {
			continue // go-plugin's parse of the plugin's line; slog stamps its own
		}
		attrs = append(attrs, args[i], args[i+1])
	}
	s.l.Log(context.Background(), lvl, msg, attrs...)
}

// stderrTail keeps the last lines a plugin wrote to stderr so errors can say
// what the plugin said before it failed. It is safe for concurrent use.
type stderrTail struct {
	mu    sync.Mutex
	lines []string
	cur   strings.Builder
	max   int
}

func newStderrTail(max int) *stderrTail { return &stderrTail{max: max} }

func (t *stderrTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range p {
		if b != '\n' {
			if t.cur.Len() < 4096 {
				t.cur.WriteByte(b)
			}
			continue
		}
		if line := readableLine(t.cur.String()); line != "" {
			t.lines = append(t.lines, line)
			if len(t.lines) > t.max {
				t.lines = t.lines[len(t.lines)-t.max:]
			}
		}
		t.cur.Reset()
	}
	return len(p), nil
}

// readableLine trims a stderr line and turns a structured log record into
// "level: message".
func readableLine(line string) string {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "{") {
		return line
	}
	var rec struct {
		Level   string `json:"@level"`
		Message string `json:"@message"`
		Error   any    `json:"error"`
	}
	if json.Unmarshal([]byte(line), &rec) != nil || rec.Message == "" {
		return line
	}
	out := strings.ToLower(rec.Level) + ": " + rec.Message
	if rec.Error != nil {
		out += fmt.Sprintf(" (error: %v)", rec.Error)
	}
	return out
}

// String returns the kept lines, oldest first, joined by " | ".
func (t *stderrTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if c := strings.TrimSpace(t.cur.String()); c != "" {
		lines = append(lines[:len(lines):len(lines)], c)
	}
	return strings.Join(lines, " | ")
}
