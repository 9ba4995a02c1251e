package sdk

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// The wire carries proto3 strings, which must be valid UTF-8: gRPC refuses
// to marshal anything else. The host checks every string of a request
// before sending it (checkText) so that such a request is ErrInvalidRequest
// naming the field, not an opaque marshalling failure; the plugin side
// replaces each invalid byte sequence of what it sends back with U+FFFD
// (validText), so that a model's stray byte cannot fail a generation. NUL
// is valid UTF-8 and crosses the wire unchanged: what it means is each
// plugin's business.

// checkText returns ErrInvalidRequest naming field when s is not valid
// UTF-8. The message gives the offset of the first invalid byte, never the
// text.
func checkText(field, s string) error {
	if utf8.ValidString(s) {
		return nil
	}
	off := 0
	for off < len(s) {
		r, n := utf8.DecodeRuneInString(s[off:])
		if r == utf8.RuneError && n <= 1 {
			break
		}
		off += n
	}
	return InvalidRequestf("%s is not valid UTF-8 (invalid byte 0x%02x at byte offset %d)", field, s[off], off)
}

// checkTexts checks each string of a list field, naming the element.
func checkTexts(field string, ss []string) error {
	for i, s := range ss {
		if err := checkText(fmt.Sprintf("%s[%d]", field, i), s); err != nil {
			return err
		}
	}
	return nil
}

// validText replaces each invalid UTF-8 sequence of s with U+FFFD.
func validText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
