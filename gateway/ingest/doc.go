// Package ingest turns an uploaded file into the text that package rag chunks: it
// recognises the format (Detect), checks the bytes and extracts the text (Extract),
// and hashes the raw bytes for duplicate detection (SHA256).
//
// The path for one upload is
//
//	data, err := ingest.ReadAll(body, opts.MaxBytes)          // ErrTooLarge past the limit
//	f, err := ingest.Detect(filename, contentType, data)      // Text, Markdown, HTML or PDF
//	x, err := opts.Extract(ctx, filename, f, data)            // title and text
//	sum := ingest.SHA256(data)                                // the store rejects duplicates per KB
//	doc := rag.Document{Title: x.Title, Text: rag.Normalize(x.Text), Markdown: x.Markdown}
//
// Formats: plain text and Markdown must be UTF-8 (a byte-order mark is allowed) without
// NUL bytes; HTML is tokenised by golang.org/x/net/html, its visible text kept and its
// structure rendered as Markdown (headings, paragraphs, list items, <pre> as fenced
// code); PDF text comes from github.com/ledongthuc/pdf, page by page. A declared
// charset other than UTF-8 or US-ASCII (Content-Type parameter or HTML <meta>) is
// refused rather than transcoded.
//
// Errors are the sentinels below, wrapped with the reason (errors.Is to branch); the
// HTTP status each maps to:
//
//	ErrUnsupportedFormat  415  unknown format, or a charset other than UTF-8
//	ErrInvalidText        400  invalid UTF-8 (with the byte offset), NUL bytes (binary)
//	ErrInvalidPDF         400  a PDF the library cannot read, or one that needs a password
//	ErrTooLarge           413  the upload or its extracted text is over the limit
//
// What the package is not: it does not normalise or chunk text (rag.Normalize and
// rag.Split do), it does not store documents or track their status (pending, indexed,
// failed with a reason: package store does), and it does no OCR — a PDF of scanned
// images extracts to no text, which Extract reports as ErrInvalidPDF.
//
// One responsibility per file: errors.go (sentinels), format.go (Detect), limits.go
// (Options, ReadAll), extract.go (Extract and the dispatch), text.go (UTF-8 text and
// Markdown), html.go (HTML to Markdown), pdf.go (PDF text), hash.go (SHA256).
package ingest
