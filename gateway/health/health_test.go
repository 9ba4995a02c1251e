package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/ragway/ragway/gateway/store"
)

type pinger struct{ err error }

func (p pinger) Ready(context.Context) error { return p.err }

// TestDatabaseStates: each class of the store's errors has its own words, none of
// which carry the cause; the cause goes to the log.
func TestDatabaseStates(t *testing.T) {
	cause := "dial tcp 10.0.0.7:5432: secret-host"
	for _, c := range []struct {
		name  string
		err   error
		state State
		level string
	}{
		{"ready", nil, State{Ready: true}, ""},
		{"unavailable", fmt.Errorf("%w: %s", store.ErrUnavailable, cause), State{Error: "the database does not answer"}, "DEBUG"},
		{"schema", fmt.Errorf("%w: %s", store.ErrSchema, cause), State{Error: "the database's schema is not this ragway's (see the gateway's log)"}, "ERROR"},
		{"other", errors.New(cause), State{Error: "database error"}, "WARN"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs bytes.Buffer
			d := &Database{Store: pinger{c.err}, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			if got := d.Check(context.Background()); got != c.state {
				t.Fatalf("Check = %+v, want %+v", got, c.state)
			}
			if c.level == "" {
				if logs.Len() != 0 {
					t.Errorf("logged %q", logs.String())
				}
				return
			}
			if !strings.Contains(logs.String(), "level="+c.level) || !strings.Contains(logs.String(), "secret-host") {
				t.Errorf("log %q: want level %s with the cause", logs.String(), c.level)
			}
		})
	}
}
