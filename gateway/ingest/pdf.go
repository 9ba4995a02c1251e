package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/ledongthuc/pdf"
)

// extractPDF extracts the text of a PDF page by page with github.com/ledongthuc/pdf,
// pages separated by paragraph breaks; the title is the Info dictionary's Title. The
// library reports some malformations by panicking: a panic is ErrInvalidPDF. A PDF
// that needs a password, or has no text (scanned images), is ErrInvalidPDF too.
//
// The page tree is walked here, not by the library, whose Reader.Page and inherited
// attribute lookups loop forever on a tree with a cycle (see pdfPages).
//
// Limits of the library: text comes out in content-stream order, one line per text
// object, without the spaces a layout engine would infer from glyph positions; text
// is decoded through a font's ToUnicode map, else its encoding (CID fonts without a
// ToUnicode map, common in older CJK PDFs, come out wrong; untested here).
// Other hostile structures (a cycle of object streams, deep recursion) can still make
// the library loop or exhaust its stack: run extraction of untrusted PDFs under a
// deadline in a process that may be restarted.
func extractPDF(ctx context.Context, name string, data []byte, maxText int64) (x Extracted, err error) {
	defer func() {
		if r := recover(); r != nil {
			// What the parser tripped on (a runtime error's text) is not the
			// client's business: that the file is malformed is.
			x, err = Extracted{}, fmt.Errorf("%w: %q: malformed PDF (the parser could not read its structure)", ErrInvalidPDF, name)
		}
	}()
	r, err := pdf.NewReader(pdfHeaderFix(data), int64(len(data)))
	if err != nil {
		switch {
		case errors.Is(err, pdf.ErrInvalidPassword):
			return Extracted{}, fmt.Errorf("%w: %q is encrypted and needs a password", ErrInvalidPDF, name)
		case strings.Contains(err.Error(), "encryption"):
			return Extracted{}, fmt.Errorf("%w: %q is encrypted in a way that is not supported: %v", ErrInvalidPDF, name, err)
		}
		return Extracted{}, fmt.Errorf("%w: %q: %v", ErrInvalidPDF, name, err)
	}

	pages, err := pdfPages(r.Trailer().Key("Root").Key("Pages"), len(data)/16)
	if err != nil {
		return Extracted{}, fmt.Errorf("%w: %q: %v", ErrInvalidPDF, name, err)
	}
	var b strings.Builder
	for i, p := range pages {
		if err := ctx.Err(); err != nil {
			return Extracted{}, err
		}
		// nil fonts: font names are per-page resources, so they are not cached across
		// pages (the library's Reader.GetPlainText does, wrongly).
		text, err := p.GetPlainText(nil)
		if err != nil {
			return Extracted{}, fmt.Errorf("%w: %q: page %d: %v", ErrInvalidPDF, name, i+1, err)
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\n\n")
		}
		b.WriteString(text)
		if int64(b.Len()) > maxText {
			return Extracted{}, fmt.Errorf("%w: %q: extracted text is over %d bytes", ErrTooLarge, name, maxText)
		}
	}
	if b.Len() == 0 {
		return Extracted{}, fmt.Errorf("%w: %q has no extractable text (scanned pages need OCR, which is not done)", ErrInvalidPDF, name)
	}
	title := strings.TrimSpace(r.Trailer().Key("Info").Key("Title").Text())
	return Extracted{Title: validUTF8(title), Text: validUTF8(b.String())}, nil
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// pdfHeaderFix serves data to the library, which accepts only a "%PDF-1.0" … "%PDF-1.7"
// header followed by an end of line: a PDF 2.0 header, or one followed by a space, is
// presented as "%PDF-1.7\n" (the syntax the library reads is the same).
func pdfHeaderFix(data []byte) *bytes.Reader {
	const fixed = "%PDF-1.7\n"
	if len(data) < len(fixed) || !bytes.HasPrefix(data, []byte("%PDF-")) {
		return bytes.NewReader(data)
	}
	if data[5] == '1' && data[6] == '.' && data[7] >= '0' && data[7] <= '7' && (data[8] == '\r' || data[8] == '\n') {
		return bytes.NewReader(data)
	}
	patched := make([]byte, len(data))
	copy(patched, data)
	copy(patched, fixed)
	return bytes.NewReader(patched)
}

// Bounds of a sane page tree.
const (
	maxPageTreeDepth = 64 // nesting of Pages nodes, and length of a Parent chain
)

// pdfPages returns the page dictionaries of the page tree under root in document order,
// visiting at most maxNodes nodes (a PDF of n bytes cannot hold more than n/16 page
// objects) and refusing a tree deeper than maxPageTreeDepth: bounds that a tree with a
// cycle (Kids naming an ancestor) runs into instead of looping. A page whose Parent
// chain does not end within maxPageTreeDepth steps is refused too, since the library
// follows it to look up inherited resources.
func pdfPages(root pdf.Value, maxNodes int) ([]pdf.Page, error) {
	type item struct {
		v     pdf.Value
		depth int
	}
	var pages []pdf.Page
	stack := []item{{root, 0}}
	for visited := 0; len(stack) > 0; visited++ {
		if visited >= maxNodes {
			return nil, fmt.Errorf("page tree has more nodes than the file can hold (a cycle?)")
		}
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if it.v.Kind() != pdf.Dict {
			continue
		}
		kids := it.v.Key("Kids")
		if it.v.Key("Type").Name() == "Pages" || kids.Kind() == pdf.Array {
			if it.depth >= maxPageTreeDepth {
				return nil, fmt.Errorf("page tree deeper than %d levels (a cycle?)", maxPageTreeDepth)
			}
			for i := kids.Len() - 1; i >= 0; i-- {
				stack = append(stack, item{kids.Index(i), it.depth + 1})
			}
			continue
		}
		parent := it.v
		for n := 0; !parent.IsNull(); n++ {
			if n > maxPageTreeDepth {
				return nil, fmt.Errorf("page %d: Parent chain longer than %d (a cycle?)", len(pages)+1, maxPageTreeDepth)
			}
			parent = parent.Key("Parent")
		}
		pages = append(pages, pdf.Page{V: it.v})
	}
	if len(pages) == 0 {
		return nil, fmt.Errorf("no pages")
	}
	return pages, nil
}
