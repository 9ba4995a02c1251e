package rag

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Normalize cleans text before chunking, so that equal content gives equal chunks
// and vectors:
//
//   - Unicode NFC (composed forms: "e\u0301" becomes "é"); full-width forms are kept
//     (Terms folds them);
//   - line endings become "\n" (CRLF and lone CR);
//   - control characters other than "\n" and "\t" are dropped, and so are U+FEFF (BOM)
//     and invalid UTF-8 bytes; U+0085, U+2028 and U+2029 become line ends;
//   - within a line, a run of horizontal white space (spaces, tabs, NBSP, U+3000
//     ideographic space, …) becomes one space; leading indentation is kept as
//     written (it carries Markdown and code structure), except that non-ASCII spaces
//     in it become spaces;
//   - trailing white space on each line is removed;
//   - at most two consecutive blank lines are kept;
//   - leading blank lines and trailing white space of the whole text are removed.
func Normalize(text string) string {
	if !norm.NFC.IsNormalString(text) {
		text = norm.NFC.String(text)
	}
	var b strings.Builder
	b.Grow(len(text))
	newlines := 0 // consecutive newlines written and not yet followed by content
	pendingSpace := false
	lineStart := true // nothing but indentation written on this line yet
	var indent []byte // indentation held until the line turns out not to be blank
	started := false  // some content written
	for i := 0; i < len(text); {
		r, size := rune(text[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(text[i:])
		}
		i += size
		switch {
		case r == '\r' || r == '\n':
			if r == '\r' && i < len(text) && text[i] == '\n' {
				i++
			}
			pendingSpace, lineStart, indent = false, true, indent[:0]
			if started {
				newlines++
			}
			continue
		case r == '\t' || r == ' ' || (r > utf8.RuneSelf && unicode.IsSpace(r) && r != '\u0085' && r != '\u2028' && r != '\u2029'):
			if lineStart {
				if r == '\t' {
					indent = append(indent, '\t')
				} else {
					indent = append(indent, ' ')
				}
			} else {
				pendingSpace = true
			}
			continue
		case r == '\u2028' || r == '\u2029' || r == '\u0085':
			// Unicode line and paragraph separators: treat as line ends.
			pendingSpace, lineStart, indent = false, true, indent[:0]
			if started {
				newlines++
			}
			continue
		case r == utf8.RuneError && size == 1, r == '\uFEFF', unicode.IsControl(r):
			continue
		}
		if newlines > 0 {
			if newlines > 3 {
				newlines = 3
			}
			b.WriteString("\n\n\n"[:newlines])
			newlines = 0
		}
		if lineStart {
			b.Write(indent)
			indent, lineStart = indent[:0], false
		} else if pendingSpace {
			b.WriteByte(' ')
		}
		pendingSpace = false
		started = true
		if size == 1 {
			b.WriteByte(byte(r))
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}
