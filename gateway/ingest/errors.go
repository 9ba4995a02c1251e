package ingest

import "errors"

// Sentinel errors; Detect and Extract wrap them with the reason. The comments give the
// HTTP status the API answers with.
var (
	// ErrUnsupportedFormat: the format is not one this package extracts, or the text is
	// declared in a charset other than UTF-8 / US-ASCII. HTTP 415.
	ErrUnsupportedFormat = errors.New("unsupported document format")
	// ErrInvalidText: the bytes are not valid UTF-8 text (the message gives the byte
	// offset of the first invalid sequence), or contain NUL bytes (binary). HTTP 400.
	ErrInvalidText = errors.New("invalid text")
	// ErrInvalidPDF: the PDF is malformed, encrypted with a password, or has no
	// extractable text. HTTP 400.
	ErrInvalidPDF = errors.New("invalid PDF")
	// ErrTooLarge: the document, or the text extracted from it, is over the limit
	// (Options). HTTP 413.
	ErrTooLarge = errors.New("document too large")
)
