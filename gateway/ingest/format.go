package ingest

import (
	"bytes"
	"fmt"
	"mime"
	"path/filepath"
	"strings"
)

// Format is a document format Extract handles.
type Format string

// Formats.
const (
	Text     Format = "text"
	Markdown Format = "markdown"
	HTML     Format = "html"
	PDF      Format = "pdf"
)

var byExtension = map[string]Format{
	".txt":      Text,
	".text":     Text,
	".md":       Markdown,
	".markdown": Markdown,
	".mdx":      Markdown, // Markdown with JSX: the JSX stays in as text
	".html":     HTML,
	".htm":      HTML,
	".xhtml":    HTML,
	".pdf":      PDF,
}

var byMediaType = map[string]Format{
	"text/plain":            Text,
	"text/markdown":         Markdown,
	"text/x-markdown":       Markdown,
	"text/html":             HTML,
	"application/xhtml+xml": HTML,
	"application/pdf":       PDF,
}

// Detect returns the format of a document from, in this order, the extension of
// filename, contentType (an HTTP Content-Type; "" and application/octet-stream say
// nothing) and the first bytes of the content, head: "%PDF-" is PDF, "<!doctype html"
// or "<html" (any case, after a BOM and white space) is HTML. Anything else is
// ErrUnsupportedFormat, naming the file and the content type.
//
// The extension decides over the content type when both are known. A charset
// parameter of contentType is honoured whatever decided the format: only UTF-8 and
// US-ASCII are accepted for text formats; another charset is ErrUnsupportedFormat
// naming it (this package does not transcode).
func Detect(filename, contentType string, head []byte) (Format, error) {
	var mediaType, charset string
	if contentType != "" {
		mt, params, err := mime.ParseMediaType(contentType)
		if err != nil {
			return "", fmt.Errorf("%w: %q: bad Content-Type %q: %v", ErrUnsupportedFormat, filename, contentType, err)
		}
		mediaType, charset = mt, params["charset"]
	}

	f, ok := byExtension[strings.ToLower(filepath.Ext(filename))]
	if !ok {
		f, ok = byMediaType[mediaType]
	}
	if !ok {
		f, ok = sniff(head)
	}
	if !ok {
		return "", fmt.Errorf("%w: %q (Content-Type %q): not text, Markdown, HTML or PDF", ErrUnsupportedFormat, filename, contentType)
	}
	if f != PDF && charset != "" && !isUTF8Charset(charset) {
		return "", fmt.Errorf("%w: %q is in charset %q; only UTF-8 is accepted", ErrUnsupportedFormat, filename, charset)
	}
	return f, nil
}

// sniff recognises PDF and HTML by their first bytes.
func sniff(head []byte) (Format, bool) {
	if bytes.HasPrefix(head, []byte("%PDF-")) {
		return PDF, true
	}
	head = bytes.TrimPrefix(head, utf8BOM)
	head = bytes.TrimLeft(head, " \t\r\n\f")
	for _, p := range []string{"<!doctype html", "<html"} {
		if len(head) >= len(p) && strings.EqualFold(string(head[:len(p)]), p) {
			return HTML, true
		}
	}
	return "", false
}

// isUTF8Charset reports whether a charset label means UTF-8 or its ASCII subset.
func isUTF8Charset(charset string) bool {
	switch strings.ToLower(strings.Trim(strings.TrimSpace(charset), `"'`)) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return true
	}
	return false
}
