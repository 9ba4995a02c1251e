package ingest

import (
	"fmt"
	"io"
	"time"
)

// Default limits.
const (
	DefaultMaxBytes     = 32 << 20 // an upload
	DefaultMaxTextBytes = 16 << 20 // the text extracted from it
)

// Options limit what Extract accepts. The zero value is the defaults.
type Options struct {
	// MaxBytes is the largest document accepted, in bytes; <= 0 means DefaultMaxBytes.
	MaxBytes int64
	// MaxTextBytes is the most text extracted from one document, in bytes of UTF-8;
	// <= 0 means DefaultMaxTextBytes. It bounds what a small compressed PDF can expand
	// to.
	MaxTextBytes int64
	// IsolatedTimeout bounds one extraction in a child process (Isolated); <= 0 means
	// two minutes.
	IsolatedTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxTextBytes <= 0 {
		o.MaxTextBytes = DefaultMaxTextBytes
	}
	return o
}

// ReadAll reads r to the end, but no more than maxBytes (<= 0: DefaultMaxBytes): a
// longer stream is ErrTooLarge, without reading more of it than maxBytes+1 bytes.
func ReadAll(r io.Reader, maxBytes int64) ([]byte, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	data, err := io.ReadAll(io.LimitReader(r, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading document: %w", err)
	}
	if int64(len(data)) > maxBytes {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, maxBytes)
	}
	return data, nil
}
