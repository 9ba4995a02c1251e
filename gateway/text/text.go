// Package text holds the gateway's two rules for text that crosses its boundaries:
// what may be stored (Check: valid UTF-8 without NUL, which Postgres text refuses) and
// how generated text is made storable (Clean: NUL and invalid UTF-8 become U+FFFD). It
// is a leaf: it imports nothing of the gateway, so the wire package and the store
// share one rule without depending on each other.
package text

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Check returns why s cannot be stored as text ("" when it can): a NUL character
// (U+0000) or bytes that are not UTF-8, with the byte offset of the first.
func Check(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return fmt.Sprintf("it contains a NUL character (U+0000) at byte %d, which cannot be stored", i)
	}
	if !utf8.ValidString(s) {
		return fmt.Sprintf("it is not valid UTF-8 (at byte %d)", invalidAt(s))
	}
	return ""
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

// Clean is the one rule for generated text: every NUL character (U+0000) and every
// byte that does not start valid UTF-8 becomes U+FFFD. Clean text is returned as is,
// without allocating.
func Clean(s string) string {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == 0, r == utf8.RuneError && size == 1:
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}
