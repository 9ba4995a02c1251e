package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ragway/ragway/gateway/config"
)

// announceKeyEnv names the file in which `task run` leaves the admin key it made on
// a first start. `ragway serve` prints that key once the gateway is up, framed, after
// the start-up log, where it is not missed; then it removes the file. A gateway that
// stops before that leaves the file, and the next start prints it.
const announceKeyEnv = "RAGWAY_ANNOUNCE_KEY_FILE"

// announceWait bounds the wait for the models before the key is printed anyway (a
// model that fails to load must not hold it back).
const announceWait = 30 * time.Second

// readyWaiter waits until a model's replicas serve (workers.Manager).
type readyWaiter interface {
	WaitReady(ctx context.Context, model string) error
}

// announceAfterStart runs announceKey for a gateway serving cfg's models, with the
// file $RAGWAY_ANNOUNCE_KEY_FILE names.
func announceAfterStart(ctx context.Context, mgr readyWaiter, cfg *config.Config, w io.Writer, log *slog.Logger) {
	names := make([]string, 0, len(cfg.Models))
	for _, m := range cfg.Models {
		names = append(names, m.Name)
	}
	announceKey(ctx, mgr, names, os.Getenv(announceKeyEnv), announceWait, w, log)
}

// announceKey prints the API key in the file path (nothing when path is "") on w,
// framed, once every one of models is ready or wait has passed, removing the file
// just before. When ctx ends first it prints nothing and keeps the file.
func announceKey(ctx context.Context, mgr readyWaiter, models []string, path string, wait time.Duration, w io.Writer, log *slog.Logger) {
	if path == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Warn("cannot read the admin key to print", "file", path, "error", err)
		}
		return
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for _, m := range models {
		if mgr.WaitReady(wctx, m) != nil {
			break // not ready in time: print anyway, unless the gateway stops
		}
	}
	if ctx.Err() != nil {
		return
	}
	// Removed first: once printed, the key is nowhere on disk.
	if err := os.Remove(path); err != nil {
		log.Warn("cannot remove the admin key's file", "file", path, "error", err)
	}
	fmt.Fprint(w, frame(
		"The admin API key task run made (user admin), shown this once: keep it.",
		"(bin/ragway keys create makes more.)",
		"",
		"  export RAGWAY_API_KEY="+key,
	))
}

// frame draws a box around lines, with a blank line before and after it.
func frame(lines ...string) string {
	width := 0
	for _, l := range lines {
		width = max(width, len(l))
	}
	edge := "+" + strings.Repeat("-", width+2) + "+\n"
	var b strings.Builder
	b.WriteString("\n" + edge)
	for _, l := range lines {
		fmt.Fprintf(&b, "| %-*s |\n", width, l)
	}
	b.WriteString(edge + "\n")
	return b.String()
}
