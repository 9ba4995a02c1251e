package ingest

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
)

// Extracted is a document's text, ready for rag.Normalize and rag.Split
// (rag.Document{Title, Text, Markdown}).
type Extracted struct {
	// Title is the document's own title (Markdown's first "# " heading, HTML's <title>
	// or first <h1>, the PDF's Info Title), else the file name without its extension.
	Title string
	// Text is valid UTF-8 without a byte-order mark, not yet normalised.
	Text string
	// Markdown is true when Text is Markdown (Markdown files and HTML, which is
	// rendered as Markdown), so that rag.Split honours its headings and code fences.
	Markdown bool
}

// Extract extracts the text of data, a document in format f named name, with the
// default Options.
func Extract(ctx context.Context, name string, f Format, data []byte) (Extracted, error) {
	return Options{}.Extract(ctx, name, f, data)
}

// Extract extracts the text of data, a document in format f (see Detect) named name
// (a file name, for the fallback title and error messages). Errors wrap the package's
// sentinels; ctx cancels a long extraction (HTML and PDF check it as they go).
func (o Options) Extract(ctx context.Context, name string, f Format, data []byte) (Extracted, error) {
	o = o.withDefaults()
	if int64(len(data)) > o.MaxBytes {
		return Extracted{}, fmt.Errorf("%w: %q is %d bytes, the limit is %d", ErrTooLarge, name, len(data), o.MaxBytes)
	}
	if err := ctx.Err(); err != nil {
		return Extracted{}, err
	}
	var (
		x   Extracted
		err error
	)
	switch f {
	case Text, Markdown:
		x, err = extractText(name, f, data)
	case HTML:
		x, err = extractHTML(ctx, name, data, o.MaxTextBytes)
	case PDF:
		x, err = extractPDF(ctx, name, data, o.MaxTextBytes)
	default:
		return Extracted{}, fmt.Errorf("%w: %q: format %q", ErrUnsupportedFormat, name, f)
	}
	if err != nil {
		return Extracted{}, err
	}
	if int64(len(x.Text)) > o.MaxTextBytes {
		return Extracted{}, fmt.Errorf("%w: %q: extracted text is over %d bytes", ErrTooLarge, name, o.MaxTextBytes)
	}
	if x.Title == "" {
		x.Title = baseTitle(name)
	}
	return x, nil
}

// baseTitle is the fallback title: the file name without directories and extension.
func baseTitle(name string) string {
	base := filepath.Base(strings.ReplaceAll(name, `\`, "/"))
	if base == "." || base == "/" {
		return ""
	}
	if t := strings.TrimSuffix(base, filepath.Ext(base)); t != "" {
		return t
	}
	return base
}
