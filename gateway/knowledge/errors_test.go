package knowledge

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ragway/ragway/gateway/ingest"
	"github.com/ragway/ragway/gateway/store"
)

// TestUploadErrors: the upload's own faults keep ingest's message (it names the file,
// for the uploader); anything else is ErrExtract, a cancellation still recognisable.
func TestUploadErrors(t *testing.T) {
	for _, c := range []struct {
		name    string
		err     error
		upload  bool
		reason  error
		extract bool
	}{
		{"format", fmt.Errorf("%w: %q", ingest.ErrUnsupportedFormat, "a.bin"), true, ErrUnsupportedFormat, false},
		{"size", fmt.Errorf("%w: %q is 9 bytes", ingest.ErrTooLarge, "a.txt"), true, ErrTooLarge, false},
		{"text", fmt.Errorf("%w: %q", ingest.ErrInvalidText, "a.txt"), true, ErrInvalidText, false},
		{"pdf", fmt.Errorf("%w: %q", ingest.ErrInvalidPDF, "a.pdf"), true, ErrInvalidPDF, false},
		{"child process", errors.New("fork/exec: no such file"), false, nil, true},
		{"cancelled", context.Canceled, false, context.Canceled, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := uploadError("a", c.err)
			var ue *UploadError
			if errors.As(err, &ue) != c.upload {
				t.Fatalf("%v: UploadError %v, want %v", err, !c.upload, c.upload)
			}
			if c.upload && ue.Error() != c.err.Error() {
				t.Errorf("message %q, want ingest's %q", ue.Error(), c.err.Error())
			}
			if c.reason != nil && !errors.Is(err, c.reason) {
				t.Errorf("%v is not %v", err, c.reason)
			}
			if errors.Is(err, ErrExtract) != c.extract {
				t.Errorf("%v: ErrExtract %v, want %v", err, !c.extract, c.extract)
			}
		})
	}
}

func TestDuplicateIsAConflict(t *testing.T) {
	var err error = &DuplicateError{Existing: Document{ID: "d", Title: "t"}}
	if !errors.Is(err, ErrConflict) || !errors.Is(err, store.ErrConflict) {
		t.Fatalf("%v is not a conflict", err)
	}
}
