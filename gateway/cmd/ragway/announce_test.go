package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/api/apitest"
)

// fakeModels is a model manager whose models become ready when release is closed.
type fakeModels struct {
	release chan struct{}
	asked   chan string // each model WaitReady is called for
}

func (f *fakeModels) WaitReady(ctx context.Context, model string) error {
	f.asked <- model
	select {
	case <-f.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

const testKey = "rgw_abcd1234_0123456789abcdefghijABCDEFGHIJ0123456789"

func writeKeyFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin-key")
	if err := os.WriteFile(path, []byte(testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAnnounceKey: the key task run leaves is printed once every model is ready,
// framed, and its file removed.
func TestAnnounceKey(t *testing.T) {
	path := writeKeyFile(t)
	models := &fakeModels{release: make(chan struct{}), asked: make(chan string, 2)}
	var out apitest.SyncBuffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		announceKey(context.Background(), models, []string{"chat", "embed"}, path, time.Hour, &out, slog.New(slog.DiscardHandler))
	}()
	if m := <-models.asked; m != "chat" {
		t.Fatalf("waited first for %q", m)
	}
	if s := out.String(); s != "" {
		t.Fatalf("printed before the models were ready: %q", s)
	}
	close(models.release)
	<-done
	if m := <-models.asked; m != "embed" {
		t.Fatalf("waited then for %q", m)
	}
	got := out.String()
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) < 4 || !strings.Contains(got, "export RAGWAY_API_KEY="+testKey) ||
		!strings.Contains(got, "admin API key") || !strings.Contains(got, "keep it") {
		t.Fatalf("announcement:\n%s", got)
	}
	// A frame: the first and last lines are its edges, every line is as wide.
	if strings.Trim(lines[0], "+-") != "" || lines[0] != lines[len(lines)-1] {
		t.Fatalf("not framed:\n%s", got)
	}
	for _, l := range lines[1 : len(lines)-1] {
		if len(l) != len(lines[0]) || !strings.HasPrefix(l, "| ") || !strings.HasSuffix(l, " |") {
			t.Fatalf("line %q of the frame:\n%s", l, got)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the key file is still there: %v", err)
	}
}

// TestAnnounceKeyNotReady: models not ready by the deadline do not hold the key back;
// a gateway that stops first prints nothing and leaves the file for its next start.
func TestAnnounceKeyNotReady(t *testing.T) {
	path := writeKeyFile(t)
	models := &fakeModels{release: make(chan struct{}), asked: make(chan string, 2)}
	var out apitest.SyncBuffer
	announceKey(context.Background(), models, []string{"chat"}, path, time.Millisecond, &out, slog.New(slog.DiscardHandler))
	if !strings.Contains(out.String(), testKey) {
		t.Fatalf("a model not ready in time held the key back: %q", out.String())
	}

	path = writeKeyFile(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var none apitest.SyncBuffer
	announceKey(ctx, models, []string{"chat"}, path, time.Hour, &none, slog.New(slog.DiscardHandler))
	if none.String() != "" {
		t.Fatalf("a stopping gateway printed %q", none.String())
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("a stopping gateway removed the key file: %v", err)
	}

	// No file named: nothing to do.
	announceKey(context.Background(), models, []string{"chat"}, "", time.Hour, &none, slog.New(slog.DiscardHandler))
	if none.String() != "" {
		t.Fatalf("printed %q with no key file", none.String())
	}
}
