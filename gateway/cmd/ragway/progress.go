package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// reporter shows an ingest's progress: on a terminal a progress bar redrawn in place
// (files done/total, bytes, chunks, the file being uploaded) with the duplicates and
// failures printed above it; otherwise one plain line per file.
type reporter interface {
	started(f ingestFile)
	done(r ingestResult)
	finish()
}

// newReporter returns the reporter for w: a progress bar if w is a terminal.
func newReporter(w io.Writer, files int, bytes int64) reporter {
	if isTerminal(w) {
		return newBar(w, files, bytes, terminalWidth())
	}
	return &lines{w: w}
}

// isTerminal reports whether w is a terminal (a character device; TERM is not "dumb").
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// terminalWidth is $COLUMNS, else 80.
func terminalWidth() int {
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n >= 40 {
		return n
	}
	return 80
}

// lines reports one line per file.
type lines struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lines) started(ingestFile) {}

func (l *lines) done(r ingestResult) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintln(l.w, resultLine(r))
}

func (l *lines) finish() {}

// barInterval is the least time between two redraws of the bar.
const barInterval = 100 * time.Millisecond

// bar is a progress bar redrawn with \r at most every barInterval.
type bar struct {
	mu         sync.Mutex
	w          io.Writer
	width      int
	files      int
	bytes      int64
	doneFiles  int
	doneBytes  int64
	chunks     int
	current    []string // the files being uploaded, oldest first
	dirty      bool
	stop, quit chan struct{}
}

func newBar(w io.Writer, files int, bytes int64, width int) *bar {
	b := &bar{w: w, width: width, files: files, bytes: bytes, dirty: true, stop: make(chan struct{}), quit: make(chan struct{})}
	go b.loop()
	return b
}

func (b *bar) loop() {
	defer close(b.quit)
	t := time.NewTicker(barInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.mu.Lock()
			if b.dirty {
				b.draw()
			}
			b.mu.Unlock()
		}
	}
}

func (b *bar) started(f ingestFile) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.current = append(b.current, f.path)
	b.dirty = true
}

func (b *bar) done(r ingestResult) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, p := range b.current {
		if p == r.file.path {
			b.current = append(b.current[:i], b.current[i+1:]...)
			break
		}
	}
	b.doneFiles++
	b.doneBytes += r.file.size
	b.chunks += r.chunks
	b.dirty = true
	if r.outcome != outIndexed {
		// Above the bar, which the next tick redraws.
		fmt.Fprintf(b.w, "\r\033[K%s\n", resultLine(r))
	}
}

// finish draws the bar a last time and ends its line.
func (b *bar) finish() {
	close(b.stop)
	<-b.quit
	b.mu.Lock()
	defer b.mu.Unlock()
	b.current = nil
	b.draw()
	fmt.Fprintln(b.w)
}

// draw writes the bar over the current line; b.mu is held.
func (b *bar) draw() {
	fmt.Fprintf(b.w, "\r\033[K%s", b.line())
	b.dirty = false
}

// line is the bar's text: "[=====>      ] 3/10 files  1.2 MB/4.0 MB  56 chunks  docs/a.md",
// at most b.width-1 columns.
func (b *bar) line() string {
	const cells = 20
	frac := 1.0
	if b.bytes > 0 {
		frac = float64(b.doneBytes) / float64(b.bytes)
	} else if b.files > 0 {
		frac = float64(b.doneFiles) / float64(b.files)
	}
	full := int(frac * cells)
	gauge := strings.Repeat("=", full)
	if full < cells {
		gauge += ">" + strings.Repeat(" ", cells-full-1)
	}
	s := fmt.Sprintf("[%s] %d/%d files  %s/%s  %d chunks", gauge, b.doneFiles, b.files,
		formatBytes(b.doneBytes), formatBytes(b.bytes), b.chunks)
	s = truncateColumns(s, b.width-1)
	// The file, cut from the left if need be: its name says more than its directory.
	if room := b.width - 1 - columns(s) - 2; len(b.current) > 0 && room >= 8 {
		s += "  " + truncateLeft(b.current[0], room)
	}
	return s
}

// columns is the terminal columns s takes.
func columns(s string) int {
	n := 0
	for _, r := range s {
		n += runeWidth(r)
	}
	return n
}

// truncateLeft cuts s to n columns from the left, starting it with "…" if cut.
func truncateLeft(s string, n int) string {
	if columns(s) <= n {
		return s
	}
	r := []rune(s)
	cols, i := 1, len(r) // the "…"
	for i > 0 && cols+runeWidth(r[i-1]) <= n {
		i--
		cols += runeWidth(r[i])
	}
	return "…" + string(r[i:])
}

// truncateColumns cuts s to n terminal columns (East Asian wide runes take two),
// ending it with "…" if cut.
func truncateColumns(s string, n int) string {
	if columns(s) <= n {
		return s
	}
	var out strings.Builder
	cols := 0
	for _, r := range s {
		if cols+runeWidth(r) > n-1 {
			break
		}
		cols += runeWidth(r)
		out.WriteRune(r)
	}
	return out.String() + "…"
}

// runeWidth is the columns r takes: 2 for the common wide (CJK, Hangul, full-width)
// ranges, else 1.
func runeWidth(r rune) int {
	switch {
	case r >= 0x1100 && r <= 0x115F, r >= 0x2E80 && r <= 0xA4CF, r >= 0xAC00 && r <= 0xD7A3,
		r >= 0xF900 && r <= 0xFAFF, r >= 0xFE30 && r <= 0xFE4F, r >= 0xFF00 && r <= 0xFF60,
		r >= 0xFFE0 && r <= 0xFFE6, r >= 0x20000 && r <= 0x3FFFD:
		return 2
	}
	return 1
}
