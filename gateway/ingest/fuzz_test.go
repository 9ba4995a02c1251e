package ingest

import (
	"context"
	"errors"
	"github.com/ragway/ragway/gateway/ingest/ingesttest"
	"testing"
	"unicode/utf8"
)

// FuzzExtract checks that no input panics or escapes the sentinel errors. Under plain
// `go test` it runs the seeds only.
func FuzzExtract(f *testing.F) {
	f.Add("pdf", ingesttest.PDF("T", []string{"Hello ragway PDF"}, ""))
	f.Add("pdf", ingesttest.PDF("", []string{"a", "b"}, ""))
	f.Add("html", []byte(htmlFixture))
	f.Add("markdown", []byte("# T\n\n```\ncode\n```\n"))
	f.Add("text", []byte("检索\xff"))
	f.Fuzz(func(t *testing.T, format string, data []byte) {
		x, err := Options{MaxBytes: 1 << 20, MaxTextBytes: 1 << 20}.Extract(context.Background(), "f", Format(format), data)
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
