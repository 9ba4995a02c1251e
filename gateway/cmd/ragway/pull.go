package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/ragway/ragway/gateway/config"
	"github.com/ragway/ragway/gateway/pull"
)

// modelsPull runs `ragway models pull SOURCE`: it downloads a GGUF file by URL or
// hf:ORG/REPO/FILE.gguf into the models directory, here (not through a gateway).
func modelsPull(args []string, stdout, stderr io.Writer) error {
	c := newCommand("models pull", "URL|hf:ORG/REPO/FILE.gguf[@REVISION] [--sha256 HEX|none] [--dir DIR] [--force] [-c FILE]")
	cfgPath := c.fs.String("c", "", "config file (YAML) naming models_dir")
	dir := c.fs.String("dir", "", "the models directory (default: models_dir of the config, .data/models)")
	sum := c.fs.String("sha256", "", "the file's SHA-256; default: the one the server publishes (Hugging Face does); none: unchecked")
	force := c.fs.Bool("force", false, "replace a file of the same name and another content")
	pos, err := c.parse(args, stdout, stderr)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos, 1, stderr); err != nil {
		return err
	}
	if *dir == "" {
		cfg, err := config.Load(*cfgPath, os.Environ())
		if err != nil {
			return err
		}
		*dir = cfg.ModelsDir
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	bar := newPullBar(stderr, pos[0])
	res, err := pull.Pull(ctx, pos[0], pull.Options{
		Dir:        *dir,
		HFEndpoint: os.Getenv("HF_ENDPOINT"),
		HFToken:    os.Getenv("HF_TOKEN"),
		SHA256:     *sum,
		Force:      *force,
		Progress:   bar.progress,
	})
	bar.finish()
	if err != nil {
		return fmt.Errorf("models pull: %s", printable(err.Error()))
	}
	how := "downloaded"
	if res.Resumed {
		how = "downloaded (resumed)"
	}
	fmt.Fprintf(stdout, "%s %s: %d bytes, sha256 %s, in %s\n(llamacpp finds it as model_path: %s)\n", how, res.Name, res.Bytes, res.SHA256, res.Path,
		strings.TrimSuffix(res.Name, ".gguf"))
	return nil
}

// pullBar shows a download's progress: on a terminal a bar redrawn in place (at most
// ten times a second), otherwise nothing until the end.
type pullBar struct {
	w     io.Writer
	name  string
	tty   bool
	mu    sync.Mutex
	last  time.Time
	start time.Time
	drawn bool
}

func newPullBar(w io.Writer, name string) *pullBar {
	return &pullBar{w: w, name: name, tty: isTerminal(w), start: time.Now()}
}

func (b *pullBar) progress(done, total int64) {
	if !b.tty {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Since(b.last) < 100*time.Millisecond && done != total {
		return
	}
	b.last = time.Now()
	rate := float64(done) / max(time.Since(b.start).Seconds(), 0.001)
	line := fmt.Sprintf("%s  %s  %s/s", truncateLeft(b.name, 40), human(done), human(int64(rate)))
	if total > 0 {
		tail := fmt.Sprintf("] %3d%% of %s", done*100/total, human(total))
		width := max(terminalWidth()-1-len(line)-2-len(tail), 10)
		fill := min(int(float64(width)*float64(done)/float64(total)), width)
		line = fmt.Sprintf("%s [%s%s%s", line, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), tail)
	}
	fmt.Fprintf(b.w, "\r%s", truncateColumns(line, terminalWidth()-1))
	b.drawn = true
}

func (b *pullBar) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}

// human writes a byte count for people.
func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, u := float64(n), 0
	for f >= unit && u < 4 {
		f /= unit
		u++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGT"[u-1])
}
