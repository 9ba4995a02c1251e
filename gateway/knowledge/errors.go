package knowledge

import (
	"errors"
	"fmt"

	"github.com/ragway/ragway/gateway/ingest"
	"github.com/ragway/ragway/gateway/store"
)

var (
	// ErrNotFound: no such knowledge base or document for this user (another user's is
	// reported the same way). It is the store's class: chat.APIError maps it.
	ErrNotFound = store.ErrNotFound
	// ErrConflict: CreateBase's name is taken by one of the user's knowledge bases. It
	// is the store's class: chat.APIError maps it.
	ErrConflict = store.ErrConflict
	// ErrExtract: the server could not extract an upload's text (a child process that
	// could not start, a cancelled request): not the upload's fault, unlike an
	// [UploadError].
	ErrExtract = errors.New("knowledge: the document's text could not be extracted")
	// ErrInvalidFilter: a search's document filter is malformed.
	ErrInvalidFilter = errors.New("knowledge: invalid document filter")
)

// The reasons an upload is refused for what it is (an [UploadError] wraps one).
var (
	ErrUnsupportedFormat = ingest.ErrUnsupportedFormat
	ErrTooLarge          = ingest.ErrTooLarge
	ErrInvalidText       = ingest.ErrInvalidText
	ErrInvalidPDF        = ingest.ErrInvalidPDF
)

// UploadError is an upload refused for its format, its size or its text. Its message
// names the file and says what is wrong with it, in words for the uploader; Err is one
// of ErrUnsupportedFormat, ErrTooLarge, ErrInvalidText and ErrInvalidPDF (wrapped).
type UploadError struct {
	Err error
}

func (e *UploadError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *UploadError) Unwrap() error { return e.Err }

// DuplicateError is AddDocument's error for content its knowledge base already holds
// (the same SHA-256): Existing is the stored document, and errors.Is(err, ErrConflict)
// holds.
type DuplicateError struct {
	Existing Document
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("knowledge: document %s (%q) has the same content", e.Existing.ID, e.Existing.Title)
}

// Unwrap returns ErrConflict.
func (e *DuplicateError) Unwrap() error { return ErrConflict }

// uploadError classifies an error of detecting or extracting upload name: the
// upload's own faults are an [UploadError], anything else is [ErrExtract].
func uploadError(name string, err error) error {
	for _, reason := range []error{ErrUnsupportedFormat, ErrTooLarge, ErrInvalidText, ErrInvalidPDF} {
		if errors.Is(err, reason) {
			return &UploadError{Err: err}
		}
	}
	return fmt.Errorf("%w: %q: %w", ErrExtract, name, err)
}
