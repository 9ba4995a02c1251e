// Package ingesttest makes test documents for the ingest package's tests and the
// end-to-end tests: valid PDFs written byte by byte, nothing downloaded.
package ingesttest

import (
	"bytes"
	"fmt"
	"strings"
)

// PDF writes a minimal PDF: one page per entry of pages, each showing its text in
// Helvetica, with an Info Title when title is not empty, trailer entries extra, and
// objects after the page objects (numbered from 3+2*len(pages)+1, after the Info
// dictionary's slot). The xref table is computed from the real offsets.
func PDF(title string, pages []string, extraTrailer string, extraObjects ...string) []byte {
	var objs []string
	kids := make([]string, len(pages))
	for i := range pages {
		kids[i] = fmt.Sprintf("%d 0 R", 4+2*i)
	}
	objs = append(objs,
		"<< /Type /Catalog /Pages 2 0 R >>",
		fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", strings.Join(kids, " "), len(pages)),
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
	)
	for i, text := range pages {
		content := fmt.Sprintf("BT /F1 24 Tf 72 720 Td (%s) Tj ET", text)
		objs = append(objs,
			fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>", 5+2*i),
			fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(content), content),
		)
	}
	infoRef := ""
	if title != "" {
		objs = append(objs, fmt.Sprintf("<< /Title (%s) /Producer (ragway test) >>", title))
		infoRef = fmt.Sprintf(" /Info %d 0 R", len(objs))
	}
	objs = append(objs, extraObjects...)

	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
	offsets := make([]int, len(objs))
	for i, o := range objs {
		offsets[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, off := range offsets {
		fmt.Fprintf(&b, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R%s%s >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, infoRef, extraTrailer, xref)
	return b.Bytes()
}
