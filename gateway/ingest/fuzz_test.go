package ingest

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ragway/ragway/gateway/ingest/ingesttest"
)

// TestMain serves the child side of Isolated when the test binary is run as one
// (FuzzExtract extracts PDFs as the gateway does, in a child process under a deadline).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "ingest-extract" {
		if err := ServeCommand(os.Args[2:], os.Stdin, os.Stdout, os.Stderr); err != nil {
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// FuzzExtract checks that no input panics or escapes the sentinel errors. PDFs are
// extracted as the gateway extracts them, in a child process under a deadline: the
// PDF library can loop on hostile structures, and a fuzzed input that did would stall
// the fuzzer. Under plain `go test` it runs the seeds only.
func FuzzExtract(f *testing.F) {
	f.Add("pdf", ingesttest.PDF("T", []string{"Hello ragway PDF"}, ""))
	f.Add("pdf", ingesttest.PDF("", []string{"a", "b"}, ""))
	f.Add("html", []byte(htmlFixture))
	f.Add("markdown", []byte("# T\n\n```\ncode\n```\n"))
	f.Add("text", []byte("检索\xff"))
	f.Fuzz(func(t *testing.T, format string, data []byte) {
		o := Options{MaxBytes: 1 << 20, MaxTextBytes: 1 << 20, IsolatedTimeout: 2 * time.Second}
		x, err := o.Isolated(context.Background(), os.Args[0], "f", Format(format), data)
		if err != nil {
			if !errors.Is(err, ErrUnsupportedFormat) && !errors.Is(err, ErrInvalidText) && !errors.Is(err, ErrInvalidPDF) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		if !utf8.ValidString(x.Text) || !utf8.ValidString(x.Title) {
			t.Fatalf("invalid UTF-8 in %+v", x)
		}
	})
}
