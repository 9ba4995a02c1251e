package store

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// CheckText returns a *FieldError naming field when s cannot be stored in a Postgres
// text column: a NUL character (U+0000, which Postgres text refuses) or bytes that are
// not UTF-8. Every text a client gives that this package stores is checked before any
// write, so such input is the client's 400, never Postgres's error.
func CheckText(field, s string) error {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return &FieldError{Field: field, Reason: fmt.Sprintf("it contains a NUL character (U+0000) at byte %d, which cannot be stored", i)}
	}
	if !utf8.ValidString(s) {
		return &FieldError{Field: field, Reason: fmt.Sprintf("it is not valid UTF-8 (at byte %d)", invalidAt(s))}
	}
	return nil
}

// checkTexts checks fields and values pairwise ([CheckText]): the first error.
func checkTexts(fieldsAndValues ...string) error {
	for i := 0; i+1 < len(fieldsAndValues); i += 2 {
		if err := CheckText(fieldsAndValues[i], fieldsAndValues[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// invalidAt returns the offset of the first byte of s that does not start valid UTF-8.
func invalidAt(s string) int {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(s)
}
