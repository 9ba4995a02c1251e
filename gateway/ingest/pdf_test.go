package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/ragway/ragway/gateway/ingest/ingesttest"
	"strings"
	"testing"
)

func TestExtractPDF(t *testing.T) {
	ctx := context.Background()
	t.Run("one page with title", func(t *testing.T) {
		got, err := Extract(ctx, "hello.pdf", PDF, ingesttest.PDF("Ragway Manual", []string{"Hello ragway PDF"}, ""))
		if err != nil {
			t.Fatal(err)
		}
		if got.Title != "Ragway Manual" || got.Text != "Hello ragway PDF" || got.Markdown {
			t.Fatalf("Extract = %+v", got)
		}
	})
	t.Run("pages become paragraphs, title from file name", func(t *testing.T) {
		got, err := Extract(ctx, "docs/two.pdf", PDF, ingesttest.PDF("", []string{"Page one", "Page two"}, ""))
		if err != nil {
			t.Fatal(err)
		}
		if got.Title != "two" || got.Text != "Page one\n\nPage two" {
			t.Fatalf("Extract = %+v", got)
		}
	})
	t.Run("PDF 2.0 header", func(t *testing.T) {
		data := ingesttest.PDF("", []string{"Hello ragway PDF"}, "")
		copy(data, "%PDF-2.0\n")
		got, err := Extract(ctx, "v2.pdf", PDF, data)
		if err != nil || got.Text != "Hello ragway PDF" {
			t.Fatalf("Extract = %+v, %v", got, err)
		}
	})
	t.Run("page count is not trusted", func(t *testing.T) {
		data := bytes.Replace(ingesttest.PDF("", []string{"Hello ragway PDF"}, ""), []byte("/Count 1 >>"), []byte("/Count 99>>"), 1)
		got, err := Extract(ctx, "count.pdf", PDF, data)
		if err != nil || got.Text != "Hello ragway PDF" {
			t.Fatalf("Extract = %+v, %v", got, err)
		}
	})
	t.Run("no text", func(t *testing.T) {
		_, err := Extract(ctx, "scan.pdf", PDF, ingesttest.PDF("", []string{""}, ""))
		if !errors.Is(err, ErrInvalidPDF) || !strings.Contains(err.Error(), "no extractable text") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("text limit", func(t *testing.T) {
		_, err := Options{MaxTextBytes: 10}.Extract(ctx, "big.pdf", PDF, ingesttest.PDF("", []string{"Hello ragway PDF"}, ""))
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("encrypted", func(t *testing.T) {
		// Standard security handler, RC4 40-bit, with a user password: the empty
		// password does not match U.
		o := strings.Repeat("ab", 32)
		u := strings.Repeat("cd", 32)
		enc := fmt.Sprintf("<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P -4 >>", o, u)
		id := strings.Repeat("01", 16)
		data := ingesttest.PDF("", []string{"secret"}, fmt.Sprintf(" /Encrypt 7 0 R /ID [<%s> <%s>]", id, id), enc)
		_, err := Extract(ctx, "locked.pdf", PDF, data)
		if !errors.Is(err, ErrInvalidPDF) || !strings.Contains(err.Error(), "encrypted") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestExtractCorruptPDF(t *testing.T) {
	good := ingesttest.PDF("T", []string{"Hello ragway PDF"}, "")
	xref := bytes.Index(good, []byte("xref\n"))
	stream := bytes.Index(good, []byte("BT /F1"))
	// Replacements keep lengths, so that the xref offsets stay right.
	tests := map[string][]byte{
		"empty":           {},
		"header only":     []byte("%PDF-1.4\n"),
		"not a pdf":       []byte("hello, world, this is not a PDF at all, not even close\n%%EOF\n"),
		"truncated":       good[:len(good)/2],
		"no xref":         append(append([]byte{}, good[:xref]...), "startxref\n9\n%%EOF\n"...),
		"startxref wrong": bytes.Replace(good, fmt.Appendf(nil, "startxref\n%d", xref), []byte("startxref\n12"), 1),
		"offsets zeroed":  bytes.ReplaceAll(good, []byte(" 00000 n "), []byte(" 00000 n ")[:0:0]),
		"garbled stream":  append(append(append([]byte{}, good[:stream]...), bytes.Repeat([]byte{']'}, 40)...), good[stream+40:]...),
		"cyclic kids":     bytes.Replace(good, []byte("/Kids [4 0 R]"), []byte("/Kids [2 0 R]"), 1),
		"cyclic kids 2":   bytes.Replace(good, []byte("/Kids [4 0 R] /Count 1"), []byte("/Kids [4 0 R 2 0 R]   "), 1),
		"parent loop":     bytes.Replace(good, []byte("/Parent 2 0 R"), []byte("/Parent 4 0 R"), 1),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Extract(context.Background(), "bad.pdf", PDF, data)
			t.Log(err)
			if !errors.Is(err, ErrInvalidPDF) {
				t.Fatalf("Extract = %+v, %v; want ErrInvalidPDF", got, err)
			}
		})
	}
}
